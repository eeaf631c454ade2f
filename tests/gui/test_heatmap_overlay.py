"""Heat maps over pictures: the colours and opacity, the archived file beside an image in the history's view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.heatmap_overlay import FLOOR_LEVEL, MAX_ALPHA, TOP_LEVEL, heat_to_qimage
from gui.history_widgets import InspectionImageView
from inspector.archive import heat_map_path
from tests.gui.conftest import qimage_pixels


def test_low_scores_are_transparent_and_high_ones_red_and_opaque(qapp: Any) -> None:
    heat = np.array([[0, FLOOR_LEVEL, 128, TOP_LEVEL, 255]], np.uint8)
    img = heat_to_qimage(heat)
    px = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes()).reshape(1, -1)[:, :5 * 4].reshape(5, 4)
    b, _g, r, a = (px[:, i].astype(int) for i in range(4))
    assert a[0] == a[1] == 0 and 0 < a[2] < MAX_ALPHA and a[3] == a[4] == MAX_ALPHA  # good stays untouched
    assert r[3] > 100 and b[3] < 50 and b[1] > r[1]  # red at the top, blue at the floor


def _grey_image(path: Path) -> None:
    assert cv2.imwrite(str(path), np.full((60, 80), 100, np.uint8))


def test_the_history_view_draws_the_heat_map_archived_beside_the_image(qtbot: Any, tmp_path: Path) -> None:
    image = tmp_path / "cam1_7_1700000000000.png"
    _grey_image(image)
    heat = np.zeros((30, 40), np.uint8)
    heat[10:20, 25:35] = 255  # hot at the image's right
    assert cv2.imwrite(str(heat_map_path(image)), heat)
    view = InspectionImageView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    assert view.show_inspection(str(image), []) and view.heat.available
    with_heat = qimage_pixels(view.grab().toImage())
    view.heat.enabled = False
    plain = qimage_pixels(view.grab().toImage())
    changed = np.argwhere(np.abs(with_heat.astype(int) - plain.astype(int)).sum(axis=2) > 30)
    assert len(changed) and changed[:, 1].mean() > 200  # drawn where the hot patch is, right of the centre
    other = tmp_path / "cam1_8_1700000000001.png"  # an image without a heat map (a detector NG)
    _grey_image(other)
    assert view.show_inspection(str(other), []) and not view.heat.available


def _result(camera_id: str, sequence: int) -> Any:
    from inspector.pipeline.results import InspectionResult, Provenance, StageTimes, Verdict

    return InspectionResult(camera_id=camera_id, sequence=sequence, acquired_at=0.0, verdict=Verdict.NG, rule="",
                            detections=(), times=StageTimes(), provenance=Provenance("m", "", ""),
                            frame_width=64, frame_height=64)


def test_a_live_heat_map_that_comes_after_the_first_paint_is_drawn_then(qapp: Any) -> None:
    """Attached, a frame's heat map arrives with its image, possibly after the view first painted the result:
    a result without a heat map yet is asked for again at the next paint (it used to stay without one)."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QImage, QPainter

    from gui.heatmap_overlay import LiveHeatMaps
    from gui.remote import RemoteHeatMaps

    received = RemoteHeatMaps()
    live = LiveHeatMaps(received.heat_map)
    live.enabled = True
    r = _result("cam-a", 7)
    canvas = QImage(64, 64, QImage.Format.Format_ARGB32)
    canvas.fill(0)
    p = QPainter(canvas)
    live.paint(p, r, QRectF(0, 0, 64, 64))
    assert live.layer.heat is None
    received.put("cam-a", 7, np.full((32, 32), 200, np.uint8))
    received.put("cam-a", 8, np.zeros((32, 32), np.uint8))  # another frame's: not this one
    live.paint(p, r, QRectF(0, 0, 64, 64))
    p.end()
    assert live.layer.heat is not None and int(live.layer.heat.max()) == 200
    b, _g, r, _a = (int(v) for v in qimage_pixels(canvas)[32, 32])
    assert r > 90 and b < 30  # drawn: JET's red over the black picture (a score 1.57x the threshold)


def test_received_heat_maps_are_found_by_camera_and_frame_and_bounded(qapp: Any) -> None:
    from gui.remote import RemoteHeatMaps

    received = RemoteHeatMaps()
    assert received.heat_map(_result("cam-a", 1)) is None  # the empty case
    for seq in range(RemoteHeatMaps.KEPT + 10):
        received.put("cam-a", seq, np.full((4, 4), seq % 256, np.uint8))
    received.put("cam-b", 3, np.full((4, 4), 99, np.uint8))
    assert received.heat_map(_result("cam-a", 5)) is None  # among the oldest: dropped
    got = received.heat_map(_result("cam-a", RemoteHeatMaps.KEPT + 9))
    assert got is not None and int(got[0, 0]) == (RemoteHeatMaps.KEPT + 9) % 256
    b = received.heat_map(_result("cam-b", 3))
    assert b is not None and int(b[0, 0]) == 99
