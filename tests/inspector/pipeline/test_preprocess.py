from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.pipeline.preprocess import (
    FrameFormatError,
    Letterbox,
    Tile,
    batch_to_tensor,
    check_frame,
    letterbox_into,
    plan_tiles,
    reference_tensor,
    to_bgr,
)


def colour_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def as_format(bgr: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "BGR8":
        return bgr
    if fmt == "RGB8":
        return np.ascontiguousarray(bgr[..., ::-1])
    if fmt == "Mono8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if fmt == "RGBa8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    if fmt == "BGRa8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    raise AssertionError(fmt)


def bayer_mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image into a GenICam Bayer pattern named by its first row (e.g. RG: R G / G B)."""
    idx = {"R": 2, "G": 1, "B": 0}
    h, w = bgr.shape[:2]
    out = np.empty((h, w), np.uint8)
    grid = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = bgr[dy::2, dx::2, idx[grid[dy][dx]]]
    return out


@pytest.mark.parametrize(
    ("w", "h", "in_w", "in_h", "scale", "pad"),
    [
        (320, 320, 320, 320, 1.0, (0, 0)),
        (640, 480, 320, 320, 0.5, (0, 40)),
        (480, 640, 320, 320, 0.5, (40, 0)),
        (400, 400, 320, 320, 0.8, (0, 0)),
        (1000, 100, 320, 320, 0.32, (0, 144)),
    ],
)
def test_letterbox_geometry(w, h, in_w, in_h, scale, pad) -> None:
    box = Letterbox.fit(w, h, in_w, in_h)
    assert box.scale == pytest.approx(scale)
    assert (box.pad_x, box.pad_y) == pad
    assert box.new_w + 2 * box.pad_x in (in_w, in_w - 1, in_w + 1)


@pytest.mark.parametrize("fmt", ["BGR8", "RGB8", "Mono8", "RGBa8", "BGRa8"])
@pytest.mark.parametrize("size", [(320, 320), (480, 640), (400, 400), (250, 333)])
def test_fast_letterbox_matches_reference(fmt: str, size: tuple[int, int]) -> None:
    bgr = colour_frame(*size)
    frame = as_format(bgr, fmt)
    ref, box = reference_tensor(frame, fmt, 320, 320)
    buf = np.zeros((1, 320, 320, 3), np.uint8)
    letterbox_into(buf[0], frame, fmt, box)
    fast = batch_to_tensor(buf)[0]
    # the same u8 pixels, the same arithmetic: at most one grey level apart
    assert np.abs(fast - ref).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_bayer_formats_demosaic_to_the_right_colours(pattern: str) -> None:
    fmt = {"RGGB": "BayerRG8", "GRBG": "BayerGR8", "GBRG": "BayerGB8", "BGGR": "BayerBG8"}[pattern]
    bgr = np.zeros((64, 64, 3), np.uint8)
    bgr[..., 2] = 200  # a red part
    bgr[..., 1] = 60
    bgr[..., 0] = 20
    out = to_bgr(bayer_mosaic(bgr, pattern), fmt)
    centre = out[16:48, 16:48].reshape(-1, 3).mean(0)
    assert centre[2] > 150 and centre[0] < 60, f"{fmt}: got BGR {centre}"


def test_reference_tensor_layout_and_range() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    t, box = reference_tensor(frame, "BGR8", 320, 320)
    assert t.shape == (3, 320, 320) and t.dtype == np.float32
    assert t[0, 160, 160] == pytest.approx(1.0)  # channel 0 is R
    assert t[2, 160, 160] == pytest.approx(0.0)
    assert t[0, 0, 0] == pytest.approx(114 / 255)  # letterbox padding
    assert box.pad_y == 80


@pytest.mark.parametrize(
    ("image", "fmt", "message"),
    [
        (np.zeros((0, 0), np.uint8), "Mono8", "empty"),
        (np.zeros((10, 10), np.uint16), "Mono8", "not u8"),
        (np.zeros((10, 10), np.uint8), "BGR8", "3 channel"),
        (np.zeros((10, 10, 3), np.uint8), "Mono8", "1 channel"),
        (np.zeros((10, 10), np.uint8), "YUV422", "not supported"),
    ],
)
def test_malformed_frames_are_refused(image, fmt, message) -> None:
    with pytest.raises(FrameFormatError, match=message):
        check_frame(image, fmt)


def test_no_tiling_when_the_full_frame_resolves_the_smallest_defect() -> None:
    assert plan_tiles(320, 320, 320, 320, min_defect_px=8) == [Tile(0, 0, 320, 320)]
    assert plan_tiles(640, 480, 320, 320, min_defect_px=16, min_resolvable_px=8) == [Tile(0, 0, 640, 480)]


@pytest.mark.parametrize(("w", "h"), [(1280, 1024), (2448, 2048), (1000, 333)])
def test_tiles_cover_the_frame_and_keep_defects_resolvable(w: int, h: int) -> None:
    tiles = plan_tiles(w, h, 320, 320, min_defect_px=8, min_resolvable_px=6, overlap=0.2)
    assert len(tiles) > 1
    covered = np.zeros((h, w), bool)
    for t in tiles:
        assert 0 <= t.x0 < t.x1 <= w and 0 <= t.y0 < t.y1 <= h
        covered[t.y0 : t.y1, t.x0 : t.x1] = True
        scale = min(320 / t.width, 320 / t.height)
        assert 8 * scale >= 6 - 1e-6
    assert covered.all()


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
@pytest.mark.parametrize(("x0", "y0"), [(0, 0), (1, 0), (0, 1), (1, 1), (33, 18)])
def test_bayer_tiles_at_odd_origins_keep_their_colours(pattern: str, x0: int, y0: int) -> None:
    fmt = {"RGGB": "BayerRG8", "GRBG": "BayerGR8", "GBRG": "BayerGB8", "BGGR": "BayerBG8"}[pattern]
    bgr = np.zeros((96, 96, 3), np.uint8)
    bgr[..., 2], bgr[..., 1], bgr[..., 0] = 200, 60, 20  # a red part
    mosaic = bayer_mosaic(bgr, pattern)
    tile = Tile(x0, y0, x0 + 48, y0 + 48)
    t, _ = reference_tensor(mosaic, fmt, 48, 48, tile=tile)
    centre = t[:, 12:36, 12:36].reshape(3, -1).mean(1) * 255  # RGB
    assert centre[0] > 150 and centre[2] < 60, f"{fmt} tile at ({x0},{y0}): RGB {centre}"
    buf = np.zeros((48, 48, 3), np.uint8)
    letterbox_into(buf, mosaic, fmt, Letterbox.fit(48, 48, 48, 48), tile)
    assert buf[12:36, 12:36, 2].mean() > 150 and buf[12:36, 12:36, 0].mean() < 60


@pytest.mark.parametrize(("w", "h"), [(1920, 1080), (1000, 333), (333, 1000), (4096, 3000)])
def test_resized_content_fills_exactly_new_w_by_new_h(w: int, h: int) -> None:
    # the content covers the rounded new_w x new_h, not w * scale x h * scale: what to_frame_pixels inverts
    frame = np.full((h, w), 255, np.uint8)
    ref, box = reference_tensor(frame, "Mono8", 320, 320)
    content = np.argwhere(ref[0] > 0.5)
    assert content.min(0).tolist() == [box.pad_y, box.pad_x]
    assert (content.max(0) + 1).tolist() == [box.pad_y + box.new_h, box.pad_x + box.new_w]
    assert (box.new_w, box.new_h) == (round(w * box.scale), round(h * box.scale))
