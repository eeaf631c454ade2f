"""Test helpers that build `InspectionResult` objects the way the engine does."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from camera.frame_pool import FramePool
from inspector.pipeline.results import Detection, InspectionResult, Provenance, StageTimes, Verdict

MODEL_SHA = "a" * 64
CLASSES = ("scratch", "dent", "stain")


def make_detection(class_name: str = "scratch", score: float = 0.9, x: float = 4.0) -> Detection:
    """A small box at ``x`` of a known class."""
    class_id = CLASSES.index(class_name) if class_name in CLASSES else 99
    return Detection(x, 4.0, x + 8.0, 12.0, class_id, score, class_name)


def make_result(
    camera_id: str = "cam1",
    seq: int = 1,
    verdict: Verdict | str = Verdict.OK,
    detections: Sequence[Detection | tuple[str, float]] = (),
    *,
    with_frame: bool = False,
    rejected: Sequence[Detection | tuple[str, float]] = (),
    acquired_at: float | None = None,
    pool: FramePool | None = None,
    shape: tuple[int, ...] = (32, 32, 3),
    model_sha256: str = MODEL_SHA,
) -> InspectionResult:
    """An `InspectionResult`; with ``with_frame`` it carries a real pooled frame.

    The frame goes through the same hands as in the engine: the camera publishes it
    (pending + latest references), the scheduler claims it, the fan-out retains one
    reference for the sink and the scheduler then drops its own. After the sink releases
    the frame, ``result.frame.refcount`` is 1 (the pool's *latest* reference).
    """
    dets = tuple(
        d if isinstance(d, Detection) else make_detection(d[0], d[1], 4.0 + 10 * i) for i, d in enumerate(detections)
    )
    rej = tuple(
        d if isinstance(d, Detection) else make_detection(d[0], d[1], 4.0 + 10 * i) for i, d in enumerate(rejected)
    )
    frame = None
    if with_frame:
        pool = pool or FramePool(camera_id, 4, shape)
        got = pool.acquire_slot()
        assert got is not None, "frame pool exhausted: a sink did not release its frames"
        slot, arr = got
        arr[...] = np.random.default_rng(seq).integers(0, 255, arr.shape, dtype=np.uint8)
        pool.publish(slot, seq)
        frame = pool.claim()  # the scheduler's reference
        assert frame is not None
        frame.retain()  # the fan-out's reference for the sink
        frame.release()  # the scheduler is done with it
    h, w = shape[:2]
    return InspectionResult(
        camera_id=camera_id,
        sequence=seq,
        acquired_at=acquired_at if acquired_at is not None else 1_700_000_000.0 + seq * 0.1,
        verdict=Verdict(verdict),
        rule="no defect" if Verdict(verdict) is Verdict.OK else "scratch>=0.40",
        detections=dets,
        times=StageTimes(1.0, 2.0, 7.0, 1.0, 0.1, 11.1),
        provenance=Provenance("defect-yolo11n", model_sha256, "openvino", (("scratch", 0.4),), "digest1"),
        frame_width=w,
        frame_height=h,
        rejected=rej,
        frame=frame,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
