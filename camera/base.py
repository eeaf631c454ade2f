"""`ThreadedCamera`: lifecycle, state events, health and the acquisition thread, shared by cameras.

Health is judged from the age of the last good frame, by `ThreadedCamera.check_health`:
STALE after `ThreadedCamera.stale_after_s`, OFFLINE after `ThreadedCamera.offline_after_s`.
The camera's own thread calls it after every empty fetch, and the station's watchdog
calls it from another thread, so a camera whose thread hangs inside a driver call is
still reported. A device error marks the camera OFFLINE at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Self

from camera.features import FeatureTree
from camera.frame_pool import FramePool
from camera.protocol import CameraEvents, CameraInfo, CameraState

log = logging.getLogger(__name__)

#: Reconnect backoff after a lost device: first wait, then doubling up to the cap.
RECONNECT_FIRST_WAIT_S = 0.5
RECONNECT_MAX_WAIT_S = 5.0

#: No frame for this many frame periods (at least `STALE_MIN_S`): STALE.
STALE_PERIODS = 5.0
STALE_MIN_S = 1.0
#: No frame for this many frame periods (at least `OFFLINE_MIN_S`): OFFLINE. At 5 fps and
#: more that is 2 s, so a watchdog ticking every 0.2 s reports a dead camera well within 3 s
#: (slower cameras get 10 frame periods: 2.5 s at 4 fps, 10 s at 1 fps).
OFFLINE_PERIODS = 10.0
OFFLINE_MIN_S = 2.0
#: OFFLINE for lack of frames this long (no error raised): stop, close and re-open the
#: device, as a person would (a device that silently stopped streaming).
RESTART_AFTER_S = 10.0

_UNHEALTHY = (CameraState.STALE, CameraState.OFFLINE, CameraState.ERROR)


class ThreadedCamera:
    """Base for cameras that acquire on their own thread.

    Subclasses implement `_open_device`, `_close_device`, `_acquire_once` (deliver at most
    one frame into ``self.pool``; return False when nothing arrived within its timeout)
    and may override `_start_device` / `_stop_device`. The loop never blocks on consumers:
    it only writes into the pool.
    """

    #: How long `stop` waits for the acquisition thread (a hung driver call may never return).
    stop_timeout_s = 5.0

    def __init__(self, info: CameraInfo, pool: FramePool, fps: float) -> None:
        self.info = info
        self.pool = pool
        self.events = CameraEvents()
        self._fps = float(fps)
        self._state = CameraState.CLOSED
        # held while a transition is decided *and* announced, so listeners see
        # transitions in the order they happened even when two threads race
        self._state_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sequence = 0
        self.last_frame_at: float | None = None  # monotonic seconds
        self.state_reason = ""  # why the last transition happened (logs, camera_events)
        self._watch_from = 0.0  # monotonic; frame age counts from here before the first frame
        self._last_restart = 0.0
        self._clock_paced = True  # False for triggered cameras: no frames on an idle line is fine

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
        self._set_state(CameraState.OPEN, "opened")

    def start(self) -> None:
        if self._state is CameraState.CLOSED:
            self.open()
        if self._thread is not None:
            return
        self._stop.clear()
        self._start_device()
        self._clock_paced = self._paced_by_clock()
        self._watch_from = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.info.id}", daemon=True)
        self._thread.start()
        self._set_state(CameraState.STREAMING, "started")

    def request_stop(self) -> None:
        """Ask the acquisition thread to end without waiting (`stop` then joins it).

        A station stopping many cameras asks them all first, so their threads wind down
        in parallel and one hung camera costs `stop_timeout_s` once, not per camera.
        """
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=self.stop_timeout_s)
            if t.is_alive():
                log.warning(
                    "camera %s: acquisition thread did not stop within %.0f s (hung in the driver?); leaving it",
                    self.info.id,
                    self.stop_timeout_s,
                )
        if self._state is not CameraState.CLOSED:
            try:
                self._stop_device()
            except Exception as exc:  # noqa: BLE001 - a lost device may fail to stop; we are leaving anyway
                log.warning("camera %s: stop failed: %s", self.info.id, exc)
            self._set_state(CameraState.OPEN, "stopped")
        self.pool.flush()

    def close(self) -> None:
        if self._thread is not None:
            self.stop()
        if self._state is not CameraState.CLOSED:
            try:
                self._close_device()
            finally:
                self._set_state(CameraState.CLOSED, "closed")

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ health
    @property
    def stale_after_s(self) -> float:
        """Frame age after which a streaming camera is STALE."""
        return max(STALE_MIN_S, STALE_PERIODS / self._fps) if self._fps > 0 else float("inf")

    @property
    def offline_after_s(self) -> float:
        """Frame age after which a streaming camera is OFFLINE."""
        return max(OFFLINE_MIN_S, OFFLINE_PERIODS / self._fps) if self._fps > 0 else float("inf")

    def frame_age(self, now: float | None = None) -> float:
        """Seconds since the last good frame (since streaming started, before the first)."""
        now = time.monotonic() if now is None else now
        ref = self.last_frame_at if self.last_frame_at is not None else self._watch_from
        return max(0.0, now - max(ref, self._watch_from))

    def check_health(self, now: float | None = None) -> CameraState:
        """Mark a streaming camera STALE or OFFLINE from its frame age; return the state.

        Safe to call from any thread (the station watchdog does, every few hundred ms),
        also while the acquisition thread is stuck in a driver call. Cameras without a
        nominal rate (free-running, paced by the consumer) are never judged by age.
        """
        with self._state_lock:
            state = self._state
            if state not in (CameraState.STREAMING, CameraState.STALE) or not self._expects_frames():
                return state
            age = self.frame_age(now)
            if age > self.offline_after_s:
                self._set_state(CameraState.OFFLINE, f"no frame for {age:.1f} s")
            elif age > self.stale_after_s and state is CameraState.STREAMING:
                self._set_state(CameraState.STALE, f"no frame for {age:.1f} s")
            return self._state

    def _expects_frames(self) -> bool:
        """Whether frames are due by the clock (subclasses: False while legitimately idle)."""
        return self._fps > 0 and self._clock_paced and self._thread is not None and not self._stop.is_set()

    def _paced_by_clock(self) -> bool:
        """False when the camera waits for triggers (SFNC ``TriggerMode`` is ``On``).

        A triggered camera sends nothing while the line stands still, so its frame age
        says nothing about its health; only device errors mark it OFFLINE then.
        """
        try:
            return str(self.features.get("TriggerMode")) != "On"
        except Exception:  # noqa: BLE001 - no such feature (simulated cameras) or unreadable: free-running
            return True

    # ------------------------------------------------------------------ helpers
    def _set_state(self, new: CameraState, reason: str = "") -> None:
        with self._state_lock:
            old = self._state
            if old is new:
                return
            self._state = new
            self.state_reason = reason
            level = logging.WARNING if new in _UNHEALTHY else logging.INFO
            why = f" ({reason})" if reason else ""
            log.log(level, "camera %s: %s -> %s%s", self.info.id, old.value, new.value, why)
            self.events.state_changed.emit(self.info.id, old, new)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _frame_arrived(self) -> None:
        with self._state_lock:
            self.last_frame_at = time.monotonic()
            if self._state in (CameraState.STALE, CameraState.OFFLINE):
                self._set_state(CameraState.STREAMING, "frames again")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._acquire_once()
            except Exception as exc:  # noqa: BLE001 - the device failed: mark it and let the subclass recover
                self._set_state(CameraState.OFFLINE, f"acquisition failed: {exc}")
                self._on_acquisition_error(exc)
                self._watch_from = time.monotonic()  # judge the re-opened device afresh
                continue
            if got:
                self._frame_arrived()
            else:
                self._check_stale()

    def _check_stale(self) -> None:
        """After an empty fetch: judge the frame age; re-open a device silent for too long."""
        if self.check_health() is not CameraState.OFFLINE or not self._expects_frames():
            return
        now = time.monotonic()
        if self.frame_age(now) > RESTART_AFTER_S and now - self._last_restart > RESTART_AFTER_S:
            self._last_restart = now
            age = self.frame_age(now)
            log.warning("camera %s: no frame for %.0f s; re-opening the device", self.info.id, age)
            self._on_acquisition_error(TimeoutError(f"no frame for {age:.0f} s"))
            self._watch_from = time.monotonic()

    def _reconnect(self, reopen: Callable[[], None]) -> bool:
        """Call ``reopen`` until it succeeds, waiting 0.5 s, 1 s, 2 s ... up to 5 s between tries.

        Returns:
            True once re-opened, False if the camera was stopped meanwhile.
        """
        wait = RECONNECT_FIRST_WAIT_S
        while not self._stop.wait(wait):
            try:
                reopen()
            except Exception as err:  # noqa: BLE001 - any failure means: not back yet
                wait = min(wait * 2, RECONNECT_MAX_WAIT_S)
                log.warning("camera %s: reconnect failed (%s); next try in %.1f s", self.info.id, err, wait)
                continue
            log.info("camera %s: reconnected", self.info.id)
            return True
        return False

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
