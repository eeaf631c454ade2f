"""The fused kernel's arithmetic, replayed in numpy on the CPU.

`emulate_plan` runs a `BatchPlan` exactly as ``letterbox_batch`` would: it lays
the uploads into a byte "staging buffer" at their offsets, reads every pixel through
the item records (offset, pitch, tile origin, format code), and repeats the
kernel's float32 operations one by one, in the same order, with the same rounding:

* OpenCV INTER_LINEAR geometry: ``f = (d + 0.5) * scale - 0.5``; ``s = floor(f)``,
  ``a = f - s``; ``s < 0`` -> ``s = 0, a = 0``; ``s >= size - 1`` -> ``s = size - 1,
  a = 0``; right tap ``min(s + 1, size - 1)``;
* ``lerp(p0, p1, a) = p0 * (1 - a) + p1 * a``, horizontally on two rows, then vertically;
* ``floor(v + 0.5)`` (nearest level, halves up) when ``LB_ROUND_TO_U8``, clamp to
  0..255, ``/ 255``;
* fp16 output: float32 -> float16 round-to-nearest-even (``__float2half_rn``).

numpy float32 array operations round each result to float32, like the ``__*_rn``
intrinsics the kernel uses, so on a GPU the two should agree bit for bit
(``check_kernel`` reports it). The tests hold this emulation to
`inspector.pipeline.preprocess.reference_tensor` within 1/255: that is how the kernel's
arithmetic, the host-side plan and the struct packing are verified without a GPU.

Bayer formats: demosaiced on the host by `plan_batch` (the reference's own cv2
call), so here and in the kernel they are BGR8.
"""

from __future__ import annotations

import numpy as np

from inspector.pipeline.backends.base import BatchItem
from inspector.pipeline.gpu.kernel import CHANNELS, DEFINES, ROUND_TO_U8, BatchPlan, plan_batch
from inspector.pipeline.preprocess import PAD_VALUE, Letterbox, Tile

_F = np.float32
_RGB_FROM_BGR = DEFINES["LB_FMT_BGR"], DEFINES["LB_FMT_BGRA"]


def _axis(n: int, scale: np.float32, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left tap, right tap and right weight for output positions ``0..n-1`` of one axis."""
    d = np.arange(n, dtype=np.int32).astype(_F)
    f = (d + _F(0.5)) * _F(scale) - _F(0.5)
    fl = np.floor(f)
    s = fl.astype(np.int32)
    a = f - fl
    low = s < 0
    s[low], a[low] = 0, _F(0)
    high = s >= size - 1
    s[high], a[high] = size - 1, _F(0)
    return s, np.minimum(s + 1, size - 1), a


def _lerp(p0: np.ndarray, p1: np.ndarray, a: np.ndarray) -> np.ndarray:
    return p0 * (_F(1) - a) + p1 * a


def _finish(v: np.ndarray) -> np.ndarray:
    if ROUND_TO_U8:
        v = np.floor(v + _F(0.5))
    return np.minimum(np.maximum(v, _F(0)), _F(255)) / _F(255)


def emulate_item(staging: np.ndarray, rec: np.void, out_w: int, out_h: int, pad_value: int = PAD_VALUE) -> np.ndarray:
    """One item's ``(3, out_h, out_w)`` float32 output, as the kernel computes it."""
    out = np.full((3, out_h, out_w), _F(pad_value) / _F(255), _F)
    new_w, new_h = int(rec["new_w"]), int(rec["new_h"])
    x0, x1, ax = _axis(new_w, rec["scale_x"], int(rec["src_w"]))
    y0, y1, ay = _axis(new_h, rec["scale_y"], int(rec["src_h"]))
    fmt = int(rec["format"])
    ch = CHANNELS[fmt]
    base, pitch = int(rec["src_offset"]), int(rec["src_pitch"])
    row0 = base + (int(rec["tile_y0"]) + y0).astype(np.int64) * pitch
    row1 = base + (int(rec["tile_y0"]) + y1).astype(np.int64) * pitch
    col0 = (int(rec["tile_x0"]) + x0).astype(np.int64) * ch
    col1 = (int(rec["tile_x0"]) + x1).astype(np.int64) * ch

    def sample(s: int) -> np.ndarray:
        p00 = staging[row0[:, None] + col0[None, :] + s].astype(_F)
        p01 = staging[row0[:, None] + col1[None, :] + s].astype(_F)
        p10 = staging[row1[:, None] + col0[None, :] + s].astype(_F)
        p11 = staging[row1[:, None] + col1[None, :] + s].astype(_F)
        top = _lerp(p00, p01, ax[None, :])
        bot = _lerp(p10, p11, ax[None, :])
        return _finish(_lerp(top, bot, ay[:, None]))

    py, px = int(rec["pad_y"]), int(rec["pad_x"])
    roi = out[:, py : py + new_h, px : px + new_w]
    if ch == 1:
        roi[...] = sample(0)[None]
        return out
    r_idx = 2 if fmt in _RGB_FROM_BGR else 0
    for c, s in enumerate((r_idx, 1, 2 - r_idx)):
        roi[c] = sample(s)
    return out


def staging_bytes(plan: BatchPlan) -> np.ndarray:
    """The device staging buffer after the plan's uploads, as host bytes."""
    staging = np.zeros(max(plan.staging_bytes, 1), np.uint8)
    for up in plan.uploads:
        staging[up.offset : up.offset + up.nbytes] = up.array.reshape(-1)
    return staging


def emulate_plan(
    plan: BatchPlan, out_w: int, out_h: int, *, pad_value: int = PAD_VALUE, fp16: bool = False
) -> np.ndarray:
    """The whole launch: ``(B, 3, out_h, out_w)`` float32 (float16 when ``fp16``)."""
    staging = staging_bytes(plan)
    out = np.empty((len(plan.items), 3, out_h, out_w), np.float16 if fp16 else _F)
    for b, rec in enumerate(plan.items):
        out[b] = emulate_item(staging, rec, out_w, out_h, pad_value)  # float16 cast rounds to nearest even
    return out


def emulate_letterbox(
    image: np.ndarray,
    pixel_format: str,
    in_w: int,
    in_h: int,
    tile: Tile | None = None,
    *,
    pad_value: int = PAD_VALUE,
    fp16: bool = False,
) -> tuple[np.ndarray, Letterbox]:
    """One frame through the kernel's arithmetic; mirrors `reference_tensor`'s signature."""
    w, h = (tile.width, tile.height) if tile is not None else (image.shape[1], image.shape[0])
    box = Letterbox.fit(w, h, in_w, in_h)
    plan = plan_batch([BatchItem(image, pixel_format, box, tile)], in_w, in_h)
    return emulate_plan(plan, in_w, in_h, pad_value=pad_value, fp16=fp16)[0], box
