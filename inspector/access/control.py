"""`StationControl`: the one way a user changes a running station (engine side, no Qt).

The GUI never writes a camera feature, a threshold or a user itself: it calls this
class, which checks the logged-in user's role (`inspector.access.users.Permissions`), performs
the change, and appends an audit row (who, when, what, old -> new). A refused request
raises `PermissionDenied` and changes nothing, audit included.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from psygnal import Signal
from sqlalchemy import Engine

from camera.features import FeatureError
from camera.protocol import Camera
from inspector.access.users import (
    AuditEntry,
    AuditLog,
    LoginRefused,
    PermissionDenied,
    Permissions,
    Role,
    User,
    UserError,
    UserStore,
)
from inspector.quality.gate import GateRefused
from inspector.storage.box_review import ReviewedBox, get_box_review, save_box_review
from inspector.storage.history import get_inspection, set_review

__all__ = [
    "ControlError",
    "ControlEvents",
    "FeatureSetError",
    "FeatureSetResult",
    "GateRefused",
    "LoginRefused",
    "PermissionDenied",
    "RecipeError",
    "RecipeResult",
    "StationControl",
    "SwitchWording",
    "UserError",
    "switch_wording",
]

ANONYMOUS = "(anonymous)"
FIRST_START = "(first start)"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ControlError(RuntimeError):
    """The control API cannot be used as asked (no database, unknown camera); one line."""


@dataclass(frozen=True)
class SwitchWording:
    """How a product recipe switch is said to its user (see `switch_wording`).

    Attributes:
        unit: ``part`` or ``frame``: the switch takes effect at the next one.
        finishing: ``parts already triggered`` or ``frames already taken``: these finish on the old recipe.
    """

    unit: str
    finishing: str

    def switching(self, label: str) -> str:
        """``switching to cover v1 at the next frame…``: while the new recipe's model is prepared."""
        return f"switching to {label} at the next {self.unit}…"

    def switched(self, label: str, old: str) -> str:
        """``recipe cover v1 from the next frame; frames already taken finish on housing v1``."""
        return f"recipe {label} from the next {self.unit}; {self.finishing} finish on {old}"


def switch_wording(*, triggered: bool) -> SwitchWording:
    """The words for a `StationControl.select_recipe` switch, alike in the GUI and ``inspector recipe select``.

    A triggered line switches at a part (trigger) boundary; on a free-running station a part is a frame.

    Args:
        triggered: The station runs a triggered line (``station.line``; the service's hello says ``triggered``).
    """
    if triggered:
        return SwitchWording("part", "parts already triggered")
    return SwitchWording("frame", "frames already taken")


class FeatureSetError(ValueError):
    """A camera feature set file that cannot be written, read or applied; one line naming the file."""


#: Its name from when camera feature sets were called "recipes" (product recipes are `inspector.recipes`).
RecipeError = FeatureSetError


class _ControlledStation(Protocol):
    """What `StationControl` needs of a `inspector.station.Station`."""

    cameras: dict[str, Camera]
    lanes: dict[str, Any]

    def refresh_provenance(self, camera_id: str) -> None: ...

    def pause(self, paused: bool) -> None: ...

    @property
    def paused(self) -> bool: ...


class ControlEvents:
    """Events of the control API (the GUI adapts them to Qt signals)."""

    user_changed = Signal(object)  # User | None
    audit_recorded = Signal(object)  # AuditEntry
    feature_changed = Signal(str, str, object)  # camera id, feature, value the device reports
    rules_changed = Signal(str)  # camera id


@dataclass
class FeatureSetResult:
    """What loading a camera feature set did: features written (device answers), unchanged, refused."""

    applied: dict[str, Any] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


RecipeResult = FeatureSetResult


class StationControl:
    """A user session over a station: login, permission checks, changes, audit.

    Args:
        station: The running station.
        engine: Database for users, audit and history (default ``station.engine``); it
            must be migrated (`inspector.storage.db.migrate`).
        permissions: Role table (default `inspector.access.users.ACTIONS`).
        clock: Epoch seconds now, for login throttling (tests inject one).

    Raises:
        ControlError: No database (a station run with ``db_url="none"`` and no engine).
    """

    def __init__(
        self,
        station: _ControlledStation,
        *,
        engine: Engine | None = None,
        permissions: Permissions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        engine = engine if engine is not None else getattr(station, "engine", None)
        if engine is None:
            raise ControlError("users and audit need a database: run the station with a db_url other than 'none'")
        self.station = station
        self.engine = engine
        self.users = UserStore(engine, clock=clock)
        self.audit = AuditLog(engine)
        self.permissions = permissions or Permissions()
        self.events = ControlEvents()
        self._user: User | None = None
        self._lock = threading.RLock()  # one change at a time (feature writes, rules)

    # ------------------------------------------------------------------ session
    @property
    def user(self) -> User | None:
        """The logged-in user, or None (anonymous: may watch only)."""
        return self._user

    def can(self, action: str) -> bool:
        """Whether the current user may perform ``action`` (for enabling GUI controls)."""
        return self.permissions.allowed(self._user, action)

    def first_start_needed(self) -> bool:
        """True while no user exists (the GUI asks for an admin password)."""
        return self.users.count() == 0

    def create_admin(self, password: str, name: str = "admin") -> User:
        """Create the first admin; only allowed while no user exists.

        Raises:
            PermissionDenied: Users exist already.
            UserError: Bad name or short password.
        """
        if not self.first_start_needed():
            raise PermissionDenied("create_admin: users exist already; an admin adds users")
        user = self.users.create_user(name, password, Role.ADMIN, by=FIRST_START)
        self._record("users.create", name, None, Role.ADMIN.label, who=FIRST_START)
        return user

    @classmethod
    def offline(cls, engine: Engine, *, clock: Callable[[], float] = time.time) -> StationControl:
        """Users and audit of a database without a running station (the command line)."""
        return cls(_NoStation(), engine=engine, clock=clock)

    @classmethod
    def service(cls, station: _ControlledStation, engine: Engine, name: str, role: Role = Role.OPERATOR,
                detail: str = "") -> StationControl:
        """A session for a local service (the PLC link): acts as ``name`` with ``role``, no password.

        Such a service is reachable only where the station binds it (127.0.0.1 unless an
        integrator exposed it); its start is audited (``session.service``), and so is
        everything it changes, under its name.
        """
        control = cls(station, engine=engine)
        control._user = User(name, role)
        control._record("session.service", name, None, f"{role.label} {detail}".strip(), who=name)
        return control

    def login(self, name: str, password: str) -> User | None:
        """Log in; returns the user, or None for a wrong name or password (audited).

        Failures are counted per user: from the second one in a row the next attempt
        must wait a growing delay, and the fifth locks the user (`inspector.access.users`).

        Raises:
            LoginRefused: Locked, or too early after failures (password not checked).
        """
        who = name.strip()[:64]
        outcome = self.users.authenticate(name, password)
        user = outcome.user
        if user is None:
            self._record("session.login_failed", who, None, f"{outcome.failures} in a row" if outcome.failures else None,
                         who=ANONYMOUS)
            if outcome.locked:
                self._record("session.user_locked", who, None, f"after {outcome.failures} failed logins", who=ANONYMOUS)
            return None
        with self._lock:
            self._user = user
        self._record("session.login", user.name, None, user.role.label)
        self.events.user_changed.emit(user)
        return user

    def logout(self) -> None:
        """Back to anonymous (watch only)."""
        with self._lock:
            user, self._user = self._user, None
        if user is not None:
            self._record("session.logout", user.name, who=user.name)
            self.events.user_changed.emit(None)

    # ------------------------------------------------------------------ station
    def pause(self, paused: bool) -> None:
        """Pause or resume inspection (operator or higher)."""
        self._require("station.pause")
        old = self.station.paused
        self.station.pause(paused)
        self._record("station.pause", getattr(getattr(self.station, "config", None), "name", "station"), old, paused)

    def trigger_part(self, part_id: str | None = None) -> str:
        """Trigger a part now on a triggered line (operator or higher; a PLC's trigger command).

        Not audited: a trigger is production, like the photo-eye, not a change; every part
        is stored with its verdict. Returns the part's id (``part_id``, or the station's next).
        """
        self._require("station.trigger_part")
        trigger = getattr(self.station, "trigger_part", None)
        if trigger is None:
            raise ControlError("no station runs here: nothing to trigger")
        try:
            return str(trigger(part_id))
        except (RuntimeError, ValueError) as exc:  # free-running station, bad part id
            raise ControlError(str(exc)) from None

    def select_recipe(self, key: int | str, *, override_gate: bool = False, reason: str = "") -> str:
        """Product changeover (operator or higher; the PLC's select_recipe): audited old -> new.

        Args:
            key: Number, name, product id or external id.
            override_gate: Select it although its detector holds no passing promotion gate against
                the one the recipe ran before (admin only, with ``reason``). The recipe's history and
                the audit trail (``recipe.gate_override``) name who, both models and the reason.
            reason: Why the gate is overridden.

        Raises:
            PermissionDenied: Not an operator; an override without the admin role.
            GateRefused: The promotion gate refused the recipe's detector (`inspector.quality.gate`; one line
                that says an admin may override it; the running recipe keeps running).
            ControlError: No station or recipes, an override without a reason, or the switch was refused
                (one line; the running recipe keeps running).
        """
        self._require("recipe.select")
        by: str | None = None
        if override_gate:
            self._require("recipe.override_gate")
            if not reason.strip():
                raise ControlError("override_gate: give the reason the promotion gate is overridden (it is audited)")
            by = self._user_name()
        select = getattr(self.station, "switch_recipe", None)
        if select is None:
            raise ControlError("no station runs here: no recipe to select")
        recipes = getattr(self.station, "recipes", None)
        old = recipes.current.label if recipes is not None and recipes.current is not None else None
        try:
            done = select(key, override_gate_by=by, reason=reason.strip()) if by else select(key)
        except GateRefused as exc:  # the same refusal, offering what an admin may do
            exc.overridable = not override_gate
            raise
        except (RuntimeError, ValueError) as exc:
            raise ControlError(str(exc)) from None
        new, note = str(done.label), str(done.gate_note) if by else ""  # this switch's own note
        if note:
            self._record("recipe.gate_override", new, old, f"{note}; reason: {reason.strip()}")
        self._record("recipe.select", getattr(getattr(self.station, "config", None), "name", "station"), old, new)
        return new

    def recipe_in_force(self) -> dict[str, Any] | None:
        """The product recipe a Teach saves the next version of (the one in force, else the first; anyone).

        Returns:
            ``{"name", "version", "label", "folder"}`` (the station's recipes folder), or None: no recipes.
        """
        sw: Any = getattr(self.station, "recipes", None)
        r = _in_force(sw)
        if r is None:
            return None
        return {"name": r.recipe.name, "version": r.recipe.version, "label": r.label, "folder": str(sw.folder)}

    def save_taught_recipe(self, models: Mapping[str, Mapping[str, Any]],
                           detector: Mapping[str, bool] | None = None) -> str:
        """Save the recipe in force's next version with taught anomaly models, and switch to it (the Teach dialog).

        Engineer role; audited ``recipe.save`` (old label -> new, the models and thresholds), then the
        switch as `select_recipe` (audited ``recipe.select``). The version is kept with a history line.

        Args:
            models: Camera -> ``{"model": folder, "threshold": score}`` (the taught models).
            detector: Camera -> whether the detector decides too (None: as the recipe says).

        Returns:
            The label of the recipe now in force.

        Raises:
            PermissionDenied: Not an engineer or admin.
            ControlError: No recipes, or the new version does not check or cannot be switched to (one line).
        """
        from inspector.anomaly.model import load_anomaly_model
        from inspector.config import AnomalyConfig, ConfigError
        from inspector.pipeline.model_repo import ModelError
        from inspector.recipes.recipe import with_anomaly
        from inspector.recipes.versions import RecipeVersionError, save_recipe_version

        self._require("recipe.save")
        sw: Any = getattr(self.station, "recipes", None)
        recipe = _in_force(sw)
        if recipe is None:
            raise ControlError("save: this station has no product recipes ([recipes] dir): nothing to save to")
        try:
            specs = {str(cid): AnomalyConfig(model=str(m["model"]), threshold=round(float(m.get("threshold", 1.0)), 4))
                     for cid, m in models.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"save: taught models: {exc}") from None
        cameras = getattr(self.station, "cameras", {})
        for cid, spec in specs.items():  # checked before anything is written: the saved version becomes active
            if cid not in cameras:
                raise ControlError(f"save: camera {cid}: not a camera of this station")
            try:
                load_anomaly_model(spec.model)
            except ModelError as exc:
                raise ControlError(f"save: camera {cid}: {exc}") from None
        user = self._user_name()
        what = "; ".join(f"{cid}: {Path(s.model).name} threshold {s.threshold}" for cid, s in specs.items())
        try:
            new = save_recipe_version(Path(sw.folder), with_anomaly(recipe, specs, detector), by=user,
                                      reason=f"taught from good parts: {what}", source=f"recipe {recipe.recipe.name}")
        except (ConfigError, RecipeVersionError, GateRefused) as exc:
            raise ControlError(f"save: {exc}") from None
        self._record("recipe.save", new.recipe.name, recipe.label, f"{new.label} ({what})")
        try:
            sw.reload()
        except (RuntimeError, ValueError) as exc:
            raise ControlError(f"save: {new.label} saved, but the recipes cannot be read again: {exc}") from None
        return self.select_recipe(new.recipe.name)

    def rollback_recipe(self, name: str, *, to: int | None = None, reason: str = "") -> str:
        """Make a kept earlier version of recipe ``name`` active again (engineer or higher; audited).

        The station runs it from the recipe's next selection (`inspector.recipes.versions.rollback_recipe`).
        Returns the recipe's label (``"housing-a v2"``).

        Raises:
            PermissionDenied: Not an engineer.
            ControlError: No recipes here, no such version, or its model file changed since (one line).
        """
        from inspector.recipes.versions import RecipeVersionError, read_history
        from inspector.recipes.versions import rollback_recipe as rollback

        self._require("recipe.save")
        recipes = getattr(self.station, "recipes", None)
        if recipes is None:
            raise ControlError("this station has no recipes ([recipes] dir): nothing to roll back")
        try:
            r = rollback(Path(recipes.folder), name, by=self._user_name(), to=to, reason=reason.strip())
        except RecipeVersionError as exc:
            raise ControlError(str(exc)) from None
        entry = read_history(Path(recipes.folder), name)[-1]
        self._record("recipe.rollback", name, f"v{entry.from_version}",
                     r.label + (f"; reason: {reason.strip()}" if reason.strip() else ""))
        return str(r.label)

    def set_camera_feature(self, camera_id: str, name: str, value: Any) -> Any:
        """Write one camera feature (engineer or higher).

        Returns:
            The value the device reports after the write (it may round or clamp).

        Raises:
            PermissionDenied: The current user may not change camera settings.
            ControlError: Unknown camera.
            FeatureError: The device refused the value (message names the feature).
        """
        self._require("camera.set_feature")
        cam = self._camera(camera_id)
        with self._lock:
            answer, old = self._write_feature(cam, name, value)
        self._record("camera.set_feature", f"{camera_id}/{name}", old, answer)
        return answer

    def _write_feature(self, cam: Camera, name: str, value: Any) -> tuple[Any, Any]:
        tree = cam.features
        try:
            old = tree.get(name)
        except FeatureError:
            old = None  # unreadable now; the write decides
        answer = tree.set(name, value)
        settings = getattr(cam, "settings", None)
        if isinstance(settings, dict):  # GenTL cameras re-apply these after a reconnect
            settings[name] = answer
        self.station.refresh_provenance(cam.info.id)  # results now carry the new settings digest
        self.events.feature_changed.emit(cam.info.id, name, answer)
        return answer, old

    def set_threshold(self, camera_id: str, class_name: str | None, value: float) -> float:
        """Set a camera's score threshold for one class, or its default (engineer or higher).

        Returns:
            The previous threshold.

        Raises:
            PermissionDenied: The current user may not change verdict rules.
            ControlError: Unknown camera.
            ValueError: ``value`` outside 0..1.
        """
        self._require("verdict.set_threshold")
        v = float(value)
        if not (0.0 <= v <= 1.0) or math.isnan(v):
            raise ValueError(f"threshold: {value!r} must be between 0 and 1")
        lane = self.station.lanes.get(camera_id)
        if lane is None:
            raise ControlError(f"camera {camera_id!r}: no such camera on this station")
        with self._lock:
            rules = lane.rules
            if class_name is None:
                old = rules.default_threshold
                new_rules = dataclasses.replace(rules, default_threshold=v)
            else:
                old = rules.threshold_for(class_name)
                new_rules = dataclasses.replace(rules, class_thresholds={**rules.class_thresholds, class_name: v})
            lane.rules = new_rules  # one attribute store: the worker sees old or new rules, never a mix
            self.station.refresh_provenance(camera_id)
        self._record("verdict.set_threshold", f"{camera_id}/{class_name or 'default'}", old, v)
        self.events.rules_changed.emit(camera_id)
        return old

    # ------------------------------------------------------------------ camera feature sets
    # A "camera feature set" is one camera's writable GenICam feature values in a file, for copying
    # them to another camera; a "product recipe" (inspector.recipes) is what a product needs. The
    # audit actions keep their first names (recipe.save, recipe.load): the trail and roles have them.
    def save_feature_set(self, camera_id: str, path: Path | str) -> dict[str, Any]:
        """Save the camera's writable feature values as a TOML camera feature set (engineer or higher).

        Returns:
            The saved ``feature -> value`` mapping.

        Raises:
            RecipeError: The file cannot be written.
        """
        self._require("recipe.save")
        cam = self._camera(camera_id)
        values: dict[str, Any] = {}
        for f in cam.features.features():
            if f.type == "command" or not f.writable or f.visibility == "Invisible":
                continue
            try:
                v = cam.features.get(f.name)
            except FeatureError:
                continue
            if v is not None:
                values[f.name] = v
        path = Path(path)
        try:
            path.write_text(_feature_set_toml(cam, values, self._user_name()))
        except OSError as exc:
            raise FeatureSetError(f"feature set {path}: cannot write: {exc.strerror or exc}") from None
        self._record("recipe.save", f"{camera_id} -> {path}", None, f"{len(values)} features")
        return values

    def load_feature_set(self, camera_id: str, path: Path | str) -> FeatureSetResult:
        """Apply a camera feature set's values in file order (engineer or higher).

        Values equal to the current ones are not written. A refused value does not stop
        the others; it is reported in `RecipeResult.errors`. Each write is audited.

        Raises:
            FeatureSetError: Unreadable file, not a feature set, or one for another camera model.
        """
        self._require("recipe.load")
        cam = self._camera(camera_id)
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise FeatureSetError(f"feature set {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise FeatureSetError(f"feature set {path}: not valid TOML: {exc}") from None
        features = data.get("features")
        if not isinstance(features, dict):
            raise FeatureSetError(f"feature set {path}: no [features] table")
        head = data.get("feature_set", data.get("recipe", {}))  # [recipe]: files saved before the rename
        made_for = str(head.get("model", "")) if isinstance(head, dict) else ""
        if made_for and cam.info.model and made_for != cam.info.model:
            raise FeatureSetError(f"feature set {path}: made for a {made_for}, camera {camera_id} is a {cam.info.model}")
        result = FeatureSetResult()
        for name, value in features.items():
            try:
                if cam.features.get(name) == value:
                    result.unchanged.append(name)
                    continue
            except FeatureError:
                pass
            try:
                with self._lock:
                    answer, old = self._write_feature(cam, name, value)
            except FeatureError as exc:
                result.errors[name] = str(exc)
                continue
            result.applied[name] = answer
            self._record("camera.set_feature", f"{camera_id}/{name}", old, answer)
        self._record(
            "recipe.load",
            f"{path} -> {camera_id}",
            None,
            f"{len(result.applied)} written, {len(result.unchanged)} unchanged, {len(result.errors)} refused",
        )
        return result

    save_recipe = save_feature_set  # the names from before "camera feature set"
    load_recipe = load_feature_set

    # ------------------------------------------------------------------ history
    def review(self, inspection_id: int, mark: str | None) -> str | None:
        """Mark an inspection ``confirmed``, ``false_call`` or ``missed`` (engineer or higher).

        Returns:
            The previous mark.

        Raises:
            KeyError: No such inspection.
            ValueError: Not a review mark, or (`ReviewRefused`) "missed" on an inspection whose image is not kept.
        """
        self._require("history.review")
        row, _ = get_inspection(self.engine, inspection_id)
        set_review(self.engine, inspection_id, mark, self._user_name(), need_image=True)
        self._record("history.review", f"inspection {inspection_id} ({row.camera_id} #{row.sequence})", row.review_mark, mark)
        return row.review_mark

    def review_boxes(self, inspection_id: int, boxes: Sequence[ReviewedBox]) -> str:
        """Store a box-by-box review of an inspection's image (engineer or higher; audited).

        Returns:
            The review mark it set (`inspector.storage.box_review.review_mark_for`).

        Raises:
            KeyError: No such inspection.
            ValueError: A bad box, or (`ReviewRefused`) the inspection's image is not kept.
        """
        self._require("history.review")
        row, _ = get_inspection(self.engine, inspection_id)
        before = get_box_review(self.engine, inspection_id)
        mark = save_box_review(self.engine, inspection_id, boxes, self._user_name())
        after = get_box_review(self.engine, inspection_id)
        old = f"{row.review_mark}: {before.summary()}" if before is not None else row.review_mark
        self._record("history.review_boxes", f"inspection {inspection_id} ({row.camera_id} #{row.sequence})", old,
                     f"{mark}: {after.summary() if after is not None else ''}")
        return mark

    def record_export(self, kind: str, path: Path | str, rows: int) -> None:
        """Check the export permission and audit an export of history data (engineer or higher)."""
        self._require("history.export")
        self._record(f"history.export_{kind}", str(path), None, f"{rows} rows")

    def require(self, action: str) -> None:
        """Raise `PermissionDenied` unless the current user may perform ``action``."""
        self._require(action)

    # ------------------------------------------------------------------ users
    def list_users(self) -> list[User]:
        """All users (admin)."""
        self._require("users.manage")
        return self.users.list_users()

    def add_user(self, name: str, password: str, role: Role | str) -> User:
        """Create a user (admin).

        Raises:
            PermissionDenied: Not an admin.
            UserError: Bad name, short password, unknown role or name taken.
        """
        self._require("users.manage")
        user = self.users.create_user(name, password, role, by=self._user_name())
        self._record("users.create", user.name, None, user.role.label)
        return user

    def set_role(self, name: str, role: Role | str) -> Role:
        """Change a user's role (admin); returns the previous role."""
        self._require("users.manage")
        new = Role.parse(role)
        old = self.users.set_role(name, new)
        self._record("users.set_role", name, old.label, new.label)
        if self._user is not None and self._user.name == name.strip():
            with self._lock:
                self._user = User(self._user.name, new)
            self.events.user_changed.emit(self._user)
        return old

    def set_password(self, name: str, password: str) -> None:
        """Reset a user's password (admin); the audit row never contains the password."""
        self._require("users.manage")
        self.users.set_password(name, password)
        self._record("users.set_password", name)

    def unlock_user(self, name: str) -> bool:
        """Clear a user's failed logins and lockout (admin); returns whether there was any."""
        self._require("users.manage")
        was = self.users.unlock(name)
        self._record("users.unlock", name.strip(), "locked" if was else None, "unlocked")
        return was

    def remove_user(self, name: str) -> Role:
        """Delete a user (admin; not oneself, not the last admin); returns their role."""
        self._require("users.manage")
        if self._user is not None and self._user.name == name.strip():
            raise UserError(f"user {name!r} is logged in here: an admin cannot remove themself")
        role = self.users.remove_user(name)
        self._record("users.remove", name.strip(), role.label, None)
        return role

    def change_own_password(self, password: str) -> None:
        """The logged-in user replaces their own password (any role)."""
        user = self._user
        if user is None:
            raise PermissionDenied("users.set_password: log in first")
        self.users.set_password(user.name, password)
        self._record("users.set_password", user.name)

    def update_model_card(self, model: str | Path, metrics: Mapping[str, Any]) -> Path:
        """Write evaluation metrics, and the threshold they were taken at, into a model's card.

        A deployed card decides what every station passes, so this needs an engineer and
        is audited with the card's digest and threshold before and after (issue 12).

        Raises:
            PermissionDenied: Not logged in as an engineer or admin.
            ModelError: The model folder or its card cannot be read.
        """
        from inspector.quality.evaluation import update_card_metrics

        return self._write_card(model, lambda: update_card_metrics(model, metrics))

    def set_model_class_thresholds(self, model: str | Path, class_thresholds: Mapping[str, float], note: str) -> Path:
        """Write calibrated per-class thresholds and how they were chosen into a model's card
        (`inspector model calibrate --update-card`); engineer or higher, audited as `model.card_updated`.

        Raises:
            PermissionDenied: Not logged in as an engineer or admin.
            ModelError: The model folder or its card cannot be read, or its file does not match the card.
        """
        from inspector.quality.calibrate import write_class_thresholds

        return self._write_card(model, lambda: write_class_thresholds(model, class_thresholds, note))

    def _write_card(self, model: str | Path, write: Callable[[], Path]) -> Path:
        """``write`` a model's card as an engineer or higher, audited ``model.card_updated`` with the card's
        digest and thresholds before and after."""
        self._require("model.update_card")
        from inspector.pipeline.model_repo import load_card

        with self._lock:
            before = load_card(model, verify=False)
            path = write()
            after = load_card(model, verify=False)
        self._record("model.card_updated", before.name, before.audit_text, after.audit_text)
        return path

    def audit_entries(self, limit: int = 500, since: float | None = None) -> list[AuditEntry]:
        """Newest audit rows first (anyone may read the trail)."""
        self._require("audit.view")
        return self.audit.list(limit, since)

    # ------------------------------------------------------------------ helpers
    def _require(self, action: str) -> None:
        self.permissions.require(self._user, action)

    def _user_name(self) -> str:
        return self._user.name if self._user is not None else ANONYMOUS

    def _camera(self, camera_id: str) -> Camera:
        cam = self.station.cameras.get(camera_id)
        if cam is None:
            raise ControlError(f"camera {camera_id!r}: no such camera on this station")
        return cam

    def _record(self, action: str, target: str, old: object = None, new: object = None, *, who: str | None = None) -> None:
        entry = self.audit.record(who or self._user_name(), action, target, old, new)
        self.events.audit_recorded.emit(entry)


class _NoStation:
    """Stands in for a station where none runs (user management from the command line)."""

    def __init__(self) -> None:
        self.cameras: dict[str, Camera] = {}
        self.lanes: dict[str, Any] = {}
        self.paused = False

    def refresh_provenance(self, camera_id: str) -> None:
        pass

    def pause(self, paused: bool) -> None:
        raise ControlError("no station runs here: nothing to pause")


# ---------------------------------------------------------------------------- TOML
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    s = str(v)
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _toml_value(k)


def _feature_set_toml(cam: Camera, values: dict[str, Any], user: str) -> str:
    saved = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = {
        "camera": cam.info.id,
        "kind": cam.info.kind,
        "vendor": cam.info.vendor,
        "model": cam.info.model,
        "saved_at": saved,
        "saved_by": user,
    }
    lines = ["# Camera feature set: one camera's writable feature values, applied in this order.", "[feature_set]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in head.items()]
    lines += ["", "[features]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _in_force(switch: Any) -> Any:
    """A station's `RecipeSwitch`'s recipe in force, else its first; None without recipes."""
    if switch is None or not switch.recipes:
        return None
    return switch.current if switch.current is not None else switch.recipes[0]
