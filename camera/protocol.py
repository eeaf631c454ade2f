"""The camera protocol every camera (GenTL, simulated, replay) implements."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

from psygnal import Signal

from camera.features import FeatureTree
from camera.frame_pool import FramePool


class CameraState(str, enum.Enum):
    """Lifecycle and health of a camera."""

    CLOSED = "closed"
    OPEN = "open"
    STREAMING = "streaming"
    STALE = "stale"  # streaming, but no frame for longer than expected
    OFFLINE = "offline"  # lost; reconnecting
    ERROR = "error"


@dataclass(frozen=True)
class CameraInfo:
    """Identity of a camera as shown in `inspector cameras list`."""

    id: str
    kind: str  # "gentl", "simulated", "replay"
    vendor: str = ""
    model: str = ""
    serial: str = ""
    producer: str = ""  # GenTL producer file, for gentl cameras


class CameraEvents:
    """psygnal events a camera emits (the GUI and the log subscribe)."""

    state_changed = Signal(str, object, object)  # camera id, old CameraState, new CameraState


@runtime_checkable
class Camera(Protocol):
    """A frame source that fills its own `FramePool` from its own thread.

    Lifecycle: ``open() -> start() -> stop() -> close()``; as a context manager,
    ``with cam:`` opens on entry and stops/closes on exit.
    """

    info: CameraInfo
    pool: FramePool
    events: CameraEvents
    #: why the last state transition happened (logs, the camera_events table)
    state_reason: str

    @property
    def state(self) -> CameraState: ...

    @property
    def features(self) -> FeatureTree: ...

    @property
    def nominal_fps(self) -> float: ...

    def open(self) -> None: ...

    def start(self) -> None: ...

    def request_stop(self) -> None:
        """Ask the camera's thread to wind down without waiting (`stop` then waits)."""
        ...

    def stop(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
