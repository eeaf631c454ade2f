"""`CameraWatchdog`: judges every camera's health from outside its acquisition thread.

A camera thread that hangs inside a driver call cannot report that it is stuck. The
watchdog is one station thread that, every ``interval_s``, asks each camera to check
its frame age (`camera.base.ThreadedCamera.check_health`: STALE, then OFFLINE) and
samples the pool counters for a windowed frame rate (status line, metrics, health).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping

from camera.protocol import Camera

log = logging.getLogger(__name__)


class CameraWatchdog:
    """One thread that checks each camera's health and measures its recent rates.

    Args:
        cameras: The station's cameras by id.
        interval_s: Time between checks. With cameras going OFFLINE after 2 s without
            a frame (at 5 fps and more), 0.2 s keeps the detection within 3 s.
        window_s: Span of the windowed frame rates.
    """

    def __init__(self, cameras: Mapping[str, Camera], *, interval_s: float = 0.2, window_s: float = 5.0) -> None:
        self.cameras = dict(cameras)
        self.interval_s = interval_s
        self.window_s = window_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # per camera: (monotonic, received, inspected, invalid, dropped) samples within the window
        self._samples: dict[str, collections.deque[tuple[float, int, int, int, int]]] = {
            cid: collections.deque() for cid in self.cameras
        }
        self.checks = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="camera-watchdog", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout)

    def check_once(self, now: float | None = None) -> None:
        """Check every camera and take one rate sample (the thread's body)."""
        now = time.monotonic() if now is None else now
        for cid, cam in self.cameras.items():
            check = getattr(cam, "check_health", None)
            if check is not None:
                try:
                    check(now)
                except Exception:  # one odd camera must not blind the watchdog to the others
                    log.exception("watchdog: health check of camera %s failed", cid)
            c = cam.pool.snapshot()
            with self._lock:
                q = self._samples[cid]
                q.append((now, c.received, c.inspected, c.invalid, c.dropped))
                while len(q) > 2 and now - q[1][0] >= self.window_s:
                    q.popleft()
        self.checks += 1

    def rates(self, camera_id: str) -> dict[str, float]:
        """Frames per second over the last window: received, inspected, invalid, dropped."""
        with self._lock:
            q = self._samples.get(camera_id)
            if not q or len(q) < 2:
                return {"received": 0.0, "inspected": 0.0, "invalid": 0.0, "dropped": 0.0}
            (t0, r0, i0, v0, d0), (t1, r1, i1, v1, d1) = q[0], q[-1]
        dt = max(1e-9, t1 - t0)
        return {"received": (r1 - r0) / dt, "inspected": (i1 - i0) / dt, "invalid": (v1 - v0) / dt,
                "dropped": (d1 - d0) / dt}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()
