from __future__ import annotations

import time

import numpy as np
import pytest

from camera.frame_pool import FramePool
from inspector.pipeline.results import InspectionResult, Provenance, Verdict
from inspector.pipeline.scheduler import CameraLane, InferenceWorker, shard_cameras
from inspector.pipeline.verdict import VerdictRules
from tests.inspector.fakes import ScriptedBackend

PROV = Provenance("fake", "0" * 64, "fake")


def lane(cid: str, shape=(320, 320, 3), tiling: bool = False) -> CameraLane:
    return CameraLane(cid, FramePool(cid, 4, shape), VerdictRules(0.5), PROV, tiling=tiling)


def publish(pool: FramePool, seq: int, defect: bool, fmt: str = "BGR8") -> None:
    slot, arr = pool.acquire_slot()
    arr[...] = 0
    if defect:
        arr.reshape(-1)[0] = 255
    pool.publish(slot, seq, pixel_format=fmt)


def collect() -> tuple[list[InspectionResult], callable]:
    out: list[InspectionResult] = []
    return out, out.extend


def test_one_batch_across_ready_cameras_and_verdicts() -> None:
    lanes = [lane(f"c{i}") for i in range(4)]
    be = ScriptedBackend()
    results, emit = collect()
    w = InferenceWorker(0, be, lanes, emit)
    for i, ln in enumerate(lanes):
        publish(ln.pool, 1, defect=i % 2 == 0)
    taken = [(ln, ln.pool.claim()) for ln in lanes]
    w.process(taken)
    assert be.batches == [4]
    assert [r.verdict for r in results] == [Verdict.NG, Verdict.OK, Verdict.NG, Verdict.OK]
    d = results[0].detections[0]
    assert (d.class_name, d.score) == ("dent", pytest.approx(0.9))
    assert (d.x1, d.y1, d.x2, d.y2) == pytest.approx((100, 100, 120, 120))
    for ln in lanes:  # worker released its references; counters balance
        c = ln.pool.snapshot()
        assert (c.received, c.inspected, c.dropped) == (1, 1, 0)
        assert ln.pool.free_slots == 3  # only the pool's "latest" holds a slot


def test_worker_thread_batches_cameras_that_arrive_within_max_wait() -> None:
    lanes = [lane(f"c{i}") for i in range(4)]
    be = ScriptedBackend()
    results, emit = collect()
    w = InferenceWorker(0, be, lanes, emit, max_wait_s=0.5)
    w.start()
    try:
        for ln in lanes:
            publish(ln.pool, 1, defect=False)
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while len(results) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        w.stop()
    assert len(results) == 4
    assert be.batches == [4]


def test_newest_frame_wins_when_the_worker_is_busy() -> None:
    ln = lane("c0")
    for seq in range(1, 4):
        publish(ln.pool, seq, defect=False)
    results, emit = collect()
    InferenceWorker(0, ScriptedBackend(), [ln], emit).process([(ln, ln.pool.claim())])
    assert [r.sequence for r in results] == [3]
    c = ln.pool.snapshot()
    assert (c.received, c.inspected, c.dropped) == (3, 1, 2)


def test_tiled_camera_sends_tiles_and_maps_boxes_back() -> None:
    ln = lane("big", shape=(1024, 1280), tiling=True)
    ln.min_defect_px, ln.min_resolvable_px = 8, 6
    slot, arr = ln.pool.acquire_slot()
    arr[...] = 0
    ln.pool.publish(slot, 1, pixel_format="Mono8")
    be = ScriptedBackend()
    results, emit = collect()
    InferenceWorker(0, be, [ln], emit).process([(ln, ln.pool.claim())])
    plan = ln.plan(1280, 1024, 320, 320)
    assert len(plan) > 1 and be.batches == [len(plan)]
    assert results[0].verdict is Verdict.OK

    # a defect marker at the origin of the second tile is found in that tile, in frame coordinates
    tile, box = plan[1]
    slot, arr = ln.pool.acquire_slot()
    arr[...] = 0
    arr[tile.y0, tile.x0] = 255
    ln.pool.publish(slot, 2, pixel_format="Mono8")
    results.clear()
    InferenceWorker(0, ScriptedBackend(), [ln], emit).process([(ln, ln.pool.claim())])
    d = results[0].detections[0]
    assert d.x1 == pytest.approx(tile.x0 + (100 - box.pad_x) / box.scale, abs=1e-3)
    assert d.y1 == pytest.approx(tile.y0 + (100 - box.pad_y) / box.scale, abs=1e-3)


def test_malformed_frames_are_counted_and_never_inferred() -> None:
    ln = CameraLane("c", FramePool("c", 4), VerdictRules(), PROV)
    ln.pool.publish_external(np.zeros((0, 0), np.uint8), 1, on_free=lambda: None, pixel_format="Mono8")
    be = ScriptedBackend()
    results, emit = collect()
    InferenceWorker(0, be, [ln], emit).process([(ln, ln.pool.claim())])
    c = ln.pool.snapshot()
    assert be.batches == [] and results == []
    assert (c.received, c.invalid, c.dropped, c.inspected) == (1, 1, 1, 0)


def test_a_failing_backend_drops_the_batch_and_keeps_accounting() -> None:
    ln = lane("c")
    publish(ln.pool, 1, defect=True)
    results, emit = collect()
    w = InferenceWorker(0, ScriptedBackend(fail=True), [ln], emit)
    w.process([(ln, ln.pool.claim())])
    c = ln.pool.snapshot()
    assert results == [] and w.stats.errors == 1
    assert c.received == c.inspected + c.dropped == 1
    assert ln.pool.free_slots == 3


@pytest.mark.parametrize(
    ("cams", "n", "pinned", "load", "expected"),
    [
        (["a", "b", "c", "d"], 2, None, None, [["a", "c"], ["b", "d"]]),
        (["a", "b", "c"], 1, None, None, [["a", "b", "c"]]),
        (["a", "b", "c", "d"], 2, {"a": 1, "b": 1}, None, [["c", "d"], ["a", "b"]]),
        (["a", "b", "c", "d"], 2, None, {"a": 4, "b": 1, "c": 1, "d": 1}, [["a"], ["b", "c", "d"]]),
        ([], 2, None, None, [[], []]),
    ],
)
def test_sharding(cams, n, pinned, load, expected) -> None:
    assert shard_cameras(cams, n, pinned, load) == expected


def test_sharding_refuses_a_missing_device() -> None:
    with pytest.raises(ValueError, match="device 3"):
        shard_cameras(["a"], 2, {"a": 3})
