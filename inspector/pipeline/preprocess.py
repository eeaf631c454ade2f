"""Preprocessing: pixel-format conversion, letterbox, tiling, and the reference tensor.

The arithmetic every path must match (OpenVINO's in-graph steps, ONNX Runtime, the
CUDA kernel) is `reference_tensor`: letterbox with bilinear resize and pad 114 (what
Ultralytics trains with), BGR->RGB, x/255, HWC->CHW.

On CPU stations the u8 letterbox is done here straight into the batch buffer (one
resize and one colour conversion per frame, nothing else), and the float conversion,
scaling and layout change run inside the model (OpenVINO PrePostProcessor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114

#: GenICam pixel format -> OpenCV conversion to BGR (None: already BGR).
#: OpenCV names Bayer patterns by the second row, GenICam by the first: RG <-> BG.
_TO_BGR: dict[str, int | None] = {
    "BGR8": None,
    "RGB8": cv2.COLOR_RGB2BGR,
    "Mono8": cv2.COLOR_GRAY2BGR,
    "RGBa8": cv2.COLOR_RGBA2BGR,
    "BGRa8": cv2.COLOR_BGRA2BGR,
    "BayerRG8": cv2.COLOR_BayerBG2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR,
    "BayerGB8": cv2.COLOR_BayerGR2BGR,
    "BayerBG8": cv2.COLOR_BayerRG2BGR,
}

PIXEL_FORMATS: tuple[str, ...] = tuple(_TO_BGR)


class FrameFormatError(ValueError):
    """A frame that cannot be inspected (unknown format, wrong shape, empty)."""


def share_the_cores_with_the_runtime() -> None:
    """One OpenCV thread in this process, for stations whose runtime computes on the CPU.

    The runtime's threads already take every core, and the worker letterboxes a frame at a time:
    OpenCV's own pthreads pool only wakes up and spins beside them. Measured on 2 AMX cores: a Mono8
    320x320 conversion cost 12-15 us of CPU with two OpenCV threads against 8.5 us with one, at the
    same wall time; a 1920x1200 -> 320x200 resize was not split at all (130 us either way). The
    pipeline's efficiency at 8 cameras did not move measurably (alternated pairs of
    `benchmarks/efficiency.py` swing +-3% on this machine; a quarter of its frames are Mono8).
    """
    cv2.setNumThreads(1)


def check_frame(image: np.ndarray, pixel_format: str) -> None:
    """Raise `FrameFormatError` unless ``image`` is a valid frame of ``pixel_format``."""
    if pixel_format not in _TO_BGR:
        raise FrameFormatError(f"pixel format {pixel_format!r} is not supported")
    if image.dtype != np.uint8 or image.size == 0 or image.shape[0] < 2 or image.shape[1] < 2:
        raise FrameFormatError(f"frame is empty or not u8: shape {image.shape}, dtype {image.dtype}")
    want = {"BGR8": 3, "RGB8": 3, "RGBa8": 4, "BGRa8": 4}.get(pixel_format, 1)
    got = 1 if image.ndim == 2 else image.shape[2]
    if got != want:
        raise FrameFormatError(f"{pixel_format} frame needs {want} channel(s), got shape {image.shape}")


def bayer_at(pixel_format: str, x0: int, y0: int) -> str:
    """The Bayer pattern of a crop starting at ``(x0, y0)``: odd offsets shift the phase."""
    if not pixel_format.startswith("Bayer") or not (x0 % 2 or y0 % 2):
        return pixel_format
    p = pixel_format[5:7]  # first row, e.g. "RG"; the second row is its complement
    rows = [p, {"RG": "GB", "GR": "BG", "GB": "RG", "BG": "GR"}[p]]
    row = rows[y0 % 2]
    return f"Bayer{row[x0 % 2]}{row[(x0 + 1) % 2]}8"


def to_bgr(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """Convert a camera frame to 3-channel BGR (a view when it already is)."""
    code = _TO_BGR[pixel_format]
    if code is None:
        return image
    return cv2.cvtColor(image, code)


@dataclass(frozen=True)
class Letterbox:
    """How a (sub)frame of ``src_w x src_h`` maps into the model input.

    The source is resized to exactly ``new_w x new_h`` (``round(src * scale)``) and placed at
    ``(pad_x, pad_y)``, so on each axis ``x_in = x * new_w / src_w + pad_x`` (and
    ``y_in = y * new_h / src_h + pad_y``), as ``cv2.resize`` and the CUDA kernel map it.
    ``scale`` is the unrounded fit; it is off by the rounding of ``new_w`` / ``new_h``, so
    mapping back uses ``src / new`` per axis (`postprocess.to_frame_pixels`), never ``1 / scale``.
    """

    scale: float
    pad_x: int
    pad_y: int
    new_w: int
    new_h: int
    in_w: int
    in_h: int

    @staticmethod
    def fit(w: int, h: int, in_w: int, in_h: int) -> Letterbox:
        """Aspect-preserving fit of a ``w x h`` image into ``in_w x in_h``, centred."""
        r = min(in_w / w, in_h / h)
        new_w, new_h = round(w * r), round(h * r)
        dw, dh = (in_w - new_w) / 2, (in_h - new_h) / 2
        # the same rounding as Ultralytics' LetterBox
        return Letterbox(r, round(dw - 0.1), round(dh - 0.1), new_w, new_h, in_w, in_h)


@dataclass(frozen=True)
class Tile:
    """A rectangle of the frame inspected as one model input."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def plan_tiles(
    w: int,
    h: int,
    in_w: int,
    in_h: int,
    *,
    min_defect_px: float,
    min_resolvable_px: float = 8.0,
    overlap: float = 0.2,
) -> list[Tile]:
    """Tiles such that the smallest defect stays at least ``min_resolvable_px`` in the input.

    One tile (the whole frame) when the full frame already resolves it.

    Args:
        w: Frame width.
        h: Frame height.
        in_w: Model input width.
        in_h: Model input height.
        min_defect_px: Smallest defect to find, in frame pixels.
        min_resolvable_px: Smallest object the model resolves, in input pixels.
        overlap: Fraction of a tile shared with its neighbour (defects on seams).
    """
    scale = min(in_w / w, in_h / h)
    if min_defect_px * scale >= min_resolvable_px:
        return [Tile(0, 0, w, h)]
    # a tile of side t is scaled by in/t: keep min_defect * in / t >= min_resolvable
    tw = max(16, min(w, math.floor(in_w * min_defect_px / min_resolvable_px)))
    th = max(16, min(h, math.floor(in_h * min_defect_px / min_resolvable_px)))

    def starts(total: int, size: int) -> list[int]:
        if size >= total:
            return [0]
        step = max(1, int(size * (1 - overlap)))
        n = math.ceil((total - size) / step) + 1
        return [min(i * step, total - size) for i in range(n)]

    return [Tile(x, y, x + tw, y + th) for y in starts(h, th) for x in starts(w, tw)]


def letterbox_into(
    dst: np.ndarray, image: np.ndarray, pixel_format: str, box: Letterbox, tile: Tile | None = None
) -> None:
    """Write the letterboxed BGR u8 input for ``image`` (or its ``tile``) into ``dst``.

    ``dst`` is one ``(in_h, in_w, 3)`` u8 slot of the batch buffer.
    """
    src = image if tile is None else image[tile.y0 : tile.y1, tile.x0 : tile.x1]
    if pixel_format.startswith("Bayer"):
        # demosaic before resizing (resizing a mosaic mixes colours), in the crop's own phase
        fmt = bayer_at(pixel_format, tile.x0, tile.y0) if tile is not None else pixel_format
        src, pixel_format = to_bgr(np.ascontiguousarray(src), fmt), "BGR8"
    if box.new_w != dst.shape[1] or box.new_h != dst.shape[0]:  # the image does not cover the input
        dst[...] = PAD_VALUE
    roi = dst[box.pad_y : box.pad_y + box.new_h, box.pad_x : box.pad_x + box.new_w]
    if src.shape[1] == box.new_w and src.shape[0] == box.new_h:
        resized = src
    else:
        resized = cv2.resize(src, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
    code = _TO_BGR[pixel_format]
    if code is None:
        roi[...] = resized
    else:
        cv2.cvtColor(resized, code, dst=roi)


def reference_tensor(
    image: np.ndarray, pixel_format: str, in_w: int, in_h: int, tile: Tile | None = None, dtype: type = np.float32
) -> tuple[np.ndarray, Letterbox]:
    """The reference model input: ``(3, in_h, in_w)`` RGB in 0..1, and its letterbox.

    Slow and obvious on purpose: every fast path is tested against this.
    """
    src = image if tile is None else image[tile.y0 : tile.y1, tile.x0 : tile.x1]
    fmt = bayer_at(pixel_format, tile.x0, tile.y0) if tile is not None else pixel_format
    bgr = to_bgr(np.ascontiguousarray(src), fmt)
    box = Letterbox.fit(bgr.shape[1], bgr.shape[0], in_w, in_h)
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
    resized = cv2.resize(bgr, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
    canvas[box.pad_y : box.pad_y + box.new_h, box.pad_x : box.pad_x + box.new_w] = resized
    rgb = canvas[..., ::-1].astype(np.float64) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(dtype), box


def batch_to_tensor(batch_u8: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """``(B, H, W, 3)`` BGR u8 -> ``(B, 3, H, W)`` RGB in 0..1 (for runtimes without in-graph preprocessing)."""
    x: np.ndarray = batch_u8[..., ::-1].transpose(0, 3, 1, 2).astype(dtype)
    x *= 1.0 / 255.0
    return np.ascontiguousarray(x)
