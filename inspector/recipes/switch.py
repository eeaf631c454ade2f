"""`RecipeSwitch`: a product changeover without stopping inspection, at a part boundary.

1. The new recipe's model is loaded, checked (sha256 against its card) and warmed up, one
   backend per inference device, while the old one keeps inspecting.
2. The switch: the part tracker marks the boundary (the next trigger id) and every worker
   gets the new setup for frames of triggers from the boundary on. Parts triggered before
   it finish on the old recipe, later ones use the new: no part is inspected by a mix, none
   is lost, every part result names its recipe.
3. Once no part of the old recipe is open any more, the workers retire the old setup, the
   old backends are closed, and the cameras take the recipe's GenICam settings.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from inspector.pipeline.model_repo import load_card
from inspector.pipeline.scheduler import Epoch
from inspector.recipes.recipe import Recipe, find_recipe, load_recipes

log = logging.getLogger(__name__)

#: After the last part of the old recipe is decided, how long its late frames may still come.
RETIRE_GRACE_S = 0.5


class RecipeError(RuntimeError):
    """A recipe that cannot be selected (one line: unknown, bad model, camera refused)."""


class RecipeSwitch:
    """The recipes of a station and the switch between them.

    Args:
        station: The station (cameras, workers, line, config, backend name, provenance).
        folder: Where the recipe files are.
    """

    def __init__(self, station: Any, folder: Path) -> None:
        self.station = station
        self.folder = Path(folder)
        self.recipes: list[Recipe] = load_recipes(self.folder)
        self.current: Recipe | None = None
        self.switches = 0
        self._lock = threading.Lock()  # one changeover at a time
        self._retirers: list[threading.Thread] = []

    @property
    def number(self) -> int:
        return self.current.recipe.number if self.current is not None else 0

    def select(self, key: int | str) -> Recipe:
        """Prepare the recipe and switch to it at the next part boundary; returns it.

        Raises:
            RecipeError: Unknown recipe, its model fails its check or cannot be loaded.
        """
        try:
            recipe = find_recipe(self.recipes, key)
        except LookupError as exc:
            raise RecipeError(str(exc)) from None
        with self._lock:
            st = self.station
            try:
                card = load_card(recipe.model.name)
                backends = st.make_backends(card)
            except Exception as exc:  # noqa: BLE001 - any model/runtime failure: the old recipe stays
                raise RecipeError(f"recipe {recipe.label}: model {recipe.model.name}: {exc}") from None
            for be in backends:
                warm = getattr(be, "warmup", None)
                if warm is not None:
                    warm()
            rules = {}
            prov = {}
            for cid in st.cameras:
                vc = recipe.verdict_for(cid)
                rules[cid] = (vc.rules(card.threshold) if vc is not None else
                              st.config_for(cid).verdict.rules(card.threshold))
                prov[cid] = st.provenance_for(cid, rules[cid], card)
            line = getattr(st, "line", None)
            boundary = line.tracker.begin_recipe(recipe.label, recipe.line.budget_ms) if line is not None else 0
            by_device = {i: be for i, be in enumerate(backends)}
            for w in st.workers:
                w.switch_at(Epoch(boundary, by_device[w.index], rules, prov, recipe.label))
            old, self.current = self.current, recipe
            self.switches += 1
            log.warning("recipe: %s -> %s from trigger %d", old.label if old else "station settings", recipe.label,
                        boundary)
            t = threading.Thread(target=self._retire, args=(boundary, recipe, card, backends),
                                 name="recipe-retire", daemon=True)
            self._retirers.append(t)
            t.start()
            return recipe

    def _retire(self, boundary: int, recipe: Recipe, card: Any, backends: list[Any]) -> None:
        st = self.station
        line = getattr(st, "line", None)
        while line is not None and line.tracker.open_before(boundary) and st.running:
            time.sleep(0.02)
        time.sleep(RETIRE_GRACE_S)
        with self._lock:
            if self.current is not recipe:
                return  # a newer switch came meanwhile; it retires everything before it
            for w in st.workers:
                for be in w.retire_before(boundary):
                    if be not in backends:
                        be.close()
            st.card = card
            st.backends = backends
            for cid, cam_recipe in recipe.cameras.items():
                cam = st.cameras.get(cid)
                for name, value in cam_recipe.settings.items():
                    try:
                        cam.features.set(name, value)
                    except Exception as exc:  # noqa: BLE001 - a refused feature is logged, inspection goes on
                        log.error("recipe %s: camera %s refused %s = %r: %s", recipe.label, cid, name, value, exc)
                st.refresh_provenance(cid)

    def wait_retired(self, timeout: float = 10.0) -> None:
        """Wait for pending retirements (tests, stop)."""
        end = time.monotonic() + timeout
        for t in list(self._retirers):
            t.join(max(0.0, end - time.monotonic()))
