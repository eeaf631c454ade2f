"""Simulated camera faults, camera by camera: stall, disconnect, corrupt, wrong size, hang."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from camera.base import ThreadedCamera
from camera.faults import FaultMode, FaultPlan
from camera.features import DictFeatureTree, Feature, FeatureError
from camera.frame_pool import FramePool
from camera.protocol import CameraInfo, CameraState
from camera.simulated import SimulatedLineCamera
from inspector.ops.watchdog import CameraWatchdog
from inspector.pipeline.backends.base import BatchItem, BatchOutput
from inspector.pipeline.results import Provenance
from inspector.pipeline.scheduler import CameraLane, InferenceWorker
from inspector.pipeline.verdict import VerdictRules
from tests.inspector.fakes import ScriptedBackend
from tests.reliability.helpers import wait_until

SHAPE = (96, 128, 3)


class StateLog:
    """Records ``(monotonic, new state)`` of every transition of a camera."""

    def __init__(self, cam: SimulatedLineCamera) -> None:
        self.items: list[tuple[float, CameraState]] = []
        cam.events.state_changed.connect(self._on)

    def _on(self, _cid: str, _old: CameraState, new: CameraState) -> None:
        self.items.append((time.monotonic(), new))

    def first(self, state: CameraState, after: float) -> float | None:
        return next((t for t, s in self.items if s is state and t >= after), None)

    def wait_for(self, state: CameraState, after: float, timeout: float, what: str) -> float:
        """Wait until the transition is *logged* (the state attribute changes just before the event goes out)."""
        wait_until(lambda: self.first(state, after) is not None, timeout, what)
        t = self.first(state, after)
        assert t is not None
        return t


@pytest.fixture
def cam() -> Iterator[SimulatedLineCamera]:
    c = SimulatedLineCamera("sim", fps=20, width=SHAPE[1], height=SHAPE[0], bank_size=2)
    c.stop_timeout_s = 1.0
    yield c
    c.faults.clear()
    c.close()


def _streaming(cam: SimulatedLineCamera, frames: int = 3) -> None:
    cam.start()
    wait_until(lambda: cam.pool.snapshot().received >= frames, 5, "first frames")


def test_fault_plan_expires_and_releases_a_hang() -> None:
    plan = FaultPlan()
    plan.inject(FaultMode.STALL, 0.05)
    assert plan.active() is FaultMode.STALL
    time.sleep(0.08)
    assert plan.active() is FaultMode.NONE
    plan.inject("hang")  # open-ended: only clear() ends it
    released = threading.Event()
    t = threading.Thread(target=lambda: (plan.block_while(FaultMode.HANG), released.set()))
    t.start()
    assert not released.wait(0.1)
    plan.clear()
    assert released.wait(1.0)
    assert [r.mode for r in plan.history] == [FaultMode.STALL, FaultMode.HANG]


def test_faults_are_guru_features(cam: SimulatedLineCamera) -> None:
    nodes = {f.name: f for f in cam.features.features()}
    assert nodes["FaultMode"].visibility == nodes["FaultDuration"].visibility == "Guru"
    assert set(nodes["FaultMode"].enum_entries) == {m.value for m in FaultMode}
    cam.features.set("FaultDuration", 0.3)
    cam.features.set("FaultMode", "stall")
    assert cam.faults.active() is FaultMode.STALL
    _streaming(cam, 0)
    wait_until(lambda: cam.features.get("FaultMode") == "none", 3, "the fault to end by itself")
    with pytest.raises(FeatureError):
        cam.features.set("FaultMode", "meltdown")


def test_stall_is_stale_then_offline_within_3_s_and_recovers(cam: SimulatedLineCamera) -> None:
    log = StateLog(cam)
    _streaming(cam)
    t0 = time.monotonic()
    cam.faults.inject(FaultMode.STALL, 3.5)
    offline = log.wait_for(CameraState.OFFLINE, t0, 5, "OFFLINE")
    stale = log.first(CameraState.STALE, t0)
    assert stale is not None and stale < offline
    assert offline - t0 < 3.0
    assert "no frame" in cam.state_reason
    wait_until(lambda: cam.state is CameraState.STREAMING, 5, "STREAMING again")
    assert time.monotonic() - (t0 + 3.5) < 1.0


def test_disconnect_reconnects_and_restores_settings(cam: SimulatedLineCamera) -> None:
    cam.features.set("Width", 160)
    cam.features.set("AcquisitionFrameRate", 25.0)
    log = StateLog(cam)
    _streaming(cam)
    t0 = time.monotonic()
    cam.faults.inject(FaultMode.DISCONNECT, 2.0)
    wait_until(lambda: cam.state is CameraState.OFFLINE, 1, "OFFLINE at once")
    assert "device lost" in cam.state_reason
    assert cam.nominal_fps != 25.0  # the lost device fell back to its factory settings
    with pytest.raises(FeatureError, match="not connected"):
        cam.features.set("Gain", 1.0)
    back = log.wait_for(CameraState.STREAMING, t0, 12, "reconnect")
    assert back - (t0 + 2.0) <= 10.0
    n = cam.pool.snapshot().received
    wait_until(lambda: cam.pool.snapshot().received > n, 2, "a frame after the reconnect")
    h = cam.pool.latest()
    assert h is not None
    with h:
        assert h.image.shape == (SHAPE[0], 160, 3)  # the recipe was re-applied
    assert cam.nominal_fps == 25.0
    assert cam.features.get("FaultMode") == "none"


def test_corrupt_buffers_are_counted_and_never_published(cam: SimulatedLineCamera) -> None:
    _streaming(cam)
    cam.faults.inject(FaultMode.CORRUPT)
    before = cam.pool.snapshot()
    time.sleep(0.8)
    after = cam.pool.snapshot()
    cam.faults.clear()
    assert after.received - before.received <= 1  # one may have been on its way
    assert after.invalid - before.invalid >= 8


class ShapeRecordingBackend(ScriptedBackend):
    """Remembers the shape of every frame it was asked to infer."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:
        self.shapes |= {it.image.shape for it in items}
        return super().infer(items)


def test_wrong_size_frames_are_counted_invalid_and_never_inferred(cam: SimulatedLineCamera) -> None:
    lane = CameraLane("sim", cam.pool, VerdictRules(), Provenance("fake", "0" * 64, "fake"), tiling=False)
    backend = ShapeRecordingBackend()
    results: list[object] = []
    worker = InferenceWorker(0, backend, [lane], results.extend, max_wait_s=0.0)
    worker.start()
    try:
        _streaming(cam)
        cam.faults.inject(FaultMode.WRONG_SIZE, 1.0)
        wait_until(lambda: cam.pool.snapshot().invalid >= 6, 5, "invalid frames")
        wait_until(lambda: cam.faults.active() is FaultMode.NONE, 3)
        n = len(results)
        wait_until(lambda: len(results) > n + 3, 3, "valid frames inspected again")
    finally:
        cam.stop()
        worker.stop()
    assert backend.shapes == {SHAPE}
    c = cam.pool.snapshot()
    assert c.received == c.inspected + c.dropped + c.in_flight and c.in_flight == 0
    assert c.inspected == len(results)


def test_a_hung_camera_is_reported_by_the_watchdog_and_stops_in_bounded_time(cam: SimulatedLineCamera) -> None:
    _streaming(cam)
    watchdog = CameraWatchdog({"sim": cam}, interval_s=0.1)
    watchdog.start()
    try:
        t0 = time.monotonic()
        cam.faults.inject(FaultMode.HANG)  # until cleared: the "driver call" never returns
        took = wait_until(lambda: cam.state is CameraState.OFFLINE, 5, "OFFLINE")
        assert took < 3.0
        thread = cam._thread
        assert thread is not None and thread.is_alive()  # still stuck: only the watchdog could tell
        t1 = time.monotonic()
        cam.stop()
        assert time.monotonic() - t1 < cam.stop_timeout_s + 0.5
        assert time.monotonic() - t0 < 5.0
    finally:
        watchdog.stop()
        cam.faults.clear()
    thread.join(2.0)
    assert not thread.is_alive()


class TriggeredCamera(ThreadedCamera):
    """A camera in trigger mode on an idle line: no frames, and nothing wrong with it."""

    def __init__(self) -> None:
        super().__init__(CameraInfo("trig", "test"), FramePool("trig", 3, (8, 8)), fps=10)
        self._tree = DictFeatureTree()
        self._tree.add(Feature("TriggerMode", "enum", "AcquisitionControl", "Trigger", enum_entries=("Off", "On")),
                       "On")

    @property
    def features(self) -> DictFeatureTree:
        return self._tree

    def _acquire_once(self) -> bool:
        self._stop.wait(0.05)  # waiting for a trigger that does not come
        return False


def test_a_triggered_camera_waiting_for_parts_is_not_offline() -> None:
    cam = TriggeredCamera()
    watchdog = CameraWatchdog({"trig": cam}, interval_s=0.1)
    with cam:
        cam.start()
        watchdog.start()
        time.sleep(3.2)
        watchdog.stop()
        assert cam.state is CameraState.STREAMING


def test_a_silent_camera_is_reopened(cam: SimulatedLineCamera, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("camera.base.RESTART_AFTER_S", 3.0)
    reopened: list[float] = []
    real = cam._on_acquisition_error

    def spy(exc: Exception) -> None:
        reopened.append(time.monotonic())
        real(exc)

    monkeypatch.setattr(cam, "_on_acquisition_error", spy)
    cam.features.set("Width", 160)
    _streaming(cam)
    cam.faults.inject(FaultMode.STALL)  # silent, but no error: only the silence tells
    wait_until(lambda: len(reopened) >= 1, 6, "a re-open after 3 s of silence")
    assert cam.state is CameraState.OFFLINE
    cam.faults.clear()
    wait_until(lambda: cam.state is CameraState.STREAMING, 5, "frames again")
    n = cam.pool.snapshot().received
    wait_until(lambda: cam.pool.snapshot().received > n, 2)
    h = cam.pool.latest()
    assert h is not None
    with h:
        assert h.image.shape == (SHAPE[0], 160, 3)  # the re-open re-applied the recipe
