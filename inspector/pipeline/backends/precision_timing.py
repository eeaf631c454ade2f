"""One precision timed as the station runs it: its backend under the station's scheduler, saturated.

`StationRun` builds the backend with the station's settings (`precision_choice.Settings`: the same compile
config, streams, ``in_flight`` slots and in-graph NMS), and an `InferenceWorker` over as many cameras as the
station's device serves, each of which always has a frame waiting (a free-running camera faster than the
model): the worker batches, letterboxes, submits, waits, decodes and decides exactly as in the station, with
its in-flight requests and its refills. Only the sinks are left out (the same for every precision). Between
windows the worker is paused and its batches in flight decided, so the precisions timed in turns never run
at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from camera.frame_pool import FrameHandle, FramePool
from inspector.pipeline.model_repo import ModelCard
from inspector.pipeline.results import InspectionResult, Provenance
from inspector.pipeline.verdict import VerdictRules

if TYPE_CHECKING:
    from inspector.pipeline.backends.precision_choice import Settings

#: Seeds of the frames the timing runs on (held-out parts, not the bench's nor the training set's)
TIMING_SEED = 4_000_000
#: How long a window may wait for its batches in flight to refill or drain before it goes on anyway
SETTLE_TIMEOUT_S = 5.0


class _EndlessPool(FramePool):
    """A free-running camera faster than the model: each claim publishes the next frame at once."""

    def __init__(self, camera_id: str, frame: np.ndarray, pixel_format: str, capacity: int) -> None:
        super().__init__(camera_id, capacity)
        self._frame, self._format, self._seq = frame, pixel_format, 0
        self.refill()

    def refill(self) -> None:
        self._seq += 1
        self.publish_external(self._frame, self._seq, _nothing, pixel_format=self._format)

    def claim(self) -> FrameHandle | None:
        h = super().claim()
        if h is not None:
            self.refill()
        return h


def _nothing() -> None:
    """The frames are shared read-only arrays: nothing to hand back."""


class StationRun:
    """``precision``'s backend and a paused worker over ``settings.station_batch`` saturated cameras.

    Args:
        card: The model (its INT8 IR's card for ``int8``).
        precision: What the backend runs.
        settings: The station's backend and scheduler settings.
    """

    def __init__(self, card: ModelCard, precision: str, settings: Settings) -> None:
        from camera.renderer import render_part
        from inspector.pipeline.backends import create_backend
        from inspector.pipeline.scheduler import CameraLane, InferenceWorker

        self.backend = create_backend("openvino", card, max_batch=settings.max_batch, device=settings.device,
                                      threads=settings.threads, precision=precision, depth=settings.depth,
                                      streams=settings.streams, nms_iou=settings.nms_iou,
                                      batch=settings.station_batch)
        try:
            self.backend.warmup()
            wait_static = getattr(self.backend, "wait_static", None)
            if wait_static is not None:  # timed as the station runs it for good: full batches on their own graph
                wait_static(120.0)
            prov = Provenance(card.name, card.sha256, "openvino")
            rules = VerdictRules(card.threshold) if card.threshold is not None else VerdictRules()
            lanes = []
            for i in range(settings.station_batch):
                mono = i % 4 == 3  # a quarter Mono8, as the demo station and the bench
                frame = render_part(TIMING_SEED + i, card.input_width, card.input_height, mono=mono).image
                pool = _EndlessPool(f"timing-{i}", frame, "Mono8" if mono else "BGR8", settings.depth + 3)
                lanes.append(CameraLane(f"timing-{i}", pool, rules, prov, tiling=False))
            self._lock = threading.Lock()
            self._frames = 0
            self._batches = 0
            self._stamp = 0.0
            self.worker = InferenceWorker(0, self.backend, lanes, self._emit, in_flight=settings.depth,
                                          iou_threshold=settings.nms_iou if settings.nms_iou is not None else 0.5)
            self.worker.pause(True)
            self.worker.start()
        except BaseException:
            self.backend.close()
            raise

    def _emit(self, results: list[InspectionResult]) -> None:
        with self._lock:
            self._frames += len(results)
            self._batches += 1
            self._stamp = time.perf_counter()

    def _counts(self) -> tuple[int, int, float]:
        """Frames and batches decided so far, and when the last one was."""
        with self._lock:
            return self._frames, self._batches, self._stamp

    def _wait_until(self, done: Callable[[tuple[int, int, float]], bool]) -> tuple[int, int, float]:
        """The counts once ``done`` holds for them (or `SETTLE_TIMEOUT_S` passed)."""
        until = time.monotonic() + SETTLE_TIMEOUT_S
        while not done(c := self._counts()) and time.monotonic() < until:
            time.sleep(0.001)
        return c

    def window(self, seconds: float) -> float:
        """Frames per second over at least ``seconds`` once the worker's batches in flight refilled: from one
        batch decided to the first decided after ``seconds`` (whole batches, however slow they run); paused
        after."""
        w = self.worker
        b0 = self._counts()[1]
        w.pause(False)
        f0, _b, t0 = self._wait_until(lambda c: c[1] >= b0 + w.in_flight)  # every slot turned over once
        time.sleep(max(0.0, t0 + seconds - time.perf_counter()))
        end = time.perf_counter()
        f1, _b, t1 = self._wait_until(lambda c: c[2] >= end)
        w.pause(True)
        until = time.monotonic() + SETTLE_TIMEOUT_S
        while not w.drained() and time.monotonic() < until:  # the next precision runs alone
            time.sleep(0.002)
        return (f1 - f0) / (t1 - t0) if t1 > t0 else 0.0

    def close(self) -> None:
        self.worker.stop()
        self.backend.close()
