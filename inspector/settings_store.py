"""Camera settings that persist: written where the station reads them at its next start.

A camera's start-up settings live in the station's config file (``settings = {...}`` in
its ``[[cameras]]`` entry: applied when the camera opens) or, while a product recipe is
selected, in that recipe's file (``[cameras.<id>] settings = {...}``: applied when the
recipe is selected, which a restart does again). `CameraSettingsStore` remembers the
features changed through the control API since the station started and merges them into
the right file's ``settings`` of that camera, in the format the station reads.

The file is edited as text (comments and order kept): only the camera's ``settings`` line
is replaced or added. The result is read back and must equal the old file with only that
table changed, and must still be a valid config (or recipe), before it replaces the file
(atomically). A "camera feature set" file (``StationControl.save_recipe``: every writable
feature of one camera, for copying to another camera) is a different thing.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.access.control import StationControl

Scalar = int | float | str | bool

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER = re.compile(r"^\s*\[")
_CAMERA_ENTRY = re.compile(r"^\s*\[\[\s*cameras\s*\]\]\s*(#.*)?$")
_SETTINGS_LINE = re.compile(r"^\s*settings\s*=")


class SettingsError(ValueError):
    """Camera settings that cannot be saved (no file to save into, a file that cannot be edited); one line."""


@dataclass(frozen=True)
class SavedSettings:
    """What a save wrote: the file, the camera and its whole ``settings`` table now."""

    path: Path
    camera_id: str
    settings: dict[str, Scalar]
    kind: str  # "station config" or "product recipe"


class CameraSettingsStore:
    """The camera settings changed on a running station, and where they persist.

    Args:
        control: The station's control API (its feature changes are followed; saving needs its
            ``camera.set_feature`` role and is audited).
        config_path: The station's config file; None for a built-in station (then only a
            product recipe's file can take the settings).
    """

    def __init__(self, control: StationControl, config_path: Path | None) -> None:
        self.control = control
        self.config_path = Path(config_path) if config_path is not None else None
        self._changed: dict[str, dict[str, Scalar]] = {}
        self._lock = threading.Lock()
        control.events.feature_changed.connect(self._on_feature)

    def close(self) -> None:
        self.control.events.feature_changed.disconnect(self._on_feature, missing_ok=True)

    def changed(self, camera_id: str) -> dict[str, Scalar]:
        """The features of ``camera_id`` changed since the start (device answers), in the order changed."""
        with self._lock:
            return dict(self._changed.get(camera_id, {}))

    def target(self) -> tuple[Path, str] | None:
        """Where a save goes now: the current product recipe's file, else the station's config file."""
        recipes = getattr(self.control.station, "recipes", None)
        current = getattr(recipes, "current", None) if recipes is not None else None
        recipe_path = getattr(current, "path", "") if current is not None else ""
        if recipe_path:
            return Path(recipe_path), "product recipe"
        if self.config_path is not None:
            return self.config_path, "station config"
        return None

    def save(self, camera_id: str) -> SavedSettings:
        """Write the camera's changed features into its start-up settings (engineer or higher; audited).

        Raises:
            PermissionDenied: The user may not change camera settings.
            SettingsError: Nothing changed, no file to save into, or the file cannot be edited.
        """
        self.control.require("camera.set_feature")
        values = self.changed(camera_id)
        if not values:
            raise SettingsError(f"camera {camera_id}: no setting changed since the start: nothing to save")
        where = self.target()
        if where is None:
            name = getattr(getattr(self.control.station, "config", None), "name", "station")
            raise SettingsError(f"station {name} runs a built-in config: start it with --config FILE to save "
                                "camera settings (inspector run --config, inspector service --config)")
        path, kind = where
        if kind == "product recipe":
            settings = write_recipe_camera_settings(path, camera_id, values)
        else:
            settings = write_config_camera_settings(path, camera_id, values)
        user = self.control.user.name if self.control.user is not None else "(anonymous)"
        entry = self.control.audit.record(user, "camera.save_settings", f"{camera_id} -> {path}", None,
                                          ", ".join(f"{k}={v}" for k, v in values.items()))
        self.control.events.audit_recorded.emit(entry)
        return SavedSettings(path, camera_id, settings, kind)

    def _on_feature(self, camera_id: str, name: str, value: object) -> None:
        if isinstance(value, (bool, int, float, str)) and not (isinstance(value, float) and not math.isfinite(value)):
            with self._lock:
                cam = self._changed.setdefault(camera_id, {})
                cam.pop(name, None)  # the latest change last: settings are applied in order
                cam[name] = value


# ---------------------------------------------------------------------------- the files
def write_config_camera_settings(path: Path, camera_id: str, values: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """Merge ``values`` into ``settings`` of ``camera_id``'s ``[[cameras]]`` entry of a station config file.

    Returns:
        The camera's settings as the file now has them.

    Raises:
        SettingsError: The file cannot be read, has no such camera, cannot be edited safely, or would
            not be a valid station config afterwards.
    """
    from inspector.config import ConfigError, parse_config

    text, raw = _read(path)
    cams = raw.get("cameras")
    if not isinstance(cams, list):
        raise SettingsError(f"{path}: no [[cameras]] tables")
    index = next((i for i, c in enumerate(cams) if isinstance(c, dict) and c.get("id") == camera_id), None)
    if index is None:
        raise SettingsError(f"{path}: no camera {camera_id!r} in [[cameras]]")
    merged = {**_settings_of(path, cams[index]), **values}
    lines = text.splitlines(keepends=True)
    headers = [i for i, ln in enumerate(lines) if _CAMERA_ENTRY.match(ln)]
    if len(headers) != len(cams):
        raise SettingsError(f"{path}: write each camera as a [[cameras]] table to save its settings here")
    new_text = _set_settings_line(lines, headers[index], merged)
    expected = copy.deepcopy(raw)
    expected["cameras"][index]["settings"] = merged
    _check_same(path, new_text, expected)
    try:
        parse_config(new_text, str(path))
    except ConfigError as exc:
        raise SettingsError(str(exc).splitlines()[0]) from None
    _replace(path, new_text)
    return merged


def write_recipe_camera_settings(path: Path, camera_id: str, values: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """Merge ``values`` into ``[cameras.<camera_id>] settings`` of a product recipe file.

    Raises:
        SettingsError: As `write_config_camera_settings`, for a product recipe.
    """
    from inspector.config import ConfigError
    from inspector.recipes.recipe import Recipe

    text, raw = _read(path)
    cams = raw.get("cameras", {})
    if not isinstance(cams, dict):
        raise SettingsError(f"{path}: cameras is not a table")
    merged = {**_settings_of(path, cams.get(camera_id, {})), **values}
    lines = text.splitlines(keepends=True)
    key = re.escape(camera_id)
    header = re.compile(rf"^\s*\[\s*cameras\s*\.\s*(?:{key}|\"{key}\"|'{key}')\s*\]\s*(#.*)?$")
    at = next((i for i, ln in enumerate(lines) if header.match(ln)), None)
    if at is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        new_text = "".join(lines) + f"\n[cameras.{_key(camera_id)}]\nsettings = {_inline(merged)}\n"
    else:
        new_text = _set_settings_line(lines, at, merged)
    expected = copy.deepcopy(raw)
    expected.setdefault("cameras", {}).setdefault(camera_id, {})["settings"] = merged
    _check_same(path, new_text, expected)
    try:
        Recipe.model_validate({**tomllib.loads(new_text), "path": str(path)})
    except (ConfigError, ValueError) as exc:
        raise SettingsError(f"{path}: the recipe would not be valid: {str(exc).splitlines()[0]}") from None
    _replace(path, new_text)
    return merged


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _settings_of(path: Path, table: Any) -> dict[str, Scalar]:
    settings = table.get("settings", {}) if isinstance(table, dict) else {}
    if not isinstance(settings, dict):
        raise SettingsError(f"{path}: settings is not a table")
    return dict(settings)


def _set_settings_line(lines: list[str], header: int, settings: Mapping[str, Scalar]) -> str:
    """Replace the table's ``settings = ...`` line after ``lines[header]``, or add one after its last key."""
    end = next((i for i in range(header + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    new_line = f"settings = {_inline(settings)}\n"
    out = list(lines)
    existing = [i for i in range(header + 1, end) if _SETTINGS_LINE.match(out[i])]
    if existing:
        out[existing[0]] = new_line
    else:
        last = max((i for i in range(header, end) if out[i].strip()), default=header)
        if not out[last].endswith("\n"):
            out[last] += "\n"
        out.insert(last + 1, new_line)
    return "".join(out)


def _check_same(path: Path, new_text: str, expected: dict[str, Any]) -> None:
    try:
        got = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        got = None
    if got != expected:  # e.g. a settings table spread over lines or written as [cameras.settings]
        raise SettingsError(f"{path}: cannot edit the camera's settings safely; write them as one line "
                            "'settings = { Name = value, ... }' in the camera's table and save again")


def _replace(path: Path, text: str) -> None:
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise SettingsError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _value(k)


def _value(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    escaped = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _inline(settings: Mapping[str, Scalar]) -> str:
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in settings.items()) + " }" if settings else "{}"
