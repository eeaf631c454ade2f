"""`RecipeSwitch`: a product changeover without stopping inspection, at a part boundary.

1. The new recipe's model is loaded, checked (sha256 and shapes against its card) and warmed
   up, one backend per inference device, while the old one keeps inspecting. One switch is
   prepared at a time: a second request meanwhile is refused (`RecipeBusy`), never queued.
2. The switch: the part tracker marks the boundary (the next trigger id) and every worker
   gets the new setup for frames of triggers from the boundary on. Parts triggered before
   it finish on the old recipe, later ones use the new: no part is inspected by a mix, none
   is lost, every part result names its recipe.
3. Once no part of the old recipe is open any more, the workers retire the old setup, the
   old backends are closed (their compiled models, infer requests and runtime threads freed),
   and the cameras take the recipe's GenICam settings. One retirement thread at most, alive
   only while a retirement is pending; a newer switch's retirement covers the older ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inspector.anomaly.station import RecipeAnomaly, StationAnomaly
from inspector.config import ConfigError
from inspector.pipeline.backends.base import Backend
from inspector.pipeline.model_repo import ModelCard, load_card
from inspector.pipeline.scheduler import Epoch
from inspector.quality.gate import GateRefused
from inspector.recipes.recipe import Recipe, check_budgets, find_recipe, load_recipes
from inspector.recipes.versions import RecipeVersionError, check_recipe_gate

log = logging.getLogger(__name__)

#: After the last part of the old recipe is decided, how long its late frames may still come.
RETIRE_GRACE_S = 0.5


class RecipeError(RuntimeError):
    """A recipe that cannot be selected (one line: unknown, bad model, camera refused)."""


class RecipeBusy(RecipeError):
    """Another recipe switch is being prepared; select again once it is done."""


class RecipeStation(Protocol):
    """What a recipe switch reads of the station, and the one change it asks of it (`adopt_model`)."""

    @property
    def config(self) -> Any: ...  # StationConfig

    @property
    def cameras(self) -> Mapping[str, Any]: ...  # Camera: ``.features``

    @property
    def workers(self) -> Sequence[Any]: ...  # InferenceWorker: ``switch_at``, ``retire_before``

    @property
    def line(self) -> Any: ...  # Line or None: ``.tracker``

    @property
    def running(self) -> bool: ...

    @property
    def card(self) -> ModelCard: ...

    @property
    def backends(self) -> list[Backend]: ...

    def make_backends(self, card: ModelCard) -> list[Backend]: ...

    @property
    def anomaly_models(self) -> StationAnomaly: ...

    def provenance_for(self, camera_id: str, rules: Any, card: ModelCard) -> Any: ...

    def refresh_provenance(self, camera_id: str) -> None: ...

    def adopt_model(self, card: ModelCard, backends: list[Backend]) -> None:
        """The retired recipe's model is gone: ``card`` and ``backends`` are the station's own now."""
        ...


@dataclass(frozen=True)
class RecipeSelection:
    """What one selection did: the recipe switched to, and its own gate override's audit text.

    Returned to the caller that selected (not kept on the switch), so that of two switches made at
    once (PLC and GUI) each audits its own note.
    """

    recipe: Recipe
    gate_note: str = ""  # the override's text (empty: none was needed)

    @property
    def label(self) -> str:
        return self.recipe.label


@dataclass(frozen=True)
class _Retirement:
    """What a switch leaves to retire once no part before ``boundary`` is open."""

    boundary: int
    recipe: Recipe
    card: ModelCard
    backends: list[Backend]


class RecipeSwitch:
    """The recipes of a station and the switch between them.

    Args:
        station: The station (cameras, workers, line, config, backend name, provenance).
        folder: Where the recipe files are.

    Raises:
        ConfigError: A recipe file is malformed, or its budget does not fit the line (one line).
    """

    def __init__(self, station: RecipeStation, folder: Path) -> None:
        self.station = station
        self.folder = Path(folder)
        self.recipes: list[Recipe] = load_recipes(self.folder)
        check_budgets(self.recipes, station.config)
        self.current: Recipe | None = None
        self.switches = 0
        self._preparing = threading.Lock()  # held while a switch loads its model: the next one is busy
        self._state = threading.Condition()  # workers' epochs, current recipe, the pending retirement
        self._pending: _Retirement | None = None
        self._prepared: list[Backend] = []  # backends of switches superseded before their retirement
        self._retirer: threading.Thread | None = None

    @property
    def number(self) -> int:
        return self.current.recipe.number if self.current is not None else 0

    def reload(self) -> None:
        """Read the recipe folder again (a recipe saved meanwhile, e.g. by the Teach dialog).

        Raises:
            ConfigError: As at start; the recipes known before stay.
        """
        recipes = load_recipes(self.folder)
        check_budgets(recipes, self.station.config)
        self.recipes = recipes

    def select(self, key: int | str, *, override_gate_by: str | None = None, reason: str = "") -> RecipeSelection:
        """Prepare the recipe and switch to it at the next part boundary; returns it with its gate note.

        The recipe files are read again first, so that a version saved or rolled back meanwhile
        (`inspector.recipes.versions`) is the one selected.

        Args:
            key: Number, name, product id or external id.
            override_gate_by: An admin who selects the recipe although its detector has no passing
                promotion gate against the one the recipe ran before (the caller checked the role;
                the recipe's history records who, when, both models and ``reason``).
            reason: Why the gate is overridden.

        Raises:
            RecipeBusy: Another switch is being prepared (nothing changes; select again later).
            GateRefused: Its detector has no passing gate and no admin overrides it (`inspector.quality.gate`;
                one line; the running recipe keeps running, named as its ``in_force``).
            RecipeError: Unknown recipe, its model fails its check or cannot be loaded (one line; the
                running recipe keeps running).
        """
        try:
            self.reload()
            recipe = find_recipe(self.recipes, key)
        except (LookupError, ConfigError) as exc:  # an invalid folder: one line, the recipes read before stay
            raise RecipeError(str(exc).splitlines()[0]) from None
        if not self._preparing.acquire(blocking=False):
            raise RecipeBusy(f"recipe {recipe.label}: busy, another recipe switch is in progress; select it again "
                             "when that one is done")
        try:
            card, backends, anomaly, note = self._prepare(recipe, override_gate_by, reason)
            with self._state:
                self._switch(recipe, card, backends, anomaly)
            return RecipeSelection(recipe, note)
        finally:
            self._preparing.release()

    def _prepare(self, recipe: Recipe, override_gate_by: str | None = None,
                 reason: str = "") -> tuple[ModelCard, list[Backend], RecipeAnomaly, str]:
        """The recipe's model checked (card and promotion gate), compiled and warmed up on every device (the old
        recipe inspects)."""
        backends: list[Backend] = []
        try:
            card = load_card(recipe.model.name)
            note = check_recipe_gate(self.folder, recipe, card, override_by=override_gate_by, reason=reason)
            if note:
                log.warning("recipe %s: %s (reason: %s)", recipe.label, note, reason or "none given")
            backends = self.station.make_backends(card)
            for be in backends:
                be.warmup()
            anomaly = self.station.anomaly_models.for_recipe(recipe, self.station.config.cameras)
            anomaly.prepare(self.station.workers)
        except GateRefused as exc:  # the same refusal, naming the recipe that keeps running
            exc.in_force = self.current.label if self.current is not None else None
            raise
        except RecipeVersionError as exc:
            raise RecipeError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - any model/runtime failure: the old recipe stays
            for be in backends:
                be.close()
            raise RecipeError(f"recipe {recipe.label}: model {recipe.model.name}: {exc}") from None
        return card, backends, anomaly, note

    def _switch(self, recipe: Recipe, card: ModelCard, backends: list[Backend], anomaly: RecipeAnomaly) -> None:
        """Hand every worker the new epoch from the next trigger on (``_state`` held)."""
        st = self.station
        rules = {}
        prov = {}
        for cid in st.cameras:
            vc = recipe.verdict_for(cid)
            vc = vc if vc is not None else next(c for c in st.config.cameras if c.id == cid).verdict
            rules[cid] = vc.rules(card.threshold, card.class_thresholds)  # the new card's calibration comes along
            rules[cid] = anomaly.rules(cid, rules[cid], card.classes)
            prov[cid] = st.provenance_for(cid, rules[cid], card)
        line = st.line
        boundary = line.tracker.begin_recipe(recipe.label, recipe.line.budget_ms) if line is not None else 0
        for w in st.workers:
            w.switch_at(Epoch(boundary, backends[w.index], rules, prov, recipe.label, dict(anomaly.checks)))
        old, self.current = self.current, recipe
        self.switches += 1
        log.warning("recipe: %s -> %s from trigger %d", old.label if old else "station settings", recipe.label,
                    boundary)
        if self._pending is not None:  # superseded before it was retired: its backends go with the next retirement
            self._prepared.extend(self._pending.backends)
        self._pending = _Retirement(boundary, recipe, card, backends)
        if self._retirer is None:
            self._retirer = threading.Thread(target=self._retire_loop, name="recipe-retire", daemon=True)
            self._retirer.start()

    def _retire_loop(self) -> None:
        """Retire what the newest switch replaced; ends when nothing is pending."""
        while True:
            with self._state:
                r = self._pending
                if r is None:
                    self._retirer = None
                    self._state.notify_all()
                    return
            self._wait_for_old_parts(r.boundary)
            with self._state:
                if self._pending is r:  # else a newer switch came meanwhile: its retirement covers this one
                    self._pending = None
                    self._retire(r)

    def _wait_for_old_parts(self, boundary: int) -> None:
        st = self.station
        line = st.line
        while line is not None and line.tracker.open_before(boundary) and st.running:
            time.sleep(0.02)
        time.sleep(RETIRE_GRACE_S)

    def _retire(self, r: _Retirement) -> None:
        """The epoch from ``r.boundary`` becomes every worker's own; older backends are closed (``_state`` held)."""
        st = self.station
        old = [*st.backends, *self._prepared]
        for w in st.workers:
            old.extend(w.retire_before(r.boundary))
        closed: set[int] = {id(be) for be in r.backends}
        for be in old:  # each once; also those of devices without cameras and of superseded switches
            if id(be) not in closed:
                closed.add(id(be))
                be.close()
        self._prepared = []
        st.adopt_model(r.card, r.backends)
        for cid, cam_recipe in r.recipe.cameras.items():
            cam: Any = st.cameras.get(cid)  # None (a camera the station lacks): each setting is logged as refused
            for name, value in cam_recipe.settings.items():
                try:
                    cam.features.set(name, value)
                except Exception as exc:  # noqa: BLE001 - a refused feature is logged, inspection goes on
                    log.error("recipe %s: camera %s refused %s = %r: %s", r.recipe.label, cid, name, value, exc)
            st.refresh_provenance(cid)

    def wait_retired(self, timeout: float = 10.0) -> None:
        """Wait for the pending retirement (tests, stop)."""
        with self._state:
            self._state.wait_for(lambda: self._retirer is None, timeout)
