"""`serve_station`: build a station, start inspecting at once, and serve its control link until told to stop.

Inspection starts before the link is served and before anyone logs in: a station that
boots unattended inspects with nobody there (users and the first admin are a GUI's or
the command line's business, never a reason to wait).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.service.server import ControlServer, ServiceError

if TYPE_CHECKING:
    from inspector.config import StationConfig

log = logging.getLogger(__name__)


def serve_station(
    cfg: StationConfig,
    socket_path: Path,
    stop: threading.Event,
    *,
    db_url: str | None = None,
    image_fps: float = 5.0,
    archive: bool = True,
    metrics_port: int | None = None,
    on_ready: Callable[[ControlServer], None] | None = None,
) -> None:
    """Run ``cfg``'s station headless and serve its control link on ``socket_path`` until ``stop`` is set.

    Args:
        cfg: The station.
        socket_path: The control link's Unix socket.
        stop: Set it (a signal handler does) to stop serving and stop the station.
        db_url: Overrides the config's database ("none" is refused: users and audit live there).
        image_fps: Display images per camera and second sent to attached GUIs.
        archive: Save NG images.
        metrics_port: Serve Prometheus metrics there.
        on_ready: Called once inspection runs and the link is served.

    Raises:
        ServiceError: No database, or the socket is in use or cannot be made.
        StationError, ConfigError, StorageError, ModelError: The station cannot be built or started.
    """
    from inspector.station import Station

    if (db_url if db_url is not None else cfg.storage.db_url) == "none":
        raise ServiceError("the service needs a database (users and the audit trail live there): leave --db out or give a URL")
    t0 = time.monotonic()
    station = Station(cfg, db_url=db_url, archive=archive, metrics_port=metrics_port)
    try:
        station.start()
        log.info("station %s inspecting %.1f s after the service started", cfg.name, time.monotonic() - t0)
        with ControlServer(station, socket_path, image_fps=image_fps) as server:
            if on_ready is not None:
                on_ready(server)
            stop.wait()
            log.info("service of station %s stopping", cfg.name)
    finally:
        station.stop()
