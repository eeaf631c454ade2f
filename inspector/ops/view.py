"""What health and metrics read of a station: a structural view, so `ops` never imports `Station`.

`inspector.station.Station` satisfies `StationView` (mypy checks it where the station
hands itself to `assess` and `StationMetrics`); tests pass small fakes with the same
attributes. Everything here is read, never changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from camera.protocol import Camera
from inspector.ops.run_stats import RunStats
from inspector.ops.watchdog import CameraWatchdog

if TYPE_CHECKING:  # pragma: no cover
    from inspector.ops.health import Health


class StationView(Protocol):
    """The station's state as health and metrics see it."""

    @property
    def config(self) -> Any: ...  # StationConfig: only ``.health`` is read

    @property
    def cameras(self) -> Mapping[str, Camera]: ...

    @property
    def watchdog(self) -> CameraWatchdog: ...

    @property
    def stats(self) -> RunStats: ...

    @property
    def transitions(self) -> Counter[tuple[str, str]]: ...

    @property
    def workers(self) -> Sequence[Any]: ...  # InferenceWorker: ``.index`` and ``.stats.errors``

    @property
    def db_writer(self) -> Any: ...  # DbWriter or None

    @property
    def archive(self) -> Any: ...  # NgArchive or None

    @property
    def line(self) -> Any: ...  # inspector.line.runner.Line on a triggered line, else None

    @property
    def mqtt(self) -> Any: ...  # inspector.plant.mqtt.MqttPublisher or None: ``.stats()``

    @property
    def running(self) -> bool: ...

    @property
    def paused(self) -> bool: ...

    def health(self) -> Health: ...
