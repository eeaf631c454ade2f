from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from camera.frame_pool import FramePool
from inspector.pipeline.backends.base import BatchOutput
from inspector.pipeline.results import InspectionResult, Provenance, Verdict
from inspector.pipeline.scheduler import CameraLane, InferenceWorker, shard_cameras
from inspector.pipeline.verdict import VerdictRules
from tests.inspector.fakes import GatedBackend, ScriptedBackend

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


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def gated_worker(**kw):
    """A started worker over one camera with a `GatedBackend`, its lane and the results list."""
    from tests.inspector.fakes import GatedBackend

    ln = lane("c0")
    be = GatedBackend(depth=2, **kw)
    results, emit = collect()
    w = InferenceWorker(0, be, [ln], emit, max_wait_s=0.0)
    w.start()
    return w, be, ln, results


def submit_two(be, ln) -> None:
    """Frames 1 and 2, each in a batch of its own, both in flight."""
    publish(ln.pool, 1, defect=False)
    wait_for(lambda: be.submitted == 1)
    publish(ln.pool, 2, defect=False)
    wait_for(lambda: be.submitted == 2)


def test_the_next_batch_is_submitted_while_the_one_before_is_still_inferring() -> None:
    from tests.inspector.fakes import GatedBackend

    ln = lane("c0")
    be = GatedBackend(depth=2)
    results, emit = collect()
    w = InferenceWorker(0, be, [ln], emit, max_wait_s=0.0)
    assert w.in_flight == 2
    w.start()
    try:
        publish(ln.pool, 1, defect=True)
        wait_for(lambda: be.submitted == 1)
        publish(ln.pool, 2, defect=False)
        wait_for(lambda: be.submitted == 2)  # batch 0 not decided yet: two in flight
        publish(ln.pool, 3, defect=False)
        time.sleep(0.1)
        assert be.submitted == 2 and results == []  # no third slot: frame 3 waits in its pool
        be.release(1)  # the second batch finishing first does not overtake the first
        time.sleep(0.05)
        assert results == []
        be.release(0)
        wait_for(lambda: len(results) == 2)
        assert [r.sequence for r in results] == [1, 2]
        assert [r.verdict for r in results] == [Verdict.NG, Verdict.OK]
        wait_for(lambda: be.submitted == 3)
        be.release(2)
        wait_for(lambda: len(results) == 3)
    finally:
        w.stop()
    c = ln.pool.snapshot()
    assert (c.received, c.inspected, c.dropped) == (3, 3, 0)
    assert ln.pool.free_slots == 3  # every handle released; the pool's "latest" holds one


def test_stop_decides_the_batches_already_in_flight() -> None:
    w, be, ln, results = gated_worker()
    publish(ln.pool, 1, defect=False)
    wait_for(lambda: be.submitted == 1)
    threading.Timer(0.2, be.release, (0,)).start()
    w.stop()  # returns once the submitted batch was decided, not before
    assert [r.sequence for r in results] == [1]
    assert ln.pool.snapshot().inspected == 1


def test_a_batch_whose_inference_fails_in_flight_is_dropped_and_the_next_goes_on() -> None:
    w, be, ln, results = gated_worker(fail_at=(0,))
    try:
        submit_two(be, ln)
        be.release(0)
        be.release(1)
        wait_for(lambda: len(results) == 1)
    finally:
        w.stop()
    assert [r.sequence for r in results] == [2]
    c = ln.pool.snapshot()
    assert (c.received, c.inspected, c.dropped) == (2, 1, 1)
    assert w.stats.errors == 1 and ln.pool.free_slots == 3


def test_busy_time_of_overlapping_batches_is_their_union_not_their_sum() -> None:
    t0 = time.perf_counter()
    w, be, ln, results = gated_worker()
    try:
        submit_two(be, ln)
        time.sleep(0.3)  # both in flight for 0.3 s
        be.release(0)
        be.release(1)
        wait_for(lambda: len(results) == 2)
    finally:
        w.stop()
    wall = time.perf_counter() - t0
    assert 0.3 <= w.stats.busy_s <= wall  # summed, the two batches would count ~0.6 s


class _DecodingBackend(ScriptedBackend):
    """Also hands over its own decoded boxes, as OpenVINO with in-graph NMS does: a 'crack' where the
    raw output says 'dent', so a test sees which of the two the worker used."""

    def __init__(self, nms_iou: float) -> None:
        super().__init__()
        self.nms_iou = nms_iou

    def infer(self, items):  # type: ignore[no-untyped-def]
        out = super().infer(items)
        dets = [np.array([[10, 10, 30, 30, 0.8, 2], [40, 40, 50, 50, 0.06, 2]], np.float32) for _ in items]
        return BatchOutput(out.raw, out.preprocess_ms, out.inference_ms, dets, self.nms_iou)


@pytest.mark.parametrize(("nms_iou", "expected"), [(0.5, "crack"), (0.7, "dent")])
def test_the_runtimes_own_detections_are_used_only_when_suppressed_at_the_workers_iou(nms_iou: float,
                                                                                      expected: str) -> None:
    ln = lane("c0")
    results, emit = collect()
    w = InferenceWorker(0, _DecodingBackend(nms_iou), [ln], emit, iou_threshold=0.5)
    publish(ln.pool, 1, defect=True)
    w.process([(ln, ln.pool.claim())])
    (r,) = results
    names = [d.class_name for d in (*r.detections, *r.rejected)]
    assert names == [expected]  # the 0.06 box is under this camera's confidence (0.25): dropped
    if expected == "crack":
        d = r.detections[0]
        assert (d.x1, d.y1, d.x2, d.y2, d.score) == pytest.approx((10, 10, 30, 30, 0.8))


class _ThreadRecordingBackend(GatedBackend):
    """A `GatedBackend` (with the runtime's own decoded boxes where ``decoded``) that records which thread
    submitted each batch."""

    def __init__(self, decoded: bool = False) -> None:
        super().__init__(depth=2)
        self.decoded = decoded
        self.submitters: list[str] = []

    def infer(self, items):  # type: ignore[no-untyped-def]
        out = super().infer(items)
        if not self.decoded:
            return out
        dets = [np.zeros((0, 6), np.float32) for _ in items]
        return BatchOutput(out.raw, out.preprocess_ms, out.inference_ms, dets, 0.5)

    def submit(self, items):  # type: ignore[no-untyped-def]
        self.submitters.append(threading.current_thread().name)
        return super().submit(items)


@pytest.mark.parametrize("decoded", [False, True])
def test_a_saturated_camera_refills_the_decided_slot_from_the_thread_that_decided_it(decoded: bool) -> None:
    """With frames always waiting, the frame that waits when a batch is decided goes into that batch's slot,
    submitted by the thread that decided it (the worker thread is not woken for it), right after its results
    went and its frames were settled (a camera's frames held stay at most in_flight + 2)."""
    ln = lane("c0")
    be = _ThreadRecordingBackend(decoded)
    held_at_emit: list[int] = []
    results: list[InspectionResult] = []

    def emit(rs: list[InspectionResult]) -> None:
        held_at_emit.append(ln.pool.snapshot().in_flight)
        results.extend(rs)

    w = InferenceWorker(0, be, [ln], emit, max_wait_s=0.0, iou_threshold=0.5)
    w.start()
    try:
        submit_two(be, ln)
        publish(ln.pool, 3, defect=False)  # waits: both slots are in flight
        be.release(0)
        wait_for(lambda: be.submitted == 3)  # frame 3 into batch 0's slot
        assert results[0].sequence == 1 and held_at_emit == [2]  # frame 1 settled: 2 in flight, 3 pending
        publish(ln.pool, 4, defect=False)
        be.release(1)
        wait_for(lambda: len(results) == 2)
        be.release(2)
        be.release(3)
        wait_for(lambda: len(results) == 4)
    finally:
        w.stop()
    assert be.submitters == ["infer-0", "infer-0", "infer-0-post", "infer-0-post"]
    assert [r.sequence for r in results] == [1, 2, 3, 4]
    c = ln.pool.snapshot()
    assert (c.received, c.inspected, c.dropped) == (4, 4, 0)
    assert ln.pool.free_slots == 3


def test_a_paused_worker_decides_its_batches_and_submits_no_waiting_frame() -> None:
    ln = lane("c0")
    be = _ThreadRecordingBackend()
    results, emit = collect()
    w = InferenceWorker(0, be, [ln], emit, max_wait_s=0.0)
    w.start()
    try:
        submit_two(be, ln)
        publish(ln.pool, 3, defect=False)
        w.pause(True)
        be.release(0)
        be.release(1)
        wait_for(lambda: len(results) == 2)
        time.sleep(0.1)
        assert be.submitted == 2 and ln.pool.has_pending()
        w.pause(False)  # the worker thread takes it, in a slot that went back to it
        wait_for(lambda: be.submitted == 3)
        be.release(2)
        wait_for(lambda: len(results) == 3)
    finally:
        w.stop()
    assert be.submitters == ["infer-0"] * 3


def test_a_camera_without_a_frame_leaves_the_decided_slot_to_the_worker_thread() -> None:
    """A refill takes whole batches only: with one camera of two still to deliver, the slot goes back and
    the worker thread waits ``max_wait`` for it as usual (one batch of both, not two of one)."""
    lanes = [lane("c0"), lane("c1")]
    be = _ThreadRecordingBackend()
    results, emit = collect()
    w = InferenceWorker(0, be, lanes, emit, max_wait_s=5.0)
    w.start()
    try:
        for seq in (1, 2):  # two batches of both cameras in flight
            for ln in lanes:
                publish(ln.pool, seq, defect=False)
            wait_for(lambda seq=seq: be.submitted == seq)
        publish(lanes[0].pool, 3, defect=False)
        be.release(0)
        wait_for(lambda: len(results) == 2)
        time.sleep(0.05)
        assert be.submitted == 2  # c0's frame waits for c1's (max_wait), not taken alone
        publish(lanes[1].pool, 3, defect=False)
        wait_for(lambda: be.submitted == 3)
        be.release(1)
        be.release(2)
        wait_for(lambda: len(results) == 6)
    finally:
        w.stop()
    assert be.batches == [2, 2, 2] and be.submitters == ["infer-0"] * 3


def test_busy_time_between_two_readings_holds_only_what_lies_between_them() -> None:
    """A batch in flight across a window's start counts in that window from the window's start on (a batch
    counted whole when decided gave a 1 s window more than 1 s of busy time on a busy machine)."""
    w, be, ln, results = gated_worker()
    try:
        publish(ln.pool, 1, defect=False)
        wait_for(lambda: be.submitted == 1)
        time.sleep(0.4)  # busy before the window
        t0, b0 = time.perf_counter(), w.busy_now()
        time.sleep(0.1)
        be.release(0)
        wait_for(lambda: len(results) == 1)
        b1, t1 = w.busy_now(), time.perf_counter()
    finally:
        w.stop()
    assert 0.1 <= b1 - b0 <= t1 - t0
    assert w.busy_now() == pytest.approx(w.stats.busy_s) and w.stats.busy_s >= 0.5  # nothing open: the same


class _BestFirstBackend(ScriptedBackend):
    """Hands over the runtime's own rows, best first as the graph gives them: one well above the camera's
    confidence and partly outside the frame, one exactly at it (as float32 holds it), one a hair under it, one at
    the graph's floor."""

    nms_iou = 0.5
    conf = float(np.float32(0.175))  # a camera whose lowest threshold is 0.35: it decodes from half of it

    rows = np.array([[-5, 300, 40, 330, 0.9, 1], [10, 10, 20, 20, conf, 0],
                     [30, 30, 40, 40, float(np.nextafter(np.float32(0.175), np.float32(0))), 2],
                     [50, 50, 60, 60, 0.05, 2]], np.float32)

    def infer(self, items):  # type: ignore[no-untyped-def]
        out = super().infer(items)
        return BatchOutput(out.raw, out.preprocess_ms, out.inference_ms, [self.rows.copy() for _ in items],
                           self.nms_iou)


def test_the_runtimes_rows_at_or_above_the_cameras_confidence_are_kept_and_clipped_to_the_frame() -> None:
    ln = CameraLane("c0", FramePool("c0", 4, (320, 320, 3)), VerdictRules(0.35), PROV)
    results, emit = collect()
    w = InferenceWorker(0, _BestFirstBackend(), [ln], emit, iou_threshold=0.5)
    publish(ln.pool, 1, defect=True)
    w.process([(ln, ln.pool.claim())])
    (r,) = results
    got = sorted(((d.x1, d.y1, d.x2, d.y2, d.score) for d in (*r.detections, *r.rejected)), key=lambda t: -t[4])
    assert got == [(0.0, 300.0, 40.0, 320.0, pytest.approx(0.9)), (10.0, 10.0, 20.0, 20.0, _BestFirstBackend.conf)]
    assert [d.class_name for d in r.detections] == ["dent"]  # the 0.9 box counts; the one at 0.175 is under 0.35


@pytest.mark.parametrize("shape", [(320, 320, 3), (480, 640, 3), (300, 200, 3)])
def test_one_inputs_runtime_rows_become_the_detections_the_array_path_makes(shape: tuple[int, int, int]) -> None:
    """The runtime's rows of a frame that is one input are mapped and made detections as lists; they are the
    detections that `to_frame_pixels` and `detections_from_array` make of the same rows."""
    from inspector.pipeline.postprocess import to_frame_pixels
    from inspector.pipeline.preprocess import Letterbox
    from inspector.pipeline.results import detections_from_array

    ln = CameraLane("c0", FramePool("c0", 4, shape), VerdictRules(0.35), PROV, tiling=False)
    results, emit = collect()
    backend = _BestFirstBackend()
    w = InferenceWorker(0, backend, [ln], emit, iou_threshold=0.5)
    publish(ln.pool, 1, defect=True)
    w.process([(ln, ln.pool.claim())])
    (r,) = results
    h, wd = shape[:2]
    kept = backend.rows[:2].copy()  # at or above the camera's confidence
    want = detections_from_array(to_frame_pixels(kept, Letterbox.fit(wd, h, 320, 320), None, wd, h),
                                 backend.card.classes)
    assert len(want) == 2
    assert sorted((*r.detections, *r.rejected), key=lambda d: -d.score) == list(want)


class _CountingCondition(threading.Condition):
    """A condition that counts its notifications."""

    notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def test_a_published_frame_notifies_the_worker_only_while_it_waits_for_frames() -> None:
    """A saturated station's worker thread waits for a free slot, not for frames (the completion thread refills
    the slots): a camera's publish then costs no notification. While the worker gathers, a frame still wakes it."""
    ln = lane("c0")
    results, emit = collect()
    w = InferenceWorker(0, ScriptedBackend(), [ln], emit, max_wait_s=0.0)
    cond = w._cond = _CountingCondition()
    publish(ln.pool, 1, defect=False)  # the worker is not gathering (not started)
    assert cond.notified == 0
    assert ln.pool.claim() is not None
    w.start()
    try:
        deadline = time.monotonic() + 5
        while not w._gathering and time.monotonic() < deadline:
            time.sleep(0.005)
        publish(ln.pool, 2, defect=False)
        while not results and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        w.stop()
    assert [r.sequence for r in results] == [2] and cond.notified >= 1
