"""Frames to QImages: formats, colours, scaling for the wall, and the caller's pixels left alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6.QtGui", reason="Qt cannot load here (PySide6 or its system libraries are missing)")

from PySide6.QtGui import QImage

from gui.imaging import fit_rect, frame_to_display, frame_to_qimage
from tests.gui.conftest import qimage_pixels

BGR = (10, 120, 250)  # B, G, R of the test pattern's left half


def _pattern_bgr(h: int = 6, w: int = 8) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = BGR
    img[:, w // 2 :] = (200, 30, 60)
    return img


def _as_format(bgr: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "BGR8":
        return bgr.copy()
    if fmt == "RGB8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if fmt == "RGBa8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    if fmt == "BGRa8":
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
        out[..., 3] = 7  # padding byte from the camera, not an alpha
        return out
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["BGR8", "RGB8", "RGBa8", "BGRa8"])
def test_colour_formats_show_the_right_colours_at_1_to_1(fmt: str) -> None:
    src = _as_format(_pattern_bgr(), fmt)
    before = src.copy()
    img = frame_to_display(src, fmt, (8, 6))
    assert img.format() == QImage.Format.Format_RGB32
    px = qimage_pixels(img)
    assert tuple(px[0, 0, :3]) == BGR and px[0, 0, 3] == 255
    assert tuple(px[0, 7, :3]) == (200, 30, 60)
    np.testing.assert_array_equal(src, before)  # the camera's slot is never written
    ref = qimage_pixels(frame_to_qimage(src, fmt))  # the history path agrees
    np.testing.assert_array_equal(ref[..., :3], px[..., :3])


def test_scaling_follows_the_requested_size_and_keeps_the_picture() -> None:
    src = _pattern_bgr(60, 80)
    up = qimage_pixels(frame_to_display(src, "BGR8", (160, 120)))
    down = qimage_pixels(frame_to_display(src, "BGR8", (40, 30)))
    assert up.shape[:2] == (120, 160) and down.shape[:2] == (30, 40)
    for px, w in ((up, 160), (down, 40)):
        assert tuple(px[5, 2, :3]) == BGR  # left half stays left
        assert tuple(px[5, w - 3, :3]) == (200, 30, 60)


def test_mono_padded_rows_and_bayer() -> None:
    rows = np.zeros((6, 16), np.uint8)
    rows[:, :8] = np.arange(8, dtype=np.uint8) * 30
    mono = rows[:, :8]  # a strided view: rows padded to 16 bytes
    px = qimage_pixels(frame_to_display(mono, "Mono8", (8, 6)))
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    np.testing.assert_array_equal(px[0, :, 0], np.arange(8) * 30)

    bayer = np.full((8, 8), 90, np.uint8)  # flat grey mosaic: every demosaic gives grey 90
    px = qimage_pixels(frame_to_display(bayer, "BayerRG8", (4, 4)))
    assert px.shape[:2] == (4, 4) and (np.abs(px[..., :3].astype(int) - 90) <= 1).all()


def test_unknown_formats_fall_back_by_shape_and_bad_frames_are_refused() -> None:
    four = np.zeros((4, 4, 4), np.uint8)
    four[..., 0] = 77
    px = qimage_pixels(frame_to_display(four, "Coord3D_ABC8", (4, 4)))
    assert (px[..., :3] == 77).all()  # first plane shown as grey
    with pytest.raises(ValueError):
        frame_to_display(np.zeros((0, 4), np.uint8), "Mono8", (4, 4))
    with pytest.raises(ValueError):
        frame_to_display(np.zeros((4, 4, 3), np.uint8), "Mono8", (4, 4))  # shape contradicts the format


def test_zero_size_request_still_gives_an_image() -> None:
    img = frame_to_display(_pattern_bgr(), "BGR8", (0, 0))
    assert (img.width(), img.height()) == (1, 1)


def test_fit_rect_keeps_aspect_and_centres() -> None:
    from PySide6.QtCore import QRectF

    r = fit_rect(400, 200, QRectF(0, 0, 100, 100))
    assert (r.x(), r.y(), r.width(), r.height()) == (0, 25, 100, 50)


def test_tags_of_crowded_boxes_do_not_overlap_and_stay_in_the_picture() -> None:
    from PySide6.QtCore import QRectF

    from gui.imaging import place_tags

    bounds = QRectF(0, 0, 320, 240)
    # three defects side by side at the same height, tags wider than the gaps between them
    boxes = [QRectF(100 + 12 * i, 50, 10, 30) for i in range(3)]
    spots = place_tags(boxes, [(60.0, 14.0)] * 3, bounds)
    assert spots[0] == QRectF(100, 36, 60, 14)  # room above: the usual spot, left-aligned
    for i, a in enumerate(spots):
        assert bounds.contains(a)
        assert all(not a.intersects(b) for b in spots[i + 1 :])
    # at the picture's top and right edge: below the box, pulled inside
    edge = place_tags([QRectF(300, 2, 18, 18)], [(60.0, 14.0)], bounds)[0]
    assert edge == QRectF(260, 20, 60, 14)


def test_draw_boxes_paints_every_tag_in_its_class_colour(qapp: object) -> None:
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QFont, QFontMetricsF, QPainter

    from gui.imaging import Box, class_colour, draw_boxes, place_tags

    img = QImage(320, 240, QImage.Format.Format_RGB32)
    img.fill(0)
    boxes = [Box(100, 50, 110, 80, "scratch", 0.9), Box(112, 50, 122, 80, "dent", 0.8)]
    p = QPainter(img)
    draw_boxes(p, boxes, QRectF(0, 0, 320, 240), 320, 240, font_px=11)
    p.end()
    font = QFont()
    font.setPixelSize(11)
    font.setBold(True)
    fm = QFontMetricsF(font)
    rects = [QRectF(b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1) for b in boxes]
    spots = place_tags(rects, [(fm.horizontalAdvance(f"{b.class_name} {b.score:.2f}") + 6, fm.height() + 2) for b in boxes],
                       QRectF(0, 0, 320, 240))
    for b, spot in zip(boxes, spots):
        corner = img.pixelColor(int(spot.x()) + 1, int(spot.y()) + 1)  # the tag's fill, left of its text
        assert corner.rgb() == class_colour(b.class_name).rgb()
