"""What the station tells its watchers (`StationEvents`) and the one error its build and commands raise."""

from __future__ import annotations

from psygnal import Signal


class StationError(RuntimeError):
    """The station cannot be built or started (one-line reason)."""


class StationEvents:
    """Engine events; the GUI adapts these to Qt signals."""

    result_ready = Signal(object)  # InspectionResult
    part_ready = Signal(object)  # PartResult (triggered lines), once durable
    camera_state_changed = Signal(str, object, object)  # camera id, old, new CameraState
    paused_changed = Signal(bool)
