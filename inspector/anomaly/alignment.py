"""Part alignment: each frame brought to the taught parts' mean pose before a part's model scores it.

A part never lies twice the same under the camera: a label sits a few px off and turned a degree or two, a
plate on its fixture likewise. A part's model compares each position with the same position of the good parts
(per-cell divisors, the tone level's per-cell Gaussians, patches against a bank of patches), so every px of
placement error widens what "good" may look like there, and a missing print line or a splash inside that width
passes. Vision sensors fixture the inspection to the part's pose first (a pattern find, then the tools in the
part's coordinates); here the pose is a Euclidean warp (a shift and a turn) found by OpenCV's ECC (enhanced
correlation coefficient, Evangelidis & Psarakis 2008) between a small grey copy of the frame and the good
parts' mean, at `SIDE` px, the frame's corners within 1.3 px of the warp found at 160 px. One core, 320 x 320
colour: the grey copy 0.17 ms, ECC 0.55-0.75 ms, the warp 0.45 ms.

The warped frame shows the part at the reference pose. Where the warp reaches beyond the frame, the camera saw
nothing: a reflected border (`cv2.BORDER_REFLECT_101`) fills it, and no cell within `REACH` cells of it is scored
(`seen_cells`): a reflected edge is a streak no good part has. A fixed margin cut off every frame instead lost
what lies at a part's rim where the part fills the frame (the plate's chipped edges: validation AUROC 0.9865 ->
0.658 with 5% of each side cut). Textures (a cloth, a board: `patchcore.position_share` low) are not aligned:
their look does not depend on the position.

Maps come back to the frame's own coordinates (`to_frame`): the heat map lies over the part where it is, and a
camera's mask image (the frame's size) applies where it was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: The grey copy's longer side the pose is estimated at (px), at most the frame's. Plate's validation parts, the
#: frame's corners against the warp found at 160 px (4.4 ms a frame): 64 px 0.6 ms, within 2.4 px; 80 px 0.9 ms,
#: 1.8 px; 96 px 1.1 ms, 1.3 px. End to end (int8, validation, good only, false reject / escape): at 64 px plate
#: 2.5% / 0.5%, at 96 px 0.5% / 1.0% (not aligned: 0% / 2.0%): a corner 2 px off is a hole's rim off its place.
SIDE = 96
#: ECC's iterations at most, and the change of the correlation it stops at. 10 find the same warps as 30 on plate's
#: and label's validation parts (their corners within 1.3 and 1.0 px of the warp at 160 px either way), and cap what
#: a frame unlike the reference costs: the demo line's frames against a label's reference 2.9 ms a frame at 10
#: against 5.1 ms at 30. Stopping sooner, at a change of 3e-3, put the corners within 0.13 px of the converged warp
#: (held-out labels and plates, and labels moved 3 degrees and 12 px further than any taught part) for 0.1-0.2 ms
#: less ECC a frame, yet the validation labels read AUROC 0.9952 and 2.5% escape against 0.9988 and 2.0% at 1e-4
#: (good only, int8): a label's fine print wants the last tenth of a px. A cap of 3 iterations left labels moved
#: further than the taught ones up to 5.4 px off.
ITERATIONS = 10
EPS = 1e-4
#: Cells this close (in cells) to a px the camera did not see are not scored: the fine level taps a stride-16 block
#: and pools 3 x 3 cells, so a cell up to 2 cells from a reflected border sees it.
REACH = 2
#: Reference passes at teach: the first aligns the good parts to the first of them, each later one to the mean
#: of the last pass, moved to their mean pose.
PASSES = 2
ALIGNMENT_RULE = ("each frame warped to the good parts' mean pose before it is scored: a Euclidean warp (shift and "
                  "turn) found by ECC between the frame's grey copy at {side} px and the good parts' mean grey "
                  "(the reference), at most {iterations} iterations (stopping where the correlation changes less than "
                  "{eps}); no cell within {reach} cell(s) of what the warp took from "
                  "beyond the frame is scored; maps warped back to the frame; a frame ECC finds no warp for is scored "
                  "as it is")


def _grey_small(frame_u8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame's grey copy at ``size`` (width, height), f32: one area resize.

    Halving it first (OpenCV's fast whole-factor path, then an area resize: 0.08 against 0.17 ms at 320 -> 96 px)
    moved the poses by at most 0.08 px, yet held-out plate then read AUROC 0.9938, false reject 2.5% and escape 2.5%
    against 0.9983, 0% and 1.0% (plate Mono8 the other way: 0.9996 against 0.9945): a part's threshold rides on its
    good parts' tail, and the cheaper copy was not taken."""
    import cv2

    grey = frame_u8[..., 0] if frame_u8.ndim == 3 and frame_u8.shape[2] == 1 else frame_u8
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), np.float32)


def small_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the grey copy the pose is estimated at."""
    f = min(1.0, SIDE / max(width, height))  # never larger than the frame itself
    return max(8, round(width * f)), max(8, round(height * f))


def _estimate(reference: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
    """The 3 x 3 warp that takes the reference's coordinates to ``grey``'s (both small), or None (ECC found none)."""
    import cv2

    warp = np.eye(2, 3, dtype=np.float32)
    try:
        # the 7-argument form (a Gaussian of 3 px first: the copy is small); OpenCV's stubs know only the 6
        _, warp = cv2.findTransformECC(reference, grey, warp, cv2.MOTION_EUCLIDEAN,  # type: ignore[call-overload]
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ITERATIONS, EPS), None, 3)
    except cv2.error:  # no convergence (a frame unlike the reference: no part, another part)
        return None
    if not bool(np.all(np.isfinite(warp))):
        return None
    return np.vstack([warp.astype(np.float64), [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Alignment:
    """A taught alignment (the card's ``[alignment]``).

    Args:
        reference: (h, w) float32: the good parts' mean grey at their mean pose, at `small_size`.
        width: The model's input width (the frames it warps).
        height: Its input height.
    """

    reference: np.ndarray
    width: int
    height: int

    def _small_to_full(self) -> tuple[np.ndarray, np.ndarray]:
        """(P, P^-1): full-size pixel -> small pixel, pixel centres on pixel centres (an area resize's)."""
        h, w = self.reference.shape
        fx, fy = w / self.width, h / self.height
        p = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
        return p, np.linalg.inv(p)

    def matrices(self, poses: list[np.ndarray | None]) -> np.ndarray:
        """(N, 3, 3): each output pixel's position in its frame (full size); a frame without a pose: identity."""
        p, p_inv = self._small_to_full()
        return np.stack([p_inv @ pose @ p if pose is not None else np.eye(3) for pose in poses])

    def pose(self, frame_u8: np.ndarray) -> np.ndarray | None:
        """The frame's 3 x 3 matrix (each output pixel's position in the frame, full size), or None: ECC found no
        pose (no part, another part, one lying far off)."""
        size = (self.reference.shape[1], self.reference.shape[0])
        found = _estimate(self.reference, _grey_small(frame_u8, size))
        return None if found is None else self.matrices([found])[0]

    def _matrix(self, frame_u8: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the frame's matrix, the identity where it has no pose: scored where it lies; whether it has one)."""
        m = self.pose(frame_u8)
        return (np.eye(3), False) if m is None else (m, True)

    def warp_frame(self, frame_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(one frame at the reference pose, a new array; its matrix: each output pixel's position in the frame,
        the identity where it has no pose)."""
        m, _ = self._matrix(frame_u8)
        return warp_reflected(frame_u8, m, self.width, self.height), m

    def warp_into(self, frame_u8: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, bool]:
        """``frame_u8`` at the reference pose, written into ``out`` (a batch's colour frame); (its matrix, as
        `warp_frame`'s; whether its pose was found)."""
        m, found = self._matrix(frame_u8)
        warp_reflected(frame_u8, m, self.width, self.height, out=out)
        return m, found

    def warp(self, batch_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the batch at the reference pose, a new array; its (N, 3, 3) matrices, `warp_frame`'s)."""
        out = np.empty_like(batch_u8)
        m = np.empty((len(batch_u8), 3, 3))
        for i, frame in enumerate(batch_u8):
            out[i], m[i] = self.warp_frame(frame)
        return out, m

    def card_table(self, file: str, sha256: str, shifts: np.ndarray, turns: np.ndarray, failed: int
                   ) -> dict[str, Any]:
        """The card's ``[alignment]``: the rule, and how far the good parts lay from the reference pose."""
        return {"file": file, "sha256": sha256, "side": int(max(self.reference.shape)), "reach": REACH,
                "motion": "euclidean", "iterations": ITERATIONS, "stop_change": EPS,
                "largest_shift_px": round(float(shifts.max()), 2) if len(shifts) else 0.0,
                "largest_turn_deg": round(float(np.abs(turns).max()), 2) if len(turns) else 0.0,
                "good_without_pose": failed,
                "rule": ALIGNMENT_RULE.format(side=SIDE, iterations=ITERATIONS, reach=REACH, eps=EPS)}


def warp_reflected(frame_u8: np.ndarray, matrix: np.ndarray, width: int, height: int,
                   out: np.ndarray | None = None) -> np.ndarray:
    """``frame_u8`` warped bilinearly by ``matrix`` (3 x 3: each output pixel's position in the frame) to
    (``height``, ``width``), px from beyond the frame reflected (`cv2.BORDER_REFLECT_101`).

    The frame is first padded, reflected, as far as the warp reaches beyond it, and the padded frame warped with
    a replicated border: the same px (within one grey level: OpenCV's fixed-point positions) at half the cost of
    warpAffine's own reflected border (320 x 320 colour, one thread: 0.45 against 0.89 ms)."""
    import cv2

    h, w = frame_u8.shape[:2]
    corners = matrix[:2] @ np.array([[0, width - 1, 0, width - 1], [0, 0, height - 1, height - 1], [1, 1, 1, 1]])
    beyond = max(0.0, -corners.min(), float((corners[0] - (w - 1)).max()), float((corners[1] - (h - 1)).max()))
    padded, moved = frame_u8, matrix[:2]
    if beyond > 0:  # a reflection reaches at most the frame's size - 1 (then replicated: never scored, `seen_cells`)
        pad = min(int(np.ceil(beyond)) + 2, min(h, w) - 1)
        padded = cv2.copyMakeBorder(frame_u8, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        moved = np.array([[1.0, 0.0, pad], [0.0, 1.0, pad]]) @ matrix
    if out is not None:  # a batch's frame, written in place (colour: (height, width, 3), C-contiguous)
        cv2.warpAffine(padded, moved[:2], (width, height), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REPLICATE)
        return out
    warped = cv2.warpAffine(padded, moved[:2], (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped).reshape(height, width, *frame_u8.shape[2:])


def seen_cells(matrices: np.ndarray, width: int, height: int, stride: int, reach: int = REACH) -> np.ndarray:
    """(N, gh, gw) bool: the cells of the warped frames (`Alignment.matrices`) whose px, and their neighbours'
    within ``reach`` cells, all come from inside the frame."""
    gh, gw = height // stride, width // stride
    rows, cols = np.mgrid[0:gh, 0:gw]
    x0, x1 = np.maximum(0, (cols - reach) * stride), np.minimum(width - 1, (cols + reach + 1) * stride - 1)
    y0, y1 = np.maximum(0, (rows - reach) * stride), np.minimum(height - 1, (rows + reach + 1) * stride - 1)
    seen = np.ones((len(matrices), gh, gw), bool)
    for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):  # an affine warp keeps a block's corners its extremes
        fx = matrices[:, 0, 0, None, None] * x + matrices[:, 0, 1, None, None] * y + matrices[:, 0, 2, None, None]
        fy = matrices[:, 1, 0, None, None] * x + matrices[:, 1, 1, None, None] * y + matrices[:, 1, 2, None, None]
        seen &= (fx >= -0.5) & (fx <= width - 0.5) & (fy >= -0.5) & (fy <= height - 0.5)
    return seen


def to_frame(maps: np.ndarray, matrices: np.ndarray, stride: int) -> np.ndarray:
    """(N, gh, gw) maps on the aligned frames' grid brought to each frame's own grid: each frame cell takes the
    aligned cell at its position (nearest), and every aligned cell also lands on the frame cell nearest it (the
    larger kept): no cell's score is lost, so the map's maximum stays the score's. Cells no aligned cell covers: 0."""
    import cv2

    n, gh, gw = maps.shape
    g = np.array([[stride, 0.0, 0.5 * stride - 0.5], [0.0, stride, 0.5 * stride - 0.5], [0.0, 0.0, 1.0]])
    g_inv = np.linalg.inv(g)
    rows, cols = np.mgrid[0:gh, 0:gw]
    cells = np.stack([cols.ravel(), rows.ravel(), np.ones(gh * gw)]).astype(np.float64)
    out = np.zeros_like(maps)
    for i in range(n):
        forward = g_inv @ matrices[i] @ g  # aligned cell -> frame cell
        out[i] = cv2.warpAffine(maps[i], forward[:2], (gw, gh), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        landed = np.rint(forward @ cells).astype(np.int64)
        inside = (landed[0] >= 0) & (landed[0] < gw) & (landed[1] >= 0) & (landed[1] < gh)
        np.maximum.at(out[i], (landed[1, inside], landed[0, inside]), maps[i].ravel()[inside])
    return out


def small_greys(batch_u8: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Each frame's grey copy at `small_size` (what `teach_alignment` takes)."""
    size = small_size(width, height)
    return [_grey_small(f, size) for f in batch_u8]


def teach_alignment(greys: list[np.ndarray], width: int, height: int) -> tuple[Alignment, dict[str, Any]]:
    """The reference of good frames' grey copies (`small_greys` of letterboxed frames at the model's input size),
    and how far each lay from it (``shifts``: each frame's largest corner shift, px; ``turns``: degrees;
    ``failed``: frames without a pose: `Alignment.card_table`'s)."""
    import cv2

    size = small_size(width, height)
    reference = greys[0]
    poses: list[np.ndarray | None] = []
    for _ in range(PASSES):
        poses = [_estimate(reference, g) for g in greys]
        found = [p for p in poses if p is not None]
        aligned = [cv2.warpAffine(g, p[:2].astype(np.float32), size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT_101) for g, p in zip(greys, poses) if p is not None]
        if not aligned:
            break
        mean_pose = np.mean(found, axis=0)  # small turns: the mean matrix is a pose's
        # the mean at the first frame's pose, moved to the parts' mean pose (the least warp on the whole)
        reference = cv2.warpAffine(np.mean(aligned, axis=0).astype(np.float32), mean_pose[:2].astype(np.float32),
                                   size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    poses = [_estimate(reference, g) for g in greys]
    alignment = Alignment(np.ascontiguousarray(reference, np.float32), width, height)
    p, p_inv = alignment._small_to_full()
    found = [p_inv @ pose @ p for pose in poses if pose is not None]
    corners = np.array([[0, width - 1, 0, width - 1], [0, 0, height - 1, height - 1], [1, 1, 1, 1]], np.float64)
    shifts = np.array([float(np.abs((m @ corners - corners)[:2]).max()) for m in found])
    turns = np.array([float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))) for m in found])
    return alignment, {"shifts": shifts, "turns": turns, "failed": sum(pose is None for pose in poses)}
