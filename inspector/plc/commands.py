"""`StationCommands`: what the PLC links may do to the station, through the same control API as the GUI."""

from __future__ import annotations

import logging
from typing import Any

from inspector.plc.modbus_map import StationState

log = logging.getLogger(__name__)


class StationCommands:
    """Carries out PLC commands on a station.

    With a ``control`` session (`StationControl.service`, the PLC's own name and the operator
    role) every command is permission-checked and changes are audited like the GUI's; a
    station without a database has no audit trail, and the commands go to it directly.
    """

    def __init__(self, station: Any, control: Any = None) -> None:
        self.station = station
        self.control = control

    def trigger_part(self, part_id: str) -> str:
        target = self.control if self.control is not None else self.station
        return str(target.trigger_part(part_id))

    def set_running(self, running: bool) -> None:
        target = self.control if self.control is not None else self.station
        target.pause(not running)

    def select_recipe(self, number: int) -> None:
        target = self.control if self.control is not None else self.station
        if getattr(self.station, "recipes", None) is None:
            raise RuntimeError("this station has no product recipes to select")
        target.select_recipe(number)

    def state(self) -> StationState:
        st = self.station
        if not getattr(st, "running", False):
            return StationState.STARTING
        if getattr(st, "paused", False):
            return StationState.STOPPED
        try:
            if st.health()["level"] == "ALARM":
                return StationState.ERROR
        except Exception:  # noqa: BLE001 - a state read must never take the PLC link down
            log.exception("plc: health check failed")
            return StationState.ERROR
        return StationState.RUNNING

    def recipe_number(self) -> int:
        return int(getattr(self.station, "recipe_number", 0) or 0)
