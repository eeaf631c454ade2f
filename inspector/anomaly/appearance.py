"""The appearance level: an aligned part's whole look, as a subspace of its good parts' (eigen-images of block means).

The backbone's levels and the tone level judge each patch, or each cell's neighbourhood, by what good parts showed
there. A part's look also holds together across the part: the same print density darkens the logo and the text
alike, the lamp lights both. A logo printed in another ink whose grey a good logo can have at another density
(label Mono8's colour shift) is normal in every patch and wrong only beside the rest of the part.

Each aligned frame is averaged into 8 x 8 px blocks (per channel), the scored cells' only (the frame's edge cells,
where a part's outline moves with the warp's last px, are left out of everything here); the good parts' block-mean
vectors lie near a
low-dimensional subspace (the lamp's gain and gradient, the paper's shade, the ink's density, ...), found by
principal components (`COMPONENTS`). A frame's residual, its block means less their projection on that subspace, is
what the good parts' common factors cannot explain. Each cell's residual energy (over channels) is summed over 3 x 3
cells (`SMOOTH`), its square root divided by that cell's scale: the root mean square of the good parts'
cross-validated residuals there (each image against components fitted without its fold, `patchcore.fold_of`), no
scale under half their median. Classical eigen-image inspection of aligned parts; only where teaching aligned the
part (a texture has no whole look to hold).

Computed in numpy, f32, beside the scoring graph (in the tone level's thread), whatever the scorer's precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.anomaly.patchcore import fold_of

#: Principal components kept (at most a quarter of the images each fold's fit sees). Chosen by a prototype on fresh
#: parts, label Mono8 (600 good, 1000 anomalous, seeds 700000-701599; its own threshold beside the model's unchanged
#: one, docs/anomaly.md "An appearance level"): 16, 24, 32, 48 components: false reject 0.5, 0.8, 1.0, 0.8%, escape 2.7,
#: 2.2, 2.0, 1.6% (the model alone 0%, 15.6%). As built (one threshold over all the levels): 0%, 0.2%.
COMPONENTS = 32
#: Cells whose residual energy is summed around each (a side, odd): a shifted ink covers many.
SMOOTH = 3
#: No cell's scale is under this share of the cells' median (a cell every good part fills alike, a letterbox's bar,
#: would otherwise make rounding an anomaly).
SCALE_FLOOR = 0.5
APPEARANCE_RULE = ("each aligned frame's {stride} px block means, less their projection on the first {components} "
                   "principal components of the good parts'; each cell's residual energy summed over {smooth} x "
                   "{smooth} cells, its root / that cell's root mean square of the good parts' cross-validated "
                   "residuals; image = the largest over the scored cells")


def block_means(batch_u8: np.ndarray, stride: int, channels: int = 3) -> np.ndarray:
    """(N, gh, gw, channels) float32: each ``stride`` px block's mean per channel (the first ``channels``)."""
    import cv2

    n, h, w, _ = batch_u8.shape
    gh, gw = h // stride, w // stride
    out = np.empty((n, gh, gw, channels), np.float32)
    for i in range(n):
        x = batch_u8[i, :gh * stride, :gw * stride, :channels].astype(np.float32)
        out[i] = cv2.resize(x, (gw, gh), interpolation=cv2.INTER_AREA).reshape(gh, gw, channels)
    return out


def components(blocks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), components (k', D)) of the good parts' block means ``blocks`` (N, gh, gw, C), D = gh x gw x C;
    k' = k, at most N - 1."""
    x = blocks.reshape(len(blocks), -1).astype(np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean.astype(np.float32), np.ascontiguousarray(vt[:max(1, min(k, len(x) - 1))], np.float32)


def residual_maps(blocks: np.ndarray, mean: np.ndarray, basis: np.ndarray, smooth: int = SMOOTH) -> np.ndarray:
    """(N, rows, columns) float32: each cell's residual off the subspace, the root of its energy summed over ``smooth``
    x ``smooth`` cells (of ``blocks``: the scored cells'; none beyond them)."""
    import cv2

    n, gh, gw, c = blocks.shape
    centred = blocks.reshape(n, -1) - mean
    # einsum's own loops, not a BLAS product: beside the scoring graph a multithreaded BLAS's threads spin on the
    # cores the graph's streams use (see `tone.score_maps`)
    coords = np.einsum("nd,kd->nk", centred, basis)
    residual = centred - np.einsum("nk,kd->nd", coords, basis)
    energy = np.einsum("nhwc,nhwc->nhw", residual.reshape(n, gh, gw, c), residual.reshape(n, gh, gw, c))
    if smooth > 1:
        energy = np.stack([cv2.boxFilter(e, -1, (smooth, smooth), normalize=False, borderType=cv2.BORDER_CONSTANT)
                           for e in energy])
    return np.sqrt(np.maximum(energy, 0.0)).astype(np.float32)


def _placed(maps: np.ndarray, cells: tuple[int, int, int, int], grid: tuple[int, int]) -> np.ndarray:
    """(N, gh, gw): the scored ``cells``' maps (N, rows, columns) on the whole grid, 0 elsewhere."""
    r0, c0, r1, c1 = cells
    out = np.zeros((len(maps), *grid), np.float32)
    out[:, r0:r1, c0:c1] = maps
    return out


def kept_components(n: int, k: int) -> int:
    """Components kept for ``n`` good images: ``k``, at most a quarter of the fewest images a fold's fit sees (the
    images outside the largest fold of `patchcore.fold_of`)."""
    return max(1, min(k, (n - int(np.bincount(fold_of(n)).max())) // 4))


def cross_validated_maps(blocks: np.ndarray, k: int, smooth: int = SMOOTH) -> np.ndarray:
    """(N, gh, gw) each good image's residual maps against ``k`` components fitted without its fold
    (`patchcore.fold_of`, as the other levels' threshold scores)."""
    folds = fold_of(len(blocks))
    out = np.empty(blocks.shape[:3], np.float32)
    for f in np.unique(folds):
        inside = folds == f
        mean, basis = components(blocks[~inside], k)
        out[inside] = residual_maps(blocks[inside], mean, basis, smooth)
    return out


def cell_scales(maps: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
    """(rows, columns) each scored cell's root mean square of the good parts' residual ``maps`` (N, rows, columns; its
    seen images' only, ``seen``: (N, rows, columns) or None: all), none under `SCALE_FLOOR` x their median."""
    weights = np.ones_like(maps) if seen is None else seen.astype(np.float32)
    rms = np.sqrt((maps * maps * weights).sum(axis=0) / np.maximum(weights.sum(axis=0), 1.0))
    return np.maximum(rms, SCALE_FLOOR * float(np.median(rms))).astype(np.float32)


@dataclass(frozen=True)
class AppearanceLevel:
    """A taught appearance level (the card's ``[appearance]``).

    Args:
        stride: The blocks' side in px (the first level's grid stride).
        channels: 1 (every good image grey) or 3.
        mean: (D,) the good parts' mean block means, D = rows x columns x channels of the scored cells.
        basis: (K, D) principal components.
        scale: (rows, columns) each scored cell's residual scale (`cell_scales`).
        cells: (row0, col0, row1, col1): the grid cells scored, row1 and col1 excluded (the level sees no other).
        smooth: Cells summed around each (`SMOOTH`).
        raw_threshold: The scaled residual that maps to score 1.0.
    """

    stride: int
    channels: int
    mean: np.ndarray
    basis: np.ndarray
    scale: np.ndarray
    cells: tuple[int, int, int, int]
    smooth: int = SMOOTH
    raw_threshold: float = 1.0

    def scaled(self, batch_u8: np.ndarray) -> np.ndarray:
        """(N, gh, gw) float32 residuals / each cell's scale of a letterboxed (aligned) u8 batch, 0 outside ``cells``."""
        r0, c0, r1, c1 = self.cells
        blocks = block_means(batch_u8, self.stride, self.channels)
        grid = blocks.shape[1:3]
        maps = residual_maps(blocks[:, r0:r1, c0:c1], self.mean, self.basis, self.smooth) / self.scale
        return _placed(maps, self.cells, grid)

    def maps(self, batch_u8: np.ndarray) -> np.ndarray:
        """(N, gh, gw) float32 score maps: `scaled` / ``raw_threshold``."""
        return self.scaled(batch_u8) / np.float32(self.raw_threshold)

    def packed(self) -> np.ndarray:
        """The mean, the components and the scales as one float32 vector (the card's file)."""
        return np.concatenate([self.mean.ravel(), self.basis.ravel(), self.scale.ravel()]).astype(np.float32)

    def card_table(self, file: str, sha256: str) -> dict[str, Any]:
        """The card's ``[appearance]`` table."""
        return {"file": file, "sha256": sha256, "stride": self.stride, "channels": self.channels,
                "components": len(self.basis), "smooth": self.smooth, "cells": list(self.cells),
                "raw": float(self.raw_threshold),
                "rule": APPEARANCE_RULE.format(stride=self.stride, components=len(self.basis), smooth=self.smooth)}


def teach(blocks: np.ndarray, stride: int, cells: tuple[int, int, int, int], seen: np.ndarray | None = None,
          k: int | None = None) -> tuple[AppearanceLevel, np.ndarray]:
    """The appearance level of the good parts' aligned ``blocks`` (N, gh, gw, C; `block_means` of ``stride`` px),
    taught and scored in ``cells`` (``seen``: (N, gh, gw) each image's cells the camera saw, None: all), and its (N,)
    cross-validated image scores (the largest scaled cell; the threshold's, as the other levels'); ``k``: components
    (None: `COMPONENTS`)."""
    r0, c0, r1, c1 = cells
    inside = blocks[:, r0:r1, c0:c1]
    seen_inside = None if seen is None else seen[:, r0:r1, c0:c1]
    kept = kept_components(len(blocks), COMPONENTS if k is None else k)
    maps = cross_validated_maps(inside, kept)
    scale = cell_scales(maps, seen_inside)
    scaled = maps / scale * (1.0 if seen_inside is None else seen_inside)
    mean, basis = components(inside, kept)
    level = AppearanceLevel(stride, blocks.shape[3], mean, basis, scale, cells)
    return level, scaled.reshape(len(blocks), -1).max(axis=1).astype(np.float64)
