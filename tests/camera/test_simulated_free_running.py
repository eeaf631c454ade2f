"""A free-running simulated camera (fps 0): the claim that takes its frame publishes the next one."""

from __future__ import annotations

import threading
import time

from camera.faults import FaultMode
from camera.simulated import SimulatedLineCamera


def _first_frame(cam: SimulatedLineCamera, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cam.pool.has_pending() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert cam.pool.has_pending(), "the camera's thread never published its first frame"


def _started(fps: float) -> tuple[SimulatedLineCamera, list[str]]:
    """A started camera with its first frame published, and the threads that publish its frames from now on."""
    cam = SimulatedLineCamera("cam", fps=fps, width=64, height=64, bank_size=4)
    published_on: list[str] = []
    cam.pool.subscribe(lambda _pool: published_on.append(threading.current_thread().name))
    cam.start()
    try:
        _first_frame(cam)
    except BaseException:
        cam.stop()
        raise
    return cam, published_on


def test_the_claim_publishes_the_next_frame_on_the_claiming_thread() -> None:
    cam, published_on = _started(0.0)
    try:
        published_on.clear()
        seqs = []
        for _ in range(50):
            h = cam.pool.claim()
            assert h is not None
            # the next frame is there the moment the claim returns: no wait for the camera's thread
            assert cam.pool.has_pending()
            seqs.append(h.sequence)
            cam.pool.mark_inspected()
            h.release()
        assert seqs == list(range(seqs[0], seqs[0] + 50))  # none skipped, none published twice
        assert set(published_on) == {threading.current_thread().name}
        c = cam.pool.snapshot()
        assert c.dropped == 0 and c.received == c.inspected + c.in_flight
        assert cam.last_frame_at is not None and time.monotonic() - cam.last_frame_at < 1.0
    finally:
        cam.stop()


def test_a_claim_under_an_injected_fault_publishes_nothing_and_frames_come_back_after_it() -> None:
    cam = SimulatedLineCamera("cam", fps=0.0, width=64, height=64, bank_size=4)
    cam.start()
    try:
        _first_frame(cam)
        cam.faults.inject(FaultMode.STALL, 0.3)
        h = cam.pool.claim()
        assert h is not None
        h.release()
        cam.pool.mark_inspected()
        assert not cam.pool.has_pending()  # stalled: neither the claim nor the camera's thread publishes
        time.sleep(0.1)
        assert not cam.pool.has_pending()
        _first_frame(cam)  # the fault ended: the camera's thread publishes again
        h = cam.pool.claim()
        assert h is not None and cam.pool.has_pending()
        h.release()
        cam.pool.mark_inspected()
    finally:
        cam.stop()


def test_a_claim_after_the_camera_stopped_publishes_nothing() -> None:
    cam = SimulatedLineCamera("cam", fps=0.0, width=64, height=64, bank_size=4)
    cam.start()
    _first_frame(cam)
    h = cam.pool.claim()  # a frame still held by a worker while the camera stops
    assert h is not None
    cam.stop()
    assert not cam.pool.has_pending()
    assert cam.pool.claim() is None  # nothing pending after the stop's flush, and the claim of nothing publishes nothing
    assert not cam.pool.has_pending()
    h.release()
    cam.pool.mark_inspected()
    c = cam.pool.snapshot()
    assert c.received == c.inspected + c.dropped + c.in_flight and c.in_flight == 0


def test_a_paced_camera_still_publishes_from_its_own_thread() -> None:
    cam, names = _started(50.0)
    try:
        h = cam.pool.claim()
        assert h is not None
        h.release()
        time.sleep(0.1)
        assert names and set(names) == {f"camera-{cam.info.id}"}
    finally:
        cam.stop()
