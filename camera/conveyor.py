"""A simulated conveyor: parts pass a photo-eye, an encoder triggers each camera at its place.

Parts arrive at ``parts_per_min`` with a relative ``jitter`` in their spacing. When a part
breaks the photo-eye, ``on_part(photo_eye_ns)`` opens it (the station's part tracker) and
returns the trigger id its frames will carry; the encoder then fires each camera when
the part has travelled that camera's distance from the photo-eye
(``position_mm / belt_mm_s``). Every part is seen once by every camera. With a reject gate
(``reject_mm``) each part reaches it that much later and ``on_gate(trigger_id)`` is called
then: the gate pushes the part off when its output is driven at that moment.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from camera.realtime import raise_thread_priority
from camera.trigger import TriggeredCamera

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConveyorStation:
    """A camera on the belt, ``position_mm`` after the photo-eye."""

    camera: TriggeredCamera
    position_mm: float = 0.0


class Conveyor:
    """Parts on a belt, a photo-eye and an encoder that triggers the cameras.

    Args:
        on_part: Called at each photo-eye event with its time (perf_counter ns); returns
            the trigger id for that part's frames.
        parts_per_min: Mean part rate.
        jitter: Relative spread of the spacing between parts (0.1: +-10 %).
        belt_mm_s: Belt speed (turns camera positions into trigger delays).
        seed: Makes the spacing repeatable.
    """

    def __init__(
        self,
        on_part: Callable[[int], int],
        *,
        parts_per_min: float = 300.0,
        jitter: float = 0.1,
        belt_mm_s: float = 500.0,
        seed: int = 0,
        reject_mm: float | None = None,
        on_gate: Callable[[int], None] | None = None,
    ) -> None:
        if parts_per_min <= 0:
            raise ValueError("parts_per_min must be > 0")
        self.on_part = on_part
        self.parts_per_min = parts_per_min
        self.jitter = jitter
        self.belt_mm_s = belt_mm_s
        self.reject_mm = reject_mm
        self.on_gate = on_gate
        self.stations: list[ConveyorStation] = []
        self.parts_seen = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused = threading.Event()

    def add_camera(self, camera: TriggeredCamera, position_mm: float = 0.0) -> None:
        self.stations.append(ConveyorStation(camera, position_mm))

    def delay_ns(self, station: ConveyorStation) -> int:
        return int(station.position_mm / self.belt_mm_s * 1e9)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="conveyor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the belt: no new parts; triggers of parts already past the photo-eye still fire."""
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=5.0)

    def pause(self, paused: bool) -> None:
        """Hold the belt (no parts arrive) or let it run again."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def _spacing_s(self) -> float:
        mean = 60.0 / self.parts_per_min
        return mean * (1.0 + self.jitter * self._rng.uniform(-1.0, 1.0))

    def _run(self) -> None:
        raise_thread_priority()  # the simulated photo-eye, encoder and gate are hardware: on time under load
        due: list[tuple[int, int, int, int]] = []  # (fire ns, order, station index, trigger id)
        order = 0
        next_part = time.perf_counter_ns() + int(self._spacing_s() * 1e9)
        while True:
            stopping = self._stop.is_set()
            if stopping and not due:
                return
            now = time.perf_counter_ns()
            if not stopping and now >= next_part:
                if not self._paused.is_set():
                    tid = self.on_part(next_part)
                    self.parts_seen += 1
                    for i, st in enumerate(self.stations):
                        order += 1
                        heapq.heappush(due, (next_part + self.delay_ns(st), order, i, tid))
                    if self.reject_mm is not None and self.on_gate is not None:
                        order += 1
                        gate_ns = next_part + int(self.reject_mm / self.belt_mm_s * 1e9)
                        heapq.heappush(due, (gate_ns, order, -1, tid))
                next_part += int(self._spacing_s() * 1e9)
                if next_part < now:  # fell behind (a stalled thread): do not burst
                    next_part = now + int(self._spacing_s() * 1e9)
            while due and due[0][0] <= now:
                _t, _o, i, tid = heapq.heappop(due)
                try:
                    if i < 0:
                        self.on_gate(tid)  # type: ignore[misc]
                        continue
                    self.stations[i].camera.fire(tid)
                except Exception as exc:  # noqa: BLE001 - a lost camera: its part will fail safe at its deadline
                    log.warning("conveyor: trigger %d to camera %d failed: %s", tid, i, exc)
            candidates = [due[0][0]] if due else []
            if not stopping:
                candidates.append(next_part)
            wake = min(candidates) if candidates else now + 50_000_000
            sleep_s = max(0.0, min(0.05, (wake - time.perf_counter_ns()) / 1e9))
            if stopping:
                time.sleep(sleep_s)  # the stop event is set: only the last triggers are left
            else:
                self._stop.wait(sleep_s)
