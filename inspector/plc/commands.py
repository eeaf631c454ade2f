"""`StationCommands`: what the PLC links may do to the station, through the same control API as the GUI."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from inspector.plc.modbus_map import StationState

log = logging.getLogger(__name__)


class CommandNotAudited(RuntimeError):
    """A change whose audit entry could not be written (database locked or away): nothing changed."""


class StationCommands:
    """Carries out PLC commands on a station.

    Through a ``control`` session (`StationControl.service`, the PLC's own name and the operator
    role) every command is permission-checked and changes are audited like the GUI's; there is
    no way around it (a PLC link needs the station's database: `inspector.plc.links`).

    A change and its audit entry are one step: the entry is written first, and only then is
    the station changed, so a database that is locked longer than its busy timeout refuses
    the command (`CommandNotAudited`) instead of leaving a change without its row. The PLC
    servers call these from worker threads, never from their event loops.
    """

    def __init__(self, station: Any, control: Any) -> None:
        self.station = station
        self.control = control

    def trigger_part(self, part_id: str) -> str:
        return str(self.control.trigger_part(part_id))

    def set_running(self, running: bool) -> None:
        """Resume (True) or pause (False) inspection; audited ``station.pause`` old -> new first."""
        self.control.require("station.pause")
        self._audit("station.pause", bool(self.station.paused), not running)
        self.station.pause(not running)

    def select_recipe(self, number: int) -> None:
        """Product changeover; audited ``recipe.select`` old -> new before the switch begins.

        Raises:
            RuntimeError: No recipes on this station, or the switch failed (the old recipe stays).
            LookupError: No recipe ``number``.
            CommandNotAudited: The audit trail could not be written: nothing was switched.
        """
        recipes = getattr(self.station, "recipes", None)
        if recipes is None:
            raise RuntimeError("this station has no product recipes to select")
        from inspector.recipes.recipe import find_recipe

        self.control.require("recipe.select")
        old = recipes.current.label if recipes.current is not None else None
        new = find_recipe(recipes.recipes, number).label
        self._audit("recipe.select", old, new)
        try:
            self.station.select_recipe(number)
        except Exception as exc:
            try:  # the row above announced a switch that did not happen
                self._audit("recipe.select_failed", new, str(exc)[:200])
            except CommandNotAudited:
                log.error("plc: recipe %s failed and its failure could not be audited: %s", new, exc)
            raise

    def _audit(self, action: str, old: object, new: object) -> None:
        name = getattr(getattr(self.station, "config", None), "name", "station")
        user = self.control.user.name if self.control.user is not None else "plc"
        try:
            entry = self.control.audit.record(user, action, name, old, new)
        except (SQLAlchemyError, TimeoutError) as exc:
            raise CommandNotAudited(f"{action}: the audit trail cannot be written: {str(exc).splitlines()[0]}") from None
        self.control.events.audit_recorded.emit(entry)

    def state(self) -> StationState:
        st = self.station
        if not getattr(st, "running", False):
            return StationState.STARTING
        if getattr(st, "paused", False):
            return StationState.STOPPED
        try:
            if st.health()["level"] == "ALARM":
                return StationState.ERROR
        except Exception:
            log.exception("plc: health check failed")
            return StationState.ERROR
        return StationState.RUNNING

    def fault(self) -> str:
        """A fault of the running station, "" when none: a camera OFFLINE, results lost or not stored, a full disk.

        An overload (frames dropped, late or incomplete parts) is not a fault: the line goes on
        and each late part is NG by itself; the OPC UA VisionStateMachine enters Error only on a fault.
        """
        st = self.station
        if not getattr(st, "running", False) or getattr(st, "paused", False):
            return ""
        try:
            h = st.health()
        except Exception:
            log.exception("plc: health check failed")
            return "health check failed"
        offline = sorted(cid for cid, cam in h["cameras"].items() if cam.get("state") == "offline")
        db, archive = h["db"], h["archive"]
        found = ([f"camera {', '.join(offline)} OFFLINE"] if offline else []) + [
            text for bad, text in ((db.get("lost"), "results LOST"), (db.get("skipped_full"), "results not stored"),
                                   (db.get("backlog"), "db spool full"), (archive.get("alarm"), "archive disk full"))
            if bad]
        return ", ".join(found)

    def recipe_number(self) -> int:
        return int(getattr(self.station, "recipe_number", 0) or 0)
