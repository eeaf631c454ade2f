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
