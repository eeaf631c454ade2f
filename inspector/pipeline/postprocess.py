"""Postprocessing: decode YOLO outputs, class-aware NMS, rescale to frame pixels."""

from __future__ import annotations

import numpy as np

from inspector.pipeline.preprocess import Letterbox, Tile

#: The lowest confidence a frame is decoded at (the scheduler's: max(this, half the lowest threshold))
CONF_FLOOR = 0.05
#: Candidates up to which `nms` takes one IoU matrix (N x N) instead of a pass per kept box
SMALL_NMS = 64


def decode_yolo(output: np.ndarray, conf_threshold: float, max_candidates: int = 3000) -> np.ndarray:
    """Decode one image's raw YOLO (v8/11) output.

    Args:
        output: ``(4 + nc, N)`` rows ``cx, cy, w, h, score_0..score_nc-1`` in input pixels.
        conf_threshold: Keep candidates whose best class score reaches this.
        max_candidates: Keep at most this many (highest scores) before NMS.

    Returns:
        ``(M, 6)`` float32 ``x1 y1 x2 y2 score class`` in input pixels.
    """
    scores = output[4:]
    # the best score of every anchor first (a fast reduction over a few rows); the class only for
    # the few that pass (argmax over all anchors costs more than the rest of the decoding)
    best = scores.max(0)
    keep = np.nonzero(best >= conf_threshold)[0]
    if keep.size == 0:
        return np.zeros((0, 6), np.float32)
    if keep.size > max_candidates:
        keep = keep[np.argsort(-best[keep])[:max_candidates]]
    cls = scores[:, keep].argmax(0)
    cx, cy, w, h = output[0, keep], output[1, keep], output[2, keep], output[3, keep]
    out = np.empty((keep.size, 6), np.float32)
    out[:, 0] = cx - w / 2
    out[:, 1] = cy - h / 2
    out[:, 2] = cx + w / 2
    out[:, 3] = cy + h / 2
    out[:, 4] = best[keep]
    out[:, 5] = cls
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(dets: np.ndarray, iou_threshold: float, max_det: int = 300) -> np.ndarray:
    """Class-aware greedy NMS on ``(N, 6)`` ``x1 y1 x2 y2 score class``; returns kept rows, best first."""
    if len(dets) <= 1:
        return dets
    order = np.argsort(-dets[:, 4], kind="stable")
    dets = dets[order]
    # shift each class into its own coordinate range so one pass separates classes
    offset = dets[:, 5:6] * (float(np.abs(dets[:, :4]).max()) + 1.0) * 2.0
    boxes = dets[:, :4] + offset
    if len(dets) <= SMALL_NMS:
        return dets[_greedy_small(boxes, iou_threshold, max_det)]
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    idx = np.arange(len(dets))
    while idx.size and len(keep) < max_det:
        i = idx[0]
        keep.append(int(i))
        rest = idx[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)  # np.clip costs more on small arrays
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        idx = rest[iou <= iou_threshold]
    return dets[keep]


def _greedy_small(boxes: np.ndarray, iou_threshold: float, max_det: int) -> list[int]:
    """Greedy NMS over score-sorted ``boxes`` from one IoU matrix: for the few candidates of a frame
    (6-7 on average on the shipped model), one vectorised pass and a loop over Python lists cost less
    than a dozen small numpy calls per kept box (side by side, two overlapping objects: 7 candidates
    53 -> 23 us, 30 candidates 84 -> 35 us, 64 candidates 86 -> 67 us)."""
    over = (iou_matrix(boxes, boxes) > iou_threshold).tolist()
    n = len(over)
    gone = [False] * n
    keep: list[int] = []
    for i in range(n):
        if gone[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        row = over[i]
        for j in range(i + 1, n):
            if row[j]:
                gone[j] = True
    return keep


def to_frame_pixels(dets: np.ndarray, box: Letterbox, tile: Tile | None, frame_w: int, frame_h: int) -> np.ndarray:
    """Map ``x1 y1 x2 y2`` from model-input pixels back to frame pixels (in place and returned).

    The exact inverse of the resize, per axis: the letterbox resized its source (``tile``, or
    the whole ``frame_w x frame_h`` frame) of ``src_w x src_h`` to ``new_w x new_h``, so
    ``x = (x_in - pad_x) * src_w / new_w`` plus the tile origin, and likewise for y. One
    ``1 / box.scale`` for both axes ignores the rounding of ``new_w`` / ``new_h`` and puts the
    far edge of a non-square frame up to half an input pixel off (4096x3000 into 320x320:
    4.8 frame pixels short at the bottom).

    Args:
        dets: ``(N, >=4)`` rows starting ``x1 y1 x2 y2`` in input pixels.
        box: The letterbox the input was made with, fitted to the tile or the frame.
        tile: The frame rectangle the input shows; None for the whole frame.
        frame_w: Frame width; boxes are clipped to it.
        frame_h: Frame height; boxes are clipped to it.
    """
    if len(dets) == 0:
        return dets
    if tile is None and box.pad_x == box.pad_y == 0 and (box.new_w, box.new_h) == (frame_w, frame_h):
        # the frame is the input: nothing to map, only to clip (the arithmetic below gives the same); two
        # ufuncs on the four columns, not np.clip per axis (its wrappers cost more than the clipping)
        xyxy = dets[:, :4]
        np.minimum(np.maximum(xyxy, 0, out=xyxy), (frame_w, frame_h, frame_w, frame_h), out=xyxy)
        return dets
    ox, oy, src_w, src_h = (tile.x0, tile.y0, tile.width, tile.height) if tile is not None else (0, 0, frame_w, frame_h)
    # in float64: integer edges come back exact, whatever the dtype of dets
    xs = dets[:, 0:4:2].astype(np.float64)
    ys = dets[:, 1:4:2].astype(np.float64)
    dets[:, 0:4:2] = np.minimum(np.maximum((xs - box.pad_x) * src_w / box.new_w + ox, 0), frame_w)
    dets[:, 1:4:2] = np.minimum(np.maximum((ys - box.pad_y) * src_h / box.new_h + oy, 0), frame_h)
    return dets


def rows_to_frame_pixels(rows: list[list[float]], box: Letterbox, tile: Tile | None, frame_w: int,
                         frame_h: int) -> list[list[float]]:
    """`to_frame_pixels` for a few rows given as lists (``x1 y1 x2 y2 ...``, float32 values): the same arithmetic
    in the same order, so the same float32 values, without the dozen numpy calls that cost more than a frame's
    few boxes (the worker maps one input's rows from the runtime's graph this way)."""
    if not rows:
        return rows
    fw, fh = float(frame_w), float(frame_h)
    if tile is None and box.pad_x == box.pad_y == 0 and (box.new_w, box.new_h) == (frame_w, frame_h):
        # clipping alone: each value stays the float32 it was, or becomes an edge (an integer)
        return [[min(max(r[0], 0.0), fw), min(max(r[1], 0.0), fh), min(max(r[2], 0.0), fw), min(max(r[3], 0.0), fh),
                 *r[4:]] for r in rows]
    ox, oy, src_w, src_h = (tile.x0, tile.y0, tile.width, tile.height) if tile is not None else (0, 0, frame_w, frame_h)
    px, py, nw, nh = box.pad_x, box.pad_y, box.new_w, box.new_h
    mapped = [[min(max((r[0] - px) * src_w / nw + ox, 0.0), fw), min(max((r[1] - py) * src_h / nh + oy, 0.0), fh),
               min(max((r[2] - px) * src_w / nw + ox, 0.0), fw), min(max((r[3] - py) * src_h / nh + oy, 0.0), fh),
               *r[4:]] for r in rows]
    out: list[list[float]] = np.array(mapped, np.float32).tolist()  # stored as float32, as the array path stores them
    return out
