"""`ThreadedCamera`: lifecycle, state events and the acquisition thread, shared by cameras."""

from __future__ import annotations

import logging
import threading
import time

from camera.features import FeatureTree
from camera.frame_pool import FramePool
from camera.protocol import CameraEvents, CameraInfo, CameraState

log = logging.getLogger(__name__)


class ThreadedCamera:
    """Base for cameras that acquire on their own thread.

    Subclasses implement `_open_device`, `_close_device`, `_acquire_once` (deliver at most
    one frame into ``self.pool``; return False when nothing arrived within its timeout)
    and may override `_start_device` / `_stop_device`. The loop never blocks on consumers:
    it only writes into the pool.
    """

    def __init__(self, info: CameraInfo, pool: FramePool, fps: float) -> None:
        self.info = info
        self.pool = pool
        self.events = CameraEvents()
        self._fps = float(fps)
        self._state = CameraState.CLOSED
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sequence = 0
        self.last_frame_at: float | None = None  # monotonic seconds

    # ------------------------------------------------------------------ protocol
    @property
    def state(self) -> CameraState:
        return self._state

    @property
    def features(self) -> FeatureTree:  # pragma: no cover - subclasses provide
        raise NotImplementedError

    @property
    def nominal_fps(self) -> float:
        return self._fps

    def open(self) -> None:
        if self._state is not CameraState.CLOSED:
            return
        self._open_device()
        self._set_state(CameraState.OPEN)

    def start(self) -> None:
        if self._state is CameraState.CLOSED:
            self.open()
        if self._thread is not None:
            return
        self._stop.clear()
        self._start_device()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.info.id}", daemon=True)
        self._thread.start()
        self._set_state(CameraState.STREAMING)

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=5)
            if t.is_alive():
                log.warning("camera %s: acquisition thread did not stop within 5 s", self.info.id)
        if self._state is not CameraState.CLOSED:
            try:
                self._stop_device()
            except Exception as exc:  # a lost device may fail to stop; we are leaving anyway
                log.warning("camera %s: stop failed: %s", self.info.id, exc)
            self._set_state(CameraState.OPEN)
        self.pool.flush()

    def close(self) -> None:
        if self._thread is not None:
            self.stop()
        if self._state is not CameraState.CLOSED:
            try:
                self._close_device()
            finally:
                self._set_state(CameraState.CLOSED)

    def __enter__(self) -> ThreadedCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _set_state(self, new: CameraState) -> None:
        with self._state_lock:
            old = self._state
            if old is new:
                return
            self._state = new
        log.info("camera %s: %s -> %s", self.info.id, old.value, new.value)
        self.events.state_changed.emit(self.info.id, old, new)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _frame_arrived(self) -> None:
        self.last_frame_at = time.monotonic()
        if self._state in (CameraState.STALE, CameraState.OFFLINE):
            self._set_state(CameraState.STREAMING)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._acquire_once()
            except Exception as exc:  # the device failed: mark it and let the subclass recover
                log.warning("camera %s: acquisition failed: %s", self.info.id, exc)
                self._set_state(CameraState.OFFLINE)
                self._on_acquisition_error(exc)
                continue
            if got:
                self._frame_arrived()
            else:
                self._check_stale()

    def _check_stale(self) -> None:
        if self.last_frame_at is None or self._fps <= 0:
            return
        age = time.monotonic() - self.last_frame_at
        if age > max(3.0, 5.0 / self._fps) and self._state is CameraState.STREAMING:
            self._set_state(CameraState.STALE)

    # ------------------------------------------------------------------ subclass hooks
    def _open_device(self) -> None:
        pass

    def _close_device(self) -> None:
        pass

    def _start_device(self) -> None:
        pass

    def _stop_device(self) -> None:
        pass

    def _acquire_once(self) -> bool:  # pragma: no cover - subclasses provide
        raise NotImplementedError

    def _on_acquisition_error(self, exc: Exception) -> None:
        """Default: wait a little before the loop tries again."""
        self._stop.wait(0.5)
