"""The live wall of a triggered line: the current part on every view, the parts strip, the budget gauge."""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor

from camera.frame_pool import FramePool
from gui.bridge import EngineBridge
from gui.live_wall import LiveWall, gauge_level
from gui.parts_strip import PartDialog
from inspector.config import parse_config
from inspector.pipeline.results import InspectionResult, PartResult, PartTimes, Verdict
from tests.gui.conftest import FakeStation
from tests.inspector.factories import make_result

CAMS = ("line-cam1", "line-cam2")
SHAPE = (48, 64, 3)
SLOTS = 6


class FakeLine:
    """What the GUI reads of `inspector.line.runner.Line`: its report and the windowed stats."""

    def __init__(self) -> None:
        self.p99_ms = 0.0
        self.window_parts = 0
        self.counts = {"verdicts": 0, "ok": 0, "ng": 0, "incomplete": 0, "late_frames": 0, "missed_triggers": 0}
        self.tracker = SimpleNamespace(stats=SimpleNamespace(window=self._window))

    def _window(self, seconds: float) -> dict[str, float]:
        return {"parts": self.window_parts, "incomplete": 0, "p99_ms": self.p99_ms}

    def report(self) -> dict[str, Any]:
        return {**self.counts, "budget_ms": 1000.0, "trigger_to_verdict_ms": {"p50": 0.0, "p99": 0.0}}


class Line:
    """Publishes parts into a fake station the way the engine does: frames first, then the part."""

    def __init__(self, station: FakeStation) -> None:
        self.station = station
        self.seq = 0
        self.results: list[InspectionResult] = []

    def part(self, n: int, *, ng: str | None = None, missing: tuple[str, ...] = ()) -> PartResult:
        pid = f"P{n}"
        frames = []
        for cid in CAMS:
            if cid in missing:
                continue
            self.seq += 1
            dets = [("crack", 0.9)] if cid == ng else []
            r = make_result(cid, self.seq, "NG" if dets else "OK", dets, with_frame=True, pool=self.station.cameras[cid].pool,
                            shape=SHAPE)
            r = replace(r, trigger_id=n, part_id=pid)
            self.station.events.result_ready.emit(r)
            r.frame.release()  # the sink's reference; the bridge keeps its own
            frames.append(r)
            self.results.append(r)
        verdict = Verdict.NG if (ng or missing) else Verdict.OK
        reason = f"incomplete: {missing[0]} no image" if missing else f"{ng}: crack>=0.40" if ng else "no defect"
        part = PartResult(
            part_id=pid, line="fake", trigger_id=n, triggered_at=time.time(), verdict=verdict, reason=reason,
            frames=tuple(frames), expected=CAMS, missing=missing, budget_ms=1000.0, times=PartTimes(verdict_ms=300.0),
        )
        self.station.events.part_ready.emit(part)
        return part


@pytest.fixture
def line_station() -> FakeStation:
    st = FakeStation(*CAMS, shape=SHAPE)
    for cid, cam in st.cameras.items():
        cam.pool = FramePool(cid, SLOTS, SHAPE)  # the line-demo pools' size
    st.line = FakeLine()  # type: ignore[attr-defined]
    return st


@pytest.fixture
def wall(qtbot: Any, line_station: FakeStation) -> Any:
    bridge = EngineBridge(line_station, refresh_hz=50)
    w = LiveWall(bridge, stale_after_s=5.0)
    qtbot.addWidget(w)
    w.resize(1000, 560)
    w.show()
    bridge.start()
    yield w
    bridge.close()


def test_strip_shows_newest_first_and_incomplete_is_not_ng(qtbot: Any, wall: LiveWall, line_station: FakeStation) -> None:
    line = Line(line_station)
    line.part(1)
    line.part(2, ng="line-cam1")
    line.part(3, missing=("line-cam2",))
    strip = wall.strip
    qtbot.waitUntil(lambda: len(strip.chips()) == 3, timeout=2000)
    assert strip.chips() == [("P3", "INCOMPLETE"), ("P2", "NG"), ("P1", "OK")]
    img = strip.grab().toImage()
    inc, ng, ok = (strip.chip_rects()[i] for i in range(3))
    colour = [QColor(img.pixel(int(r.x() + 3), int(r.bottom() - 3))) for r in (inc, ng, ok)]
    assert colour[0].green() > 120 and colour[0].red() > 200  # amber, not NG's red
    assert colour[1].red() > 180 and colour[1].green() < 90
    assert colour[2].green() > 140 and colour[2].red() < 90
    qtbot.waitUntil(lambda: wall.line_label.text() == "LINE INCOMPLETE", timeout=2000)


def test_views_show_the_current_part_and_no_image_for_a_missing_camera(qtbot: Any, wall: LiveWall, line_station: FakeStation) -> None:
    line = Line(line_station)
    p1 = line.part(1, ng="line-cam1")
    v1, v2 = wall.views["line-cam1"], wall.views["line-cam2"]
    qtbot.waitUntil(lambda: v1.shown_part is p1 and v2.shown_part is p1, timeout=2000)
    assert v1.part_state == v2.part_state == "image"
    assert v1.image_sequence == p1.frames[0].sequence and v2.image_sequence == p1.frames[1].sequence
    assert [b.class_name for b in v1.boxes] == ["crack"] and v2.boxes == []
    assert v1.caption == "line-cam1 · part P1" and v1.last_verdict == "NG" and v2.last_verdict == "OK"

    p2 = line.part(2, missing=("line-cam2",))
    qtbot.waitUntil(lambda: v2.shown_part is p2, timeout=2000)
    assert v2.part_state == "missing" and v2.image is None  # never P1's frame under P2's name
    assert v2.no_image_text()[0] == "no image for part P2"
    assert v2.caption == "line-cam2 · part P2" and v2.last_verdict == ""
    assert v1.image_sequence == p2.frames[0].sequence and v1.boxes == []
    img = v2.grab().toImage()  # painted: the dark red "no image" panel, not a picture
    mid = QColor(img.pixel(img.width() // 2, 24 + (img.height() - 24) // 4))
    assert mid.name() == "#3a1d1d"


@pytest.mark.parametrize(
    ("p99", "budget", "parts", "level"),
    [(0.0, 1000.0, 0, "idle"), (412.0, 1000.0, 50, "ok"), (850.0, 1000.0, 50, "warning"),
     (1000.0, 1000.0, 50, "warning"), (1001.0, 1000.0, 50, "alarm"), (500.0, 0.0, 5, "idle")],
)
def test_gauge_level(p99: float, budget: float, parts: int, level: str) -> None:
    assert gauge_level(p99, budget, parts) == level


def test_gauge_turns_alarm_past_the_budget(qtbot: Any, wall: LiveWall, line_station: FakeStation) -> None:
    fake = line_station.line
    fake.p99_ms, fake.window_parts = 412.0, 40
    fake.counts.update(verdicts=40, ok=35, ng=5, incomplete=2, late_frames=1, missed_triggers=3)
    qtbot.waitUntil(lambda: wall.gauge.text == "p99 412 ms / 1000 ms budget", timeout=2000)
    assert wall.gauge.level == "ok"
    assert wall.counts_label.text().split() == ["Parts", "40", "OK", "35", "NG", "5", "(2", "incomplete)", "late", "frames",
                                                "1", "missed", "triggers", "3"]
    fake.p99_ms = 1250.0
    qtbot.waitUntil(lambda: wall.gauge.level == "alarm", timeout=2000)
    assert wall.gauge.text == "p99 1250 ms / 1000 ms budget"
    img = wall.gauge.grab().toImage()
    px = QColor(img.pixel(4, img.height() // 2))
    assert px.red() > 180 and px.green() < 90  # the bar is alarm red


def test_frames_are_released_as_parts_scroll_out(qtbot: Any, wall: LiveWall, line_station: FakeStation) -> None:
    line = Line(line_station)
    bridge = wall.bridge
    share = SLOTS // 2
    for n in range(1, 31):
        line.part(n, ng="line-cam1" if n % 7 == 0 else None, missing=("line-cam2",) if n % 5 == 0 else ())
        for cam in line_station.cameras.values():  # the display never takes more than its share of a pool
            assert cam.pool.snapshot().pool_exhausted == 0
            assert cam.pool.free_slots >= SLOTS - share - 1  # - the pool's own latest
        if n % 4 == 0:
            qtbot.wait(30)
    qtbot.waitUntil(lambda: wall.views["line-cam1"].shown_part is not None
                    and wall.views["line-cam1"].shown_part.part_id == "P30", timeout=2000)
    for cid in CAMS:  # only each camera's newest parts still have images, within the display's share
        held = [r.part_id for r in line.results if r.camera_id == cid and r.frame.refcount > 0]
        assert held == [r.part_id for r in line.results if r.camera_id == cid][-share:]
    # a scrolled-out part says "image released" unless the strip copied its pictures in time
    old = next(p for p in bridge.recent_parts() if p.part_id == "P21")
    bare = PartDialog(old, bridge, parent=wall)  # without the strip's copies
    assert bare.cards["line-cam1"][0].text() == "image released"
    dlg = wall.open_part(old)
    copied = "line-cam1" in wall.strip.thumbs.get("P21", {})
    assert dlg.cards["line-cam1"][0].pixmap().isNull() is not copied
    dlg = wall.open_part(bridge.recent_parts()[0])
    assert not dlg.cards["line-cam1"][0].pixmap().isNull()
    dlg = wall.open_part(next(p for p in bridge.recent_parts() if p.part_id == "P25"))
    assert "no image" in dlg.cards["line-cam2"][0].text()
    dlg.close()
    bridge.close()
    latest = {cid: cam.pool.latest() for cid, cam in line_station.cameras.items()}
    for h in latest.values():
        h.release()
    for r in line.results:  # back to the baseline: only the pool's latest frame is still referenced
        assert r.frame.refcount == (1 if r.frame is latest[r.camera_id] else 0)
    for cam in line_station.cameras.values():
        assert cam.pool.free_slots == SLOTS - 1


def test_clicking_a_chip_opens_its_part(qtbot: Any, wall: LiveWall, line_station: FakeStation) -> None:
    line = Line(line_station)
    line.part(1)
    line.part(2, ng="line-cam2")
    qtbot.waitUntil(lambda: len(wall.strip.chips()) == 2, timeout=2000)
    r = wall.strip.chip_rects()[1]
    qtbot.mouseClick(wall.strip, Qt.MouseButton.LeftButton, pos=QPoint(int(r.center().x()), int(r.center().y())))
    dlg = wall.part_dialog
    assert dlg is not None and dlg.part.part_id == "P1" and "OK" in dlg.windowTitle()
    assert set(dlg.cards) == set(CAMS)
    assert not dlg.cards["line-cam2"][0].pixmap().isNull()  # the newest parts' frames are still held
    assert "OK" in dlg.cards["line-cam2"][1].text()


TRIGGERED_STATION = """
name = "gui-line-test"
[scheduler]
max_wait_ms = 2
[storage]
db_url = "none"
[line]
mode = "triggered"
trigger = "conveyor"
parts_per_min = 300
belt_mm_s = 1000
budget_ms = 1000
[[cameras]]
id = "line-cam1"
kind = "simulated"
width = 160
height = 160
bank_size = 4
position_mm = 100
[[cameras]]
id = "line-cam2"
kind = "simulated"
width = 160
height = 160
mono = true
bank_size = 4
position_mm = 300
"""


def test_a_real_triggered_line_drives_the_wall(qtbot: Any) -> None:
    from inspector.station import Station

    station = Station(parse_config(TRIGGERED_STATION, "gui-line-test"), db_url="none", archive=False)
    bridge = EngineBridge(station, refresh_hz=20)
    wall = LiveWall(bridge)
    qtbot.addWidget(wall)
    wall.resize(900, 500)
    wall.show()
    bridge.start()
    station.start()
    try:
        qtbot.waitUntil(lambda: len(wall.strip.chips()) >= 5, timeout=20_000)
        views = wall.views.values()
        qtbot.waitUntil(lambda: all(v.shown_part is not None for v in views), timeout=5000)
        for v in views:  # each view shows its own frame of the part it names
            part = v.shown_part
            mine = [f for f in part.frames if f.camera_id == v.camera_id]
            if v.part_state == "image":
                assert v.image_sequence == mine[0].sequence and mine[0].part_id == part.part_id
        qtbot.waitUntil(lambda: wall.gauge.level != "idle", timeout=5000)
        assert wall.gauge.text.endswith("/ 1000 ms budget")
    finally:
        station.stop()
        bridge.close()
    for cam in station.cameras.values():
        assert cam.pool.snapshot().pool_exhausted == 0
        assert cam.pool.free_slots == cam.pool.capacity
