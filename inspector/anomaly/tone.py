"""The tone level: each cell's colour mean and spread over two windows, and a Gaussian of them from good parts.

The backbone's texture level sees a cloth's threads and a board's grain a patch at a time; a stain that takes
30-40% of a weave's contrast over a 20-40 px blob, its mean colour nearly unchanged, looks to each patch like
the weave's own thread-to-thread variation. Box statistics over wider windows see it directly: per fine-grid
cell, each channel's mean and standard deviation over the `WINDOWS` (3 and 7 cells square, centred on the
cell). A stationary texture looks alike everywhere: one Gaussian (mean, shrunk covariance:
`patchcore.whitening`) over every cell of every good image. A part whose look depends on the position (a printed
label, a machined plate) gets one Gaussian per cell instead (``per_position``, as PaDiM models each patch
position): a missing print's or a shifted ink's change of tone where the print should be. A cell's distance is
its Mahalanobis distance; the image's the largest over its cells, as for the backbone's levels.

Cheap: each frame is averaged once into 8 x 8 px blocks (and its squares), the windows are box filters over the
blocks. Computed in numpy, f32, beside the scoring graph, whatever the scorer's precision (the spread is a
difference of squares, which bf16 would not carry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.anomaly.patchcore import WHITEN_SHRINKAGE, fold_of, shrunk_inverse_root, whitening

#: The windows, in grid cells (odd: centred on a cell of the fine grid; 24 and 56 px at stride 8).
WINDOWS = (3, 7)
#: Block rows averaged at a time (`tone_features`): 4 x 8 px rows of a 320 px colour frame in f32, 123 kB.
STRIP_BLOCKS = 4
#: The pad value the frames are letterboxed with (`images.letterboxed`): blocks padded in every good image are
#: not the product, and no window that touches one is scored.
PAD = 114
#: The covariance's shrinkage towards its mean variance: one Gaussian for all positions (a texture) as the whitened
#: levels' (`patchcore.WHITEN_SHRINKAGE`, from some 200 x 1000 cells); one per position from about 180 good images
#: each (a fold's): more. Validation split, label, f32 numpy, the tone level beside the model: shrinkage 0.01 -> 0.1
#: false reject 1.5% -> 1.0%, escape 3.0% -> 4.0% (the model alone 1.0%, 6.5%); label Mono8 1.0% -> 0.5%, 25.0 -> 24.5%.
POSITION_SHRINKAGE = 0.1
TONE_RULE = ("each cell's per-channel mean and standard deviation over windows of {windows} cells centred on it; "
             "distance = the Mahalanobis distance to the good cells' Gaussian ({gaussians}), its covariance shrunk "
             "by {shrinkage:g} towards its mean variance; image = the largest over the scored cells")


@dataclass(frozen=True)
class ToneLevel:
    """A taught tone level (the card's ``[tone]``).

    Args:
        stride: The grid's cell size in px (the fine level's grid stride).
        windows: Window sides in cells (odd).
        channels: 1 (every good image grey: the first channel) or 3.
        transform: (D + 1, D) whitening of the good cells' features (`patchcore.whitening`), D = channels x
            windows x 2; per position (a part), one per scored cell: (rows, columns, D + 1, D).
        cells: (row0, col0, row1, col1): the grid cells scored, row1 and col1 excluded.
        raw_threshold: The distance that maps to score 1.0.
    """

    stride: int
    windows: tuple[int, ...]
    channels: int
    transform: np.ndarray
    cells: tuple[int, int, int, int]
    raw_threshold: float = 1.0

    @property
    def dims(self) -> int:
        return self.channels * len(self.windows) * 2

    @property
    def per_position(self) -> bool:
        """One Gaussian per cell (a part), not one for all (a texture)."""
        return self.transform.ndim == 4

    def maps(self, batch_u8: np.ndarray) -> np.ndarray:
        """(N, gh, gw) float32 score maps of a letterboxed u8 batch: distance / ``raw_threshold`` in the scored
        cells, 0 elsewhere."""
        return score_maps(tone_features(batch_u8, self.stride, self.windows, self.channels), self.transform,
                          self.cells) / np.float32(self.raw_threshold)


def tone_features(batch_u8: np.ndarray, stride: int, windows: tuple[int, ...] = WINDOWS, channels: int = 3
                  ) -> np.ndarray:
    """(N, gh, gw, D) float32: per cell, per channel, the mean and standard deviation over each window centred on
    it (D = channels x windows x 2). Cells whose window leaves the frame hold a reflected window's (never scored:
    `scored_cells`)."""
    import cv2

    n, h, w, _ = batch_u8.shape
    gh, gw = h // stride, w // stride
    out = np.empty((n, gh, gw, channels * len(windows) * 2), np.float32)
    means = np.empty((gh, gw, channels), np.float32)
    squares = np.empty_like(means)
    for i in range(n):
        # each block's mean and its squares' (an area resize at a whole factor averages each block exactly), a strip
        # of `STRIP_BLOCKS` block rows at a time: small f32 copies (a whole frame at once measured the same in the
        # bench; the slowdown suspected of it was BLAS's threads, see `score_maps`)
        for r0 in range(0, gh, STRIP_BLOCKS):
            r1 = min(gh, r0 + STRIP_BLOCKS)
            x = batch_u8[i, r0 * stride:r1 * stride, :gw * stride, :channels].astype(np.float32)
            means[r0:r1] = cv2.resize(x, (gw, r1 - r0), interpolation=cv2.INTER_AREA).reshape(r1 - r0, gw, channels)
            np.multiply(x, x, out=x)
            squares[r0:r1] = cv2.resize(x, (gw, r1 - r0), interpolation=cv2.INTER_AREA).reshape(r1 - r0, gw, channels)
        # each window's as the mean of its blocks' (all of one size)
        for j, k in enumerate(windows):
            mean = cv2.boxFilter(means, -1, (k, k), borderType=cv2.BORDER_REFLECT).reshape(gh, gw, channels)
            square = cv2.boxFilter(squares, -1, (k, k), borderType=cv2.BORDER_REFLECT).reshape(gh, gw, channels)
            at = 2 * channels * j
            out[i, :, :, at:at + channels] = mean
            out[i, :, :, at + channels:at + 2 * channels] = np.sqrt(np.maximum(square - mean * mean, 0.0))
    return out


def grey_only(features: np.ndarray) -> np.ndarray:
    """Features of 3 channels (`tone_features`) cut to the first channel's, as ``channels=1`` computes them (every
    good image grey: the three alike)."""
    return np.ascontiguousarray(features[..., ::3])


def scored_cells(content: np.ndarray, windows: tuple[int, ...] = WINDOWS) -> tuple[int, int, int, int] | None:
    """The cells scored: those whose largest window lies wholly on the frame's content, ``content`` (gh, gw) bool
    per block (False: padded in every good image), its bounding rectangle; None where no cell is left."""
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if not len(rows) or not len(cols):
        return None
    half = max(windows) // 2
    r0, r1, c0, c1 = int(rows[0]) + half, int(rows[-1]) + 1 - half, int(cols[0]) + half, int(cols[-1]) + 1 - half
    return (r0, c0, r1, c1) if r1 > r0 and c1 > c0 else None


def content_blocks(batch_u8: np.ndarray, stride: int) -> np.ndarray:
    """(gh, gw) bool: the blocks of a batch without a pixel at the pad value in every frame of it (a letterbox's
    bars and the blocks they cut); a set's: OR over its batches."""
    _, h, w, _ = batch_u8.shape
    gh, gw = h // stride, w // stride
    padded = (batch_u8[:, :gh * stride, :gw * stride] == PAD).all(axis=(0, 3))
    return ~padded.reshape(gh, stride, gw, stride).any(axis=(1, 3))


def _inside(features: np.ndarray, cells: tuple[int, int, int, int]) -> np.ndarray:
    r0, c0, r1, c1 = cells
    return features[:, r0:r1, c0:c1]


def score_maps(features: np.ndarray, transform: np.ndarray, cells: tuple[int, int, int, int]) -> np.ndarray:
    """(N, gh, gw) float32 Mahalanobis distances of ``features`` (`tone_features`) in ``cells``, 0 elsewhere."""
    out = np.zeros(features.shape[:3], np.float32)
    r0, c0, r1, c1 = cells
    # x W - mean W (`patchcore.whitened`) by einsum's own loops, not a BLAS product: beside the scoring graph, a
    # multithreaded BLAS's threads spun on the cores the graph's streams use (the anomaly model's time 3.4 -> 4.6 ms
    # a frame in `inspector bench`, for a product of a few thousand rows by 12 x 12)
    inside = _inside(features, cells)
    if transform.ndim == 4:  # one per cell
        z = np.einsum("nhwi,hwij->nhwj", inside, transform[:, :, 1:].astype(np.float32)) - transform[:, :, 0]
    else:
        z = np.einsum("...i,ij->...j", inside, transform[1:].astype(np.float32)) - transform[0]
    out[:, r0:r1, c0:c1] = np.sqrt(np.einsum("...i,...i->...", z, z))
    return out


def fit(features: np.ndarray, cells: tuple[int, int, int, int], per_position: bool = False) -> np.ndarray:
    """The (D + 1, D) whitening of the good images' scored cells (`patchcore.whitening`); ``per_position``: one per
    cell, (rows, columns, D + 1, D), each of that cell's good features, shrunk by `POSITION_SHRINKAGE`."""
    inside = _inside(features, cells)
    if not per_position:
        return whitening(inside.reshape(-1, inside.shape[-1]))
    x = inside.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = np.einsum("nhwi,nhwj->hwij", centred, centred) / len(x)
    root = shrunk_inverse_root(cov, POSITION_SHRINKAGE)
    first = np.einsum("hwi,hwij->hwj", mean, root)[:, :, None]
    return np.concatenate([first, root], axis=2).astype(np.float32)


def cross_validated_scores(features: np.ndarray, cells: tuple[int, int, int, int], per_position: bool = False,
                           seen: np.ndarray | None = None) -> np.ndarray:
    """(N,) each good image's largest scored cell's distance to a Gaussian fitted without its fold
    (`patchcore.fold_of`, as the backbone's levels' threshold scores); ``seen``: (N, gh, gw), each image's cells
    that count (an aligned part's: `alignment.seen_cells`), None: all."""
    folds = fold_of(len(features))
    out = np.empty(len(features), np.float64)
    for f in np.unique(folds):
        inside = folds == f
        transform = fit(features[~inside], cells, per_position)
        maps = score_maps(features[inside], transform, cells)
        if seen is not None:
            maps = maps * seen[inside]
        out[inside] = maps.reshape(int(inside.sum()), -1).max(axis=1)
    return out


def card_table(level: ToneLevel, file: str, sha256: str) -> dict[str, Any]:
    """The card's ``[tone]`` table."""
    return {"file": file, "sha256": sha256, "stride": level.stride, "windows": list(level.windows),
            "channels": level.channels, "cells": list(level.cells), "raw": float(level.raw_threshold),
            "per_position": level.per_position,
            "rule": TONE_RULE.format(windows=" and ".join(map(str, level.windows)),
                                     gaussians="one per cell: a part" if level.per_position
                                     else "one for all positions: a stationary texture",
                                     shrinkage=POSITION_SHRINKAGE if level.per_position else WHITEN_SHRINKAGE)}
