"""Live statistics of a run: latency percentiles, NG counts, accuracy against ground truth."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from camera.renderer import GroundTruth
from inspector.pipeline.results import Detection, InspectionResult, StageTimes


@dataclass
class AccuracyCounts:
    """Part-level and box-level agreement with ground truth."""

    parts: int = 0
    defective_parts: int = 0
    ok_parts: int = 0
    escapes: int = 0  # defective part judged OK
    false_rejects: int = 0  # OK part judged NG
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, ng: bool, detections: Sequence[Detection], truth: GroundTruth, iou: float = 0.5) -> None:
        self.add_matched(ng, truth.defective, match_boxes(detections, truth, iou))

    def add_matched(self, ng: bool, defective: bool, matched: tuple[int, int, int]) -> None:
        """`add` with the boxes already matched (``(tp, fp, fn)`` of `match_boxes`)."""
        self.parts += 1
        if defective:
            self.defective_parts += 1
            self.escapes += int(not ng)
        else:
            self.ok_parts += 1
            self.false_rejects += int(ng)
        tp, fp, fn = matched
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def as_dict(self) -> dict[str, float | int]:
        return {
            "parts": self.parts,
            "defective_parts": self.defective_parts,
            "ok_parts": self.ok_parts,
            "escapes": self.escapes,
            "false_rejects": self.false_rejects,
            "escape_rate": self.escapes / self.defective_parts if self.defective_parts else 0.0,
            "false_reject_rate": self.false_rejects / self.ok_parts if self.ok_parts else 0.0,
            "box_precision": self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0,
            "box_recall": self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0,
        }


def match_boxes(detections: Sequence[Detection], truth: GroundTruth, iou: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching (highest score first, same class, IoU >= ``iou``): (tp, fp, fn)."""
    gts = list(truth.boxes)
    used = [False] * len(gts)
    tp = 0
    for d in sorted(detections, key=lambda d: -d.score):
        best, best_iou = -1, iou
        for i, g in enumerate(gts):
            if used[i] or g.class_id != d.class_id:
                continue
            ix = max(0.0, min(d.x2, g.x2) - max(d.x1, g.x1))
            iy = max(0.0, min(d.y2, g.y2) - max(d.y1, g.y1))
            inter = ix * iy
            u = d.area + g.area - inter
            v = inter / u if u > 0 else 0.0
            if v >= best_iou:
                best, best_iou = i, v
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, len(detections) - tp, len(gts) - tp


def percentiles(values: Iterable[float]) -> dict[str, float]:
    arr = np.fromiter(values, float)
    if arr.size == 0:
        return {"p50": 0.0, "p99": 0.0}
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99))}


#: `StageTimes.as_dict`'s names and the fields they come from
_STAGES = tuple((name, f"{name}_ms") for name in StageTimes().as_dict())


@dataclass
class CameraStats:
    """Per-camera result statistics (pool counters live in the pool)."""

    inspected: int = 0
    ng: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    #: the newest results' stage times, one object each (not one append per stage per frame: the fan-out
    #: runs on the cores that inference needs)
    times: deque[StageTimes] = field(default_factory=lambda: deque(maxlen=50_000))
    last_verdict: str = ""
    accuracy: AccuracyCounts = field(default_factory=AccuracyCounts)

    @property
    def stages(self) -> dict[str, list[float]]:
        """Milliseconds per stage (``wait``, ``preprocess``, ... ``total``) of the newest results."""
        times = list(self.times)
        return {name: [getattr(t, attr) for t in times] for name, attr in _STAGES}


class RunStats:
    """Collects results inline in the fan-out (cheap: counters and appends)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cameras: dict[str, CameraStats] = {}
        self.accuracy = AccuracyCounts()
        # (monotonic time, latency ms) of the newest results, for the health's windowed latency
        self._recent: deque[tuple[float, float]] = deque(maxlen=20_000)

    def add(self, results: Sequence[InspectionResult]) -> None:
        now = time.monotonic()
        with self._lock:
            for r in results:
                self._recent.append((now, r.times.total_ms))
                cs = self.cameras.get(r.camera_id)
                if cs is None:
                    cs = self.cameras[r.camera_id] = CameraStats()
                cs.inspected += 1
                cs.ng += int(r.ng)
                cs.last_verdict = r.verdict.value
                cs.latency_ms.append(r.times.total_ms)
                cs.times.append(r.times)
                if r.truth is not None:  # matched once, counted for the camera and the run
                    matched = match_boxes(r.detections, r.truth)
                    cs.accuracy.add_matched(r.ng, r.truth.defective, matched)
                    self.accuracy.add_matched(r.ng, r.truth.defective, matched)

    def camera(self, camera_id: str) -> CameraStats:
        with self._lock:
            return self.cameras.setdefault(camera_id, CameraStats())

    def recent_latency_ms(self, window_s: float, now: float | None = None) -> list[float]:
        """Latencies of the results handed over in the last ``window_s`` seconds (newest 20,000 at most)."""
        since = (time.monotonic() if now is None else now) - window_s
        with self._lock:
            return [ms for t, ms in self._recent if t >= since]

    def latency_ms(self) -> list[float]:
        """Every camera's kept latencies, copied under the lock: a worker appending to a full buffer drops its
        oldest value, which a reader iterating the buffer itself would see as "deque mutated during iteration"."""
        with self._lock:
            return [v for cs in self.cameras.values() for v in cs.latency_ms]

    def total_ng(self) -> int:
        with self._lock:
            return sum(c.ng for c in self.cameras.values())

    def stage_percentiles(self) -> dict[str, dict[str, float]]:
        with self._lock:
            merged: dict[str, list[float]] = {}
            for cs in self.cameras.values():
                for k, v in cs.stages.items():
                    merged.setdefault(k, []).extend(v)
        return {k: percentiles(v) for k, v in merged.items()}
