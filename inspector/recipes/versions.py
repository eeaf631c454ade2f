"""Product recipe versions: every saved version kept, rollback, and the promotion gate on the recipe's detector.

A recipes folder holds the active recipe files (``*.toml``, what `RecipeSwitch` reads) and,
beside them, what each recipe was::

    recipes/
      housing-a.toml                  # the active version (its [recipe] version = 3)
      versions/housing-a/v1.toml      # each saved version, byte for byte
      versions/housing-a/v2.toml
      versions/housing-a/v3.toml
      versions/housing-a/history.jsonl  # one JSON line per save, rollback, adoption or gate override

A history line names who, when, what (``save``, ``rollback``, ``adopt``, ``gate_override``), the
version it made active, the detector it runs (name and the model file's sha256) and how that
detector was accepted (``gate``: the passing gate, "same model", "first version", or the
admin override with the replaced model and the reason).

The gate: a recipe version whose detector differs (another file, by sha256) from the one the
recipe ran before needs a passing ``[gate]`` in its card against that model
(`inspector.quality.gate.require_gate`), or an admin's override, recorded in the history.
`save_recipe_version` checks it when a version is saved; `RecipeSwitch` checks it again when
the recipe is selected, so a recipe file edited by hand (or a model retrained in place) is
refused at the switch with one line, and the running recipe keeps running.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inspector.config import ConfigError, format_errors
from inspector.pipeline.model_repo import ModelCard, ModelError, load_card
from inspector.quality.gate import ModelRef, require_gate, same_detector
from inspector.recipes.recipe import Recipe, load_recipe, load_recipes

#: The folder of kept versions, beside the active recipe files.
VERSIONS_DIR = "versions"
HISTORY_FILE = "history.jsonl"


class RecipeVersionError(ValueError):
    """A recipe version that cannot be saved, rolled back to or selected (one line naming the recipe)."""


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a recipe's history: who made which version active, with which detector, and why it was allowed."""

    at: str
    by: str
    action: str  # save | rollback | adopt | gate_override
    version: int
    model: str
    model_sha256: str
    gate: str
    from_version: int | None = None
    replaced: str = ""
    replaced_sha256: str = ""
    reason: str = ""

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(self.model, self.model_sha256)


@dataclass(frozen=True)
class RecipeVersion:
    """A kept version of a recipe (`recipe_versions`)."""

    version: int
    path: Path
    model: str
    active: bool
    entry: HistoryEntry | None  # the history line that made it active last (None: kept before any history)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def versions_folder(folder: Path, name: str) -> Path:
    """Where the versions of recipe ``name`` are kept."""
    return Path(folder) / VERSIONS_DIR / name


def read_history(folder: Path, name: str) -> list[HistoryEntry]:
    """The history of recipe ``name``, oldest first (empty when none was kept).

    Raises:
        RecipeVersionError: A history line that is not one of ours (the file and line named).
    """
    path = versions_folder(folder, name) / HISTORY_FILE
    if not path.is_file():
        return []
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(HistoryEntry(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise RecipeVersionError(f"{path}:{n}: not a recipe history line ({exc})") from None
    return entries


def _append_history(folder: Path, name: str, entry: HistoryEntry) -> None:
    path = versions_folder(folder, name) / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _kept_path(folder: Path, name: str, version: int) -> Path:
    return versions_folder(folder, name) / f"v{version}.toml"


def _kept_numbers(folder: Path, name: str) -> list[int]:
    found = (re.fullmatch(r"v(\d+)\.toml", p.name) for p in versions_folder(folder, name).glob("v*.toml"))
    return sorted(int(m.group(1)) for m in found if m)


def accepted_entry(folder: Path, recipe: Recipe) -> HistoryEntry | None:
    """The newest history line that made ``recipe``'s version active (None: not saved through the history)."""
    for e in reversed(read_history(folder, recipe.recipe.name)):
        if e.version == recipe.recipe.version:
            return e
    return None


def replaced_model(folder: Path, name: str) -> ModelRef | None:
    """The detector recipe ``name`` last ran with by its history (None: no history yet)."""
    history = read_history(folder, name)
    return history[-1].model_ref if history else None


def check_recipe_gate(folder: Path, recipe: Recipe, card: ModelCard, *, override_by: str | None = None,
                      reason: str = "") -> str:
    """Whether ``recipe`` may run its detector ``card``: the check of a recipe switch.

    Allowed when the history made this very version active with this very model file, when the
    recipe has no history yet (its first version: nothing is replaced; it is adopted into the
    history then), or when ``card`` holds a passing gate against the model the recipe ran before.
    An admin's override is recorded in the history (who, when, candidate, replaced, reason).

    Returns:
        Empty, or the audit text of an override.

    Raises:
        GateRefused: No passing gate and no override (`inspector.quality.gate`; one line naming the recipe
            and the gate).
    """
    name = recipe.recipe.name
    entry = accepted_entry(folder, recipe)
    if entry is not None and entry.model_sha256 == card.sha256:
        return ""
    replaced = replaced_model(folder, name)
    if replaced is None:
        _adopt(folder, recipe, card)
        return ""
    note = require_gate(card, replaced, override_by=override_by, recipe=recipe.label)
    _append_history(folder, name, HistoryEntry(
        _now(), override_by or "(station)", "gate_override" if note else "select", recipe.recipe.version, card.name,
        card.sha256, note or _gate_text(card, replaced), replaced=replaced.name, replaced_sha256=replaced.sha256,
        reason=reason))
    return note


def _adopt(folder: Path, recipe: Recipe, card: ModelCard | ModelRef, by: str = "(station)") -> None:
    """Keep a recipe that has no history yet as its first known version (its file as it is now)."""
    name = recipe.recipe.name
    kept = _kept_path(folder, name, recipe.recipe.version)
    kept.parent.mkdir(parents=True, exist_ok=True)
    if not kept.exists() and recipe.path:
        _write_atomic(kept, Path(recipe.path).read_text())
    _append_history(folder, name, HistoryEntry(_now(), by, "adopt", recipe.recipe.version, card.name, card.sha256,
                                               "first version: no detector replaced"))


def _gate_text(card: ModelCard, replaced: ModelRef | None) -> str:
    if replaced is None:
        return "first version: no detector replaced"
    if same_detector(card, replaced):
        return "same model file"
    gate = card.extra.get("gate", {})
    return f"gate passed against {replaced.name} ({gate.get('date', '?')}, {gate.get('images', '?')} images)"


def set_version(text: str, version: int) -> str:
    """``text`` with its ``[recipe] version`` set to ``version`` (comments and layout kept)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(r"^\s*\[recipe\]\s*(#.*)?$", ln)), None)
    if start is None:
        raise RecipeVersionError("recipe: no [recipe] table")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    for i in range(start + 1, end):
        if re.match(r"^\s*version\s*=", lines[i]):
            lines[i] = re.sub(r"^(\s*version\s*=\s*)[^\s#]+", rf"\g<1>{version}", lines[i])
            return "".join(lines)
    lines.insert(start + 1, f"version = {version}\n")
    return "".join(lines)


def _parse(text: str, where: str) -> Recipe:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeVersionError(f"{where}: not valid TOML: {exc}") from None
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeVersionError(format_errors(where, exc).splitlines()[0]) from None


def _active(folder: Path, name: str) -> Recipe | None:
    try:
        recipes = load_recipes(folder)
    except ConfigError as exc:
        raise RecipeVersionError(str(exc).splitlines()[0]) from None
    return next((r for r in recipes if r.recipe.name == name), None)


def save_recipe_version(
    folder: Path,
    text: str,
    *,
    by: str,
    reason: str = "",
    override_gate_by: str | None = None,
    source: str = "recipe",
) -> Recipe:
    """Save ``text`` as the next version of its recipe and make it active; the previous version stays kept.

    The new version is the highest kept or active one + 1 (written into ``[recipe] version``). The
    active file is replaced atomically (``folder/<name>.toml`` for a new recipe), the same bytes are
    kept as ``versions/<name>/v<N>.toml``, and a history line records who, when, the detector and
    its gate. A running station takes the new version the next time the recipe is selected.

    Args:
        folder: The station's recipes folder (``[recipes] dir``).
        text: The recipe (TOML) as the Teach dialog, the GUI or ``inspector recipe save`` made it.
        by: Who saves it (the logged-in user).
        reason: Why (kept in the history).
        override_gate_by: An admin who saves it although its detector has no passing gate against
            the recipe's previous detector (the caller checked the role; recorded in the history).
        source: Names the text in error messages (a file name).

    Returns:
        The saved version as the switch will load it.

    Raises:
        RecipeVersionError: Not a valid recipe, a number used by another recipe, its model missing or not
            matching its card (one line; nothing is written).
        GateRefused: Its detector has no passing gate and no override (`inspector.quality.gate`; one line
            naming the recipe by its name; nothing is written).
    """
    folder = Path(folder)
    new = _parse(text, source)
    name = new.recipe.name
    active = _active(folder, name)
    for other in load_recipes(folder):
        if other.recipe.name != name and other.recipe.number == new.recipe.number:
            raise RecipeVersionError(f"{source}: recipe number {new.recipe.number} is used by {other.path}")
    try:
        card = load_card(new.model.name)
    except ModelError as exc:
        raise RecipeVersionError(f"recipe {name}: model {new.model.name}: {exc}") from None
    replaced = replaced_model(folder, name)
    if replaced is None and active is not None:
        replaced = _model_ref(active)
        _adopt(folder, active, replaced, by)
    note = require_gate(card, replaced, override_by=override_gate_by, recipe=name)
    version = max([*_kept_numbers(folder, name), active.recipe.version if active else 0]) + 1
    text = set_version(text, version)
    target = Path(active.path) if active is not None and active.path else folder / f"{name}.toml"
    kept = _kept_path(folder, name, version)
    kept.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(kept, text)
    _write_atomic(target, text)
    _append_history(folder, name, HistoryEntry(
        _now(), by, "save", version, card.name, card.sha256, note or _gate_text(card, replaced),
        from_version=active.recipe.version if active else None, replaced=replaced.name if replaced else "",
        replaced_sha256=replaced.sha256 if replaced else "", reason=reason))
    return load_recipe(target)


def _model_ref(recipe: Recipe) -> ModelRef:
    """The detector a recipe file names, by its card's sha256 (the card as it is now)."""
    try:
        card = load_card(recipe.model.name, verify=False)
    except ModelError as exc:
        raise RecipeVersionError(f"recipe {recipe.label}: model {recipe.model.name}: {exc}") from None
    return ModelRef(card.name, card.sha256)


def recipe_versions(folder: Path, name: str) -> list[RecipeVersion]:
    """The kept versions of recipe ``name``, oldest first (the active one marked).

    Raises:
        RecipeVersionError: No such recipe in ``folder`` and no kept version of it.
    """
    folder = Path(folder)
    active = _active(folder, name)
    history = read_history(folder, name)
    numbers = _kept_numbers(folder, name)
    if active is None and not numbers:
        known = ", ".join(r.recipe.name for r in load_recipes(folder)) or "none"
        raise RecipeVersionError(f"recipe {name!r}: not in {folder} (recipes: {known})")
    out = []
    for n in numbers:
        path = _kept_path(folder, name, n)
        try:
            model = _parse(path.read_text(), str(path)).model.name
        except RecipeVersionError:
            model = "(unreadable)"
        entry = next((e for e in reversed(history) if e.version == n), None)
        out.append(RecipeVersion(n, path, model, active is not None and active.recipe.version == n, entry))
    return out


def rollback_recipe(folder: Path, name: str, *, by: str, to: int | None = None, reason: str = "") -> Recipe:
    """Make a kept earlier version of ``name`` active again (default: the one before the active version).

    The kept file comes back byte for byte (its own version number, so its parts are labelled as
    they were); its detector must still be the file that version ran (sha256 in the history).

    Raises:
        RecipeVersionError: No such version, no earlier one, or its model file changed since (one line).
    """
    folder = Path(folder)
    active = _active(folder, name)
    if active is None:
        raise RecipeVersionError(f"recipe {name!r}: no active version in {folder}")
    numbers = _kept_numbers(folder, name)
    current = active.recipe.version
    if to is None:
        earlier = [n for n in numbers if n < current]
        if not earlier:
            raise RecipeVersionError(f"recipe {name}: v{current} is the oldest kept version; nothing to roll back to")
        to = earlier[-1]
    if to not in numbers:
        kept = ", ".join(f"v{n}" for n in numbers) or "none"
        raise RecipeVersionError(f"recipe {name}: no kept version v{to} (kept: {kept})")
    if to == current:
        raise RecipeVersionError(f"recipe {name}: v{to} is already the active version")
    text = _kept_path(folder, name, to).read_text()
    old = _parse(text, str(_kept_path(folder, name, to)))
    ref = _model_ref(old)
    known = next((e for e in reversed(read_history(folder, name)) if e.version == to), None)
    if known is not None and known.model_sha256 != ref.sha256:
        raise RecipeVersionError(
            f"recipe {name}: v{to} ran {known.model} sha256 {known.model_sha256[:12]}..., the file is now "
            f"{ref.sha256[:12]}... (retrained in place?); save a new version instead")
    _write_atomic(Path(active.path), text)
    _append_history(folder, name, HistoryEntry(_now(), by, "rollback", to, ref.name, ref.sha256,
                                               f"rollback from v{current}", from_version=current, reason=reason))
    return load_recipe(Path(active.path))


def format_versions(versions: Sequence[RecipeVersion]) -> list[str]:
    """One line per kept version for ``inspector recipe versions`` (newest last)."""
    lines = []
    for v in versions:
        e = v.entry
        how = f"{e.action} {e.at} by {e.by}: {e.gate}" + (f" ({e.reason})" if e.reason else "") if e else "kept"
        lines.append(f"{'*' if v.active else ' '} v{v.version}  {v.model:24}  {how}")
    return lines


def entry_dict(entry: HistoryEntry) -> dict[str, Any]:
    """A history line as a dict (``--json``)."""
    return asdict(entry)
