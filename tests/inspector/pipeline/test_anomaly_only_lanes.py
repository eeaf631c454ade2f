"""A camera decided by its anomaly model alone (``detector = false``: its rules ignore every class of the
detector) sends no frames to the detector; the worker still decides them, and counts them inspected."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from camera.frame_pool import FramePool
from inspector.pipeline.results import InspectionResult, Provenance, Verdict
from inspector.pipeline.scheduler import CameraLane, InferenceWorker
from inspector.pipeline.verdict import VerdictRules
from tests.inspector.fakes import CLASSES, ScriptedBackend


class _Scores:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores, self.posed = scores, None
        self.maps = np.repeat(scores[:, None, None], 4, axis=1).repeat(4, axis=2)


class _Pending:
    def __init__(self, scores: np.ndarray) -> None:
        self._scores = scores

    def wait(self) -> _Scores:
        return _Scores(self._scores)


class MeanCheck:
    """An `AnomalyCheck` whose image score is the item's mean pixel / 100."""

    key, name, sha256 = "mean", "mean", "b" * 64
    threshold, input_width, input_height = 1.0, 32, 32
    crop = None

    def __init__(self) -> None:
        self.batches: list[int] = []

    def prepare(self, worker: int, depth: int) -> None:
        pass

    def start(self, worker: int, batch_u8: np.ndarray) -> _Pending:
        self.batches.append(len(batch_u8))
        return _Pending(batch_u8.reshape(len(batch_u8), -1).mean(axis=1) / 100.0)


def _run(cameras: dict[str, tuple[bool, int]]) -> tuple[ScriptedBackend, MeanCheck, list[CameraLane],
                                                         dict[str, InspectionResult]]:
    """One frame per camera, ``cameras``: id -> (detector on, pixel value; 255 makes the detector see a dent)."""
    be = ScriptedBackend()
    check = MeanCheck()
    prov = Provenance("fake", "0" * 64, "fake")
    lanes = []
    for cid, (detector, _value) in cameras.items():
        rules = VerdictRules(0.5) if detector else VerdictRules(0.5, ignore_classes=frozenset(CLASSES))
        lanes.append(CameraLane(cid, FramePool(cid, 4, (64, 64, 3)), rules, prov, tiling=False,
                                anomaly=None if detector else check))  # type: ignore[arg-type]
    results: list[InspectionResult] = []
    w = InferenceWorker(0, be, lanes, results.extend)
    for ln, (_detector, value) in zip(lanes, cameras.values()):
        got = ln.pool.acquire_slot()
        assert got is not None
        slot, arr = got
        arr[...] = value
        ln.pool.publish(slot, 1, pixel_format="BGR8")
    claimed: list[tuple[CameraLane, Any]] = [(ln, ln.pool.claim()) for ln in lanes]
    w.process([(ln, h) for ln, h in claimed if h is not None])
    assert w.stats.errors == 0
    for ln in lanes:
        c = ln.pool.snapshot()
        assert (c.received, c.inspected, c.dropped) == (1, 1, 0)
    return be, check, lanes, {r.camera_id: r for r in results}


def test_anomaly_only_cameras_send_no_frames_to_the_detector() -> None:
    be, check, _lanes, by = _run({"det": (True, 255), "only-dark": (False, 10), "only-bright": (False, 250)})
    assert be.batches == [1]  # the detector ran on the one camera that uses it
    assert check.batches == [2]
    assert by["det"].verdict is Verdict.NG and by["det"].detections
    assert by["only-dark"].verdict is Verdict.OK and by["only-dark"].anomaly_score == pytest.approx(0.1)
    assert by["only-bright"].verdict is Verdict.NG and by["only-bright"].rule == "anomaly 2.50 >= 1.00"
    assert not by["only-bright"].detections and not by["only-bright"].rejected


def test_a_batch_of_anomaly_only_cameras_never_calls_the_detector() -> None:
    be, check, _lanes, by = _run({"a": (False, 255), "b": (False, 10)})
    assert be.batches == [] and check.batches == [2]
    assert by["a"].verdict is Verdict.NG and by["a"].rule == "anomaly 2.55 >= 1.00" and not by["a"].detections
    assert by["b"].verdict is Verdict.OK and by["b"].rule == "no defect; anomaly 0.10 < 1.00"
    assert by["a"].times.inference_ms == 0.0
