"""The wall during one camera's outage: healthy views keep their pictures, the reject gate's counters show."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor

from camera.frame_pool import FramePool
from camera.protocol import CameraState
from gui.bridge import EngineBridge
from gui.live_wall import LiveWall
from inspector.pipeline.results import PartResult, PartTimes, Verdict
from tests.gui.conftest import FakeStation
from tests.gui.test_parts_wall import CAMS, SHAPE, SLOTS, FakeLine
from tests.inspector.factories import make_result


class GateLine(FakeLine):
    """A fake line with a reject output: its report carries the gate's counters."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = {"rejected_in_time": 40, "reject_late": 0, "reject_too_late": 0, "missed": 0, "passed_ok": 100,
                     "false_rejects_at_gate": 0, "no_verdict_at_gate": 0}

    def report(self) -> dict[str, Any]:
        return {**super().report(), "reject_gate": dict(self.gate)}


def _wall(qtbot: Any, station: FakeStation) -> LiveWall:
    bridge = EngineBridge(station, refresh_hz=50)
    wall = LiveWall(bridge, stale_after_s=60.0)
    qtbot.addWidget(wall)
    wall.resize(1000, 560)
    wall.show()
    bridge.start()
    return wall


@pytest.fixture
def outage_station() -> FakeStation:
    st = FakeStation(*CAMS, shape=SHAPE)
    for cid, cam in st.cameras.items():
        cam.pool = FramePool(cid, SLOTS, SHAPE)  # the line-demo pools' size: 3 slots for the display
    st.line = GateLine()  # type: ignore[attr-defined]
    return st


@pytest.mark.parametrize("in_flight", [2, 5])
def test_healthy_views_keep_their_pictures_while_another_camera_is_out(qtbot: Any, outage_station: FakeStation,
                                                                       in_flight: int) -> None:
    """line-cam2 is OFFLINE: every part waits for its deadline, so up to five parts are open at once
    (300 parts/min, 1000 ms budget) against the display's three slots of line-cam1's pool; the
    frame of the part decided last is still held when the next frame comes, before the wall's tick."""
    wall = _wall(qtbot, outage_station)
    bridge = wall.bridge
    healthy, out = CAMS
    outage_station.cameras[out].set_state(CameraState.OFFLINE)
    results = []
    states: dict[str, str] = {}
    pool = outage_station.cameras[healthy].pool
    view = wall.views[healthy]
    decided: PartResult | None = None
    try:
        for n in range(1, 17):
            r = make_result(healthy, n, with_frame=True, pool=pool, shape=SHAPE)
            r = replace(r, trigger_id=n, part_id=f"P{n}")
            outage_station.events.result_ready.emit(r)  # before the wall's tick: the part decided last still shows
            r.frame.release()  # the sink's reference: the bridge keeps its own
            results.append(r)
            assert pool.snapshot().pool_exhausted == 0  # the display never starves acquisition
            assert pool.free_slots >= SLOTS - SLOTS // 2 - 1
            if decided is not None:
                qtbot.waitUntil(lambda p=decided: view.shown_part is p, timeout=2000)
                states[decided.part_id] = view.part_state
                assert view.image is not None or view.part_state != "image"
                decided = None
            if n > in_flight:  # the part triggered five parts ago reaches its deadline: NG incomplete
                k = n - in_flight
                decided = PartResult(
                    part_id=f"P{k}", line="fake", trigger_id=k, triggered_at=time.time() - 1.0, verdict=Verdict.NG,
                    reason=f"incomplete: {out} no image", frames=(results[k - 1],), expected=CAMS, missing=(out,),
                    budget_ms=1000.0, times=PartTimes(verdict_ms=995.0),
                )
                outage_station.events.part_ready.emit(decided)
        assert states == {f"P{k}": "image" for k in range(1, 16 - in_flight)}, states
        assert wall.views[out].part_state == "missing"
    finally:
        bridge.close()
    latest = pool.latest()
    latest.release()
    for r in results:  # nothing leaked: only the pool's latest frame is still referenced
        assert r.frame.refcount == (1 if r.frame is latest else 0)
    assert pool.free_slots == SLOTS - 1


def test_the_wall_shows_the_reject_gates_counters_and_a_missed_reject_in_red(
        qtbot: Any, outage_station: FakeStation) -> None:
    wall = _wall(qtbot, outage_station)
    fake = outage_station.line
    try:
        qtbot.waitUntil(lambda: wall.gate_label.isVisible(), timeout=2000)
        assert wall.gate_label.text() == "Reject gate: in time 40 · late 0 · passed 100"
        fake.gate.update(missed=2, reject_late=2, rejected_in_time=41)
        qtbot.waitUntil(lambda: "late 2" in wall.gate_label.text(), timeout=2000)
        assert wall.gate_label.text() == "Reject gate: in time 41 · late 2 · passed 100"
        img = wall.gate_label.grab().toImage()
        px = QColor(img.pixel(2, img.height() // 2))
        assert px.red() > 180 and px.green() < 90  # red: an NG part went on with the good parts
    finally:
        wall.bridge.close()


def test_a_line_without_a_reject_output_shows_no_gate_counters(qtbot: Any) -> None:
    st = FakeStation(*CAMS, shape=SHAPE)
    st.line = FakeLine()  # type: ignore[attr-defined]
    wall = _wall(qtbot, st)
    try:
        qtbot.waitUntil(lambda: wall.counts_label.text().startswith("Parts"), timeout=2000)
        assert not wall.gate_label.isVisible()
    finally:
        wall.bridge.close()


def test_a_copy_of_a_large_frame_is_small_and_keeps_the_frames_size_for_the_boxes() -> None:
    from gui.bridge import COPY_MAX_PX, FrameCopy, frame_size

    pool = FramePool("big", 3, (1200, 1920))
    got = pool.acquire_slot()
    assert got is not None
    slot, arr = got
    arr[...] = 7
    h = pool.publish(slot, 1, pixel_format="Mono8")
    copy = FrameCopy(h)
    assert max(copy.image.shape) <= COPY_MAX_PX and copy.image.flags["C_CONTIGUOUS"]
    assert frame_size(copy) == frame_size(h) == (1920, 1200)
    assert copy.sequence == 1 and copy.pixel_format == "Mono8" and int(copy.image[0, 0]) == 7
    h.release()


def test_a_disconnect_set_in_the_settings_dialog_lasts_the_duration_given(qtbot: Any, engine: Any) -> None:
    from camera.faults import FaultMode
    from camera.simulated import SimulatedLineCamera
    from gui.settings_dialog import CameraSettingsDialog
    from tests.gui.conftest import PASSWORDS, make_control

    st = FakeStation("line-cam3")
    sim = SimulatedLineCamera("line-cam3", fps=1, width=32, height=32, bank_size=1)
    st.cameras["line-cam3"].features = sim.features
    control = make_control(st, engine)
    control.login("admin", PASSWORDS["admin"])
    dlg = CameraSettingsDialog(control, "line-cam3")
    qtbot.addWidget(dlg)
    dlg.set_value("FaultMode", "disconnect")
    dlg.set_value("FaultDuration", 20.0)
    answers = dlg.apply()
    assert answers == {"FaultMode": "disconnect", "FaultDuration": 20.0}
    rec = sim.faults.history[-1]
    assert sim.faults.active() is FaultMode.DISCONNECT and rec.ends_at is not None
    assert rec.ends_at - rec.started_at == pytest.approx(20.0)  # was 10: the duration before the edit
