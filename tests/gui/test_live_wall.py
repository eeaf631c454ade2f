"""The live wall: views follow engine events, overlays, health badges, pause, enlarge."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage

from camera.protocol import CameraState
from gui.bridge import EngineBridge
from gui.camera_view import health_badge
from gui.imaging import class_colour
from gui.live_wall import LiveWall, grid_shape
from inspector.access.users import PermissionDenied
from tests.gui.conftest import PASSWORDS, FakeStation, make_control, qimage_pixels
from tests.inspector.factories import make_result


@pytest.fixture
def fake_wall(qtbot: Any, fake_station: FakeStation, engine: Any) -> Any:
    control = make_control(fake_station, engine)
    bridge = EngineBridge(fake_station, control, refresh_hz=50)
    wall = LiveWall(bridge, control, stale_after_s=0.3)
    qtbot.addWidget(wall)
    wall.resize(800, 500)
    wall.show()
    bridge.start()
    yield wall
    bridge.close()


@pytest.mark.parametrize(
    ("n", "shape"),
    [(0, (1, 1)), (1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (6, (3, 2)), (8, (4, 2)), (9, (4, 3)), (12, (5, 3))],
)
def test_grid_shape(n: int, shape: tuple[int, int]) -> None:
    cols, rows = grid_shape(n)
    assert (cols, rows) == shape and cols * rows >= n


@pytest.mark.parametrize(
    ("state", "age", "text"),
    [
        (CameraState.STREAMING, 0.1, None),
        (CameraState.STREAMING, None, None),
        (CameraState.STREAMING, 5.0, "STALE"),  # silent for too long, whatever the camera says
        (CameraState.STALE, 1.0, "STALE"),
        (CameraState.OFFLINE, 12.0, "OFFLINE"),
        (CameraState.OPEN, 2.0, "OFFLINE · STOPPED"),
        (CameraState.ERROR, None, "OFFLINE · ERROR"),
    ],
)
def test_health_badge(state: CameraState, age: float | None, text: str | None) -> None:
    badge = health_badge(state, age, 3.0)
    assert (badge.text if badge else None) == text
    if badge is not None and age is not None:
        assert "ago" in badge.detail


def _is_grey(image: QImage) -> bool:
    px = qimage_pixels(image)
    return bool((px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all())


def test_real_station_drives_the_views(qtbot: Any, station: Any, engine: Any) -> None:
    control = make_control(station, engine)
    bridge = EngineBridge(station, control, refresh_hz=20)
    wall = LiveWall(bridge, control)
    qtbot.addWidget(wall)
    wall.resize(900, 500)
    wall.show()
    assert grid_shape(len(wall.views)) == (2, 1)
    bridge.start()
    station.start()
    try:
        views = wall.views
        qtbot.waitUntil(lambda: all(v.image is not None for v in views.values()), timeout=15_000)
        qtbot.waitUntil(lambda: bridge.line_counts()[0] >= 6, timeout=15_000)
        first = {cid: v.image_sequence for cid, v in views.items()}
        qtbot.waitUntil(lambda: all(v.image_sequence > first[c] for c, v in views.items()), timeout=10_000)
        for v in views.values():  # scaled once to where it is drawn: painting is a 1:1 blit
            assert v.image.format() == QImage.Format.Format_RGB32
            rect = v.image_rect(*v.frame_size)
            assert (v.image.width(), v.image.height()) == (rect.width(), rect.height())
        assert _is_grey(views["cam-b"].image)  # Mono8 camera
        assert not _is_grey(views["cam-a"].image)  # BGR8 camera
        qtbot.waitUntil(lambda: bridge.live["cam-a"].fps > 0 and bridge.live["cam-a"].latency_p50_ms is not None, timeout=5000)
        assert "fps" in views["cam-a"]._header and "p50" in views["cam-a"]._header
        assert wall.counts_label.text().startswith("Inspected")
        assert wall.line_label.text() in ("LINE OK", "LINE NG")
        # a camera that stops gets the OFFLINE banner
        station.cameras["cam-b"].stop()
        qtbot.waitUntil(lambda: views["cam-b"].badge is not None, timeout=5000)
        assert views["cam-b"].badge.text.startswith("OFFLINE")
        assert views["cam-a"].badge is None
    finally:
        station.stop()
        bridge.close()
    for cam in station.cameras.values():  # every display reference went back to its pool
        assert cam.pool.free_slots == cam.pool.capacity


def test_overlay_matches_the_result_frame(qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation) -> None:
    cam = fake_station.cameras["fake-1"]
    r = make_result("fake-1", 1, "NG", [("crack", 0.91)], with_frame=True, pool=cam.pool, shape=(48, 64, 3))
    fake_station.events.result_ready.emit(r)
    r.frame.release()  # the sink's reference; the bridge keeps its own
    view = fake_wall.views["fake-1"]
    qtbot.waitUntil(lambda: view.shown_result is r, timeout=2000)
    assert [b.class_name for b in view.boxes] == ["crack"]
    qtbot.waitUntil(lambda: fake_wall.line_label.text() == "LINE NG", timeout=2000)
    # the box outline is painted in the class colour
    img = view.grab().toImage()
    colours = {QColor(img.pixel(x, y)).name() for x in range(img.width()) for y in range(24, img.height(), 3)}
    assert class_colour("crack").name() in colours
    # a newer frame without a result yet: the result's frame (and its box) stays while fresh
    cam.publish(50)
    qtbot.wait(60)
    assert view.image_sequence == 1 and view.boxes


def test_stale_then_offline_badge(qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation) -> None:
    cam = fake_station.cameras["fake-2"]
    r = make_result("fake-2", 1, "OK", with_frame=True, pool=cam.pool, shape=(48, 64, 3))
    fake_station.events.result_ready.emit(r)
    r.frame.release()
    cam.seq = 1
    h = r.frame
    view = fake_wall.views["fake-2"]
    qtbot.waitUntil(lambda: view.image is not None, timeout=2000)
    assert view.badge is None and h.refcount >= 1
    # the camera still says STREAMING but sends nothing: STALE after 0.3 s
    qtbot.waitUntil(lambda: view.badge is not None and view.badge.text == "STALE", timeout=3000)
    assert cam.state is CameraState.STREAMING
    cam.set_state(CameraState.OFFLINE)
    qtbot.waitUntil(lambda: view.badge is not None and view.badge.text == "OFFLINE", timeout=2000)
    assert "last frame" in view.badge.detail
    # the badge is drawn big: a row across the middle of the view is mostly badge red
    img = view.grab().toImage()
    y = 24 + (img.height() - 24) // 2 - 20
    reds = sum(QColor(img.pixel(x, y)).red() > 180 and QColor(img.pixel(x, y)).green() < 90 for x in range(img.width()))
    assert reds > img.width() * 0.6
    cam.publish(130)
    cam.set_state(CameraState.STREAMING)
    qtbot.waitUntil(lambda: view.badge is None, timeout=2000)


def test_double_click_enlarges_one_camera(qtbot: Any, fake_wall: LiveWall) -> None:
    v1, v2 = fake_wall.views["fake-1"], fake_wall.views["fake-2"]
    qtbot.mouseDClick(v2, Qt.MouseButton.LeftButton, pos=QPoint(20, 40))
    assert fake_wall.enlarged == "fake-2" and v2.isVisible() and not v1.isVisible()
    qtbot.mouseDClick(v2, Qt.MouseButton.LeftButton, pos=QPoint(20, 40))
    assert fake_wall.enlarged is None and v1.isVisible() and v2.isVisible()


def test_pause_needs_an_operator(qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation) -> None:
    control = fake_wall.control
    assert not fake_wall.pause_button.isEnabled()
    with pytest.raises(PermissionDenied):
        control.pause(True)
    control.login("op", PASSWORDS["op"])
    qtbot.waitUntil(fake_wall.pause_button.isEnabled, timeout=2000)
    with qtbot.waitSignal(fake_wall.bridge.paused_changed, timeout=2000):
        fake_wall.toggle_pause()
    assert fake_station.paused and fake_wall.paused_label.isVisibleTo(fake_wall)
    assert fake_wall.pause_button.text() == "Resume"
    fake_wall.toggle_pause()
    assert not fake_station.paused
    assert [e.action for e in control.audit_entries(limit=2)] == ["station.pause", "station.pause"]


def test_bridge_drops_results_it_does_not_need(qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation) -> None:
    """A burst of results costs the GUI one repaint per tick, and only the newest frame is held."""
    cam = fake_station.cameras["fake-1"]
    results = []
    t0 = time.perf_counter()
    for seq in range(1, 41):
        r = make_result("fake-1", seq, "OK", with_frame=True, pool=cam.pool, shape=(48, 64, 3))
        fake_station.events.result_ready.emit(r)
        r.frame.release()
        results.append(r)
    assert time.perf_counter() - t0 < 1.0
    view = fake_wall.views["fake-1"]
    qtbot.waitUntil(lambda: view.image_sequence == 40, timeout=2000)
    held = [r.frame for r in results if r.frame.refcount > 0]
    assert [h.sequence for h in held] == [40]  # the pool's latest + the bridge's reference, both on #40



@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (np.zeros((0, 0), np.uint8), "Mono8"),
        (np.zeros(100, np.uint8), "Mono8"),
        (np.zeros((10, 10, 7), np.uint8), "BGR8"),
    ],
)
def test_a_malformed_frame_is_skipped_and_the_next_good_one_shown(
    qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation, image: np.ndarray, fmt: str
) -> None:
    cam = fake_station.cameras["fake-1"]
    view = fake_wall.views["fake-1"]
    import dataclasses

    cam.pool.publish_external(image, 900, on_free=lambda: None, pixel_format=fmt)
    bad = cam.pool.claim()  # inspected (the engine counts it invalid; the view must survive it anyway)
    fake_station.events.result_ready.emit(dataclasses.replace(make_result("fake-1", 900, "OK"), frame=bad))
    bad.release()
    qtbot.wait(80)  # several refresh ticks: the view must survive the bad frame
    assert view.image_sequence != 900
    good = make_result("fake-1", 901, "OK", with_frame=True, pool=cam.pool, shape=(48, 64, 3))
    fake_station.events.result_ready.emit(good)
    good.frame.release()
    qtbot.waitUntil(lambda: view.image_sequence == good.sequence, timeout=2000)
    assert view.image is not None and not view.image.isNull()


def _emit_result(station: FakeStation, r: Any) -> Any:
    station.events.result_ready.emit(r)
    if r.frame is not None:
        r.frame.release()  # the sink's reference; the bridge keeps its own
    return r


def test_a_lagging_view_shows_one_inspected_frame_with_its_own_result(
    qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation
) -> None:
    """Issue 15.1: a slow backend never puts the last result's verdict on a newer, uninspected frame."""
    cam = fake_station.cameras["fake-1"]
    view = fake_wall.views["fake-1"]
    r1 = _emit_result(fake_station, make_result("fake-1", 1, "NG", [("crack", 0.91)], with_frame=True, pool=cam.pool,
                                                shape=(48, 64, 3)))
    qtbot.waitUntil(lambda: view.shown_result is r1, timeout=2000)
    shown_at = r1.frame.acquired_wall
    # the camera runs on (5 fps) while inspection is stuck: newer frames, none inspected yet
    cam.seq = 1
    for _ in range(3):
        newest = cam.publish(200)
    newest.acquired_wall = shown_at + 1.4
    qtbot.wait(120)  # several ticks
    assert view.image_sequence == r1.sequence == view.shown_result.sequence
    assert view.last_verdict == "NG" and [b.class_name for b in view.boxes] == ["crack"]
    assert qimage_pixels(view.image)[..., :3].std() > 10  # r1's random pixels, not the uniform newest frame
    assert view.behind_text == "behind 1.4 s"
    view.grab()  # paints the label without error
    # the next result (OK, no box) brings its own frame: picture, boxes and verdict change together
    r5 = _emit_result(fake_station, make_result("fake-1", 5, "OK", with_frame=True, pool=cam.pool, shape=(48, 64, 3)))
    qtbot.waitUntil(lambda: view.shown_result is r5, timeout=2000)
    assert view.image_sequence == 5 and view.boxes == [] and view.last_verdict == "OK"
    assert view.behind_text == ""


def test_a_result_without_its_frame_never_relabels_the_shown_picture(
    qtbot: Any, fake_wall: LiveWall, fake_station: FakeStation
) -> None:
    cam = fake_station.cameras["fake-1"]
    view = fake_wall.views["fake-1"]
    r1 = _emit_result(fake_station, make_result("fake-1", 1, "OK", with_frame=True, pool=cam.pool, shape=(48, 64, 3)))
    qtbot.waitUntil(lambda: view.shown_result is r1, timeout=2000)
    _emit_result(fake_station, make_result("fake-1", 2, "NG", [("dent", 0.8)]))  # no frame (e.g. given back)
    qtbot.wait(120)
    assert view.shown_result is r1 and view.image_sequence == 1
    assert view.last_verdict == "OK" and view.boxes == []


def test_header_numbers_are_labelled_and_fit_at_1280_px(qtbot: Any, engine: Any) -> None:
    """Issue 15.2: eight cameras at 1280 px, four-digit drops: every number readable, named."""
    from PySide6.QtGui import QFontMetricsF

    st = FakeStation(*(f"line-cam{i}" for i in range(1, 9)))
    control = make_control(st, engine)
    bridge = EngineBridge(st, control, refresh_hz=50)  # not started: the test sets the numbers
    wall = LiveWall(bridge, control)
    qtbot.addWidget(wall)
    wall.resize(1280, 740)
    wall.show()
    qtbot.waitExposed(wall)
    for live in bridge.live.values():
        live.fps, live.inspected_fps, live.latency_p50_ms, live.dropped = 5.0, 3.0, 342.0, 12345
    wall.refresh()
    for v in wall.views.values():
        v.grab()
        text, width = v.painted_stats
        assert "…" not in text
        assert QFontMetricsF(v._header_fonts()[2]).horizontalAdvance(text) <= width
        assert "rx 5.0 fps" in text and "insp 3.0 fps" in text and "drops 12,345" in text
        assert "received" in v.toolTip() and "inspected" in v.toolTip()
    bridge.close()
