"""Frames the anomaly tests score: smooth 64 x 64 frames with texture (random pixels would be far from any taught
part)."""

from __future__ import annotations

import numpy as np


def smooth_frames(seed: int, n: int = 4) -> np.ndarray:
    """``n`` u8 BGR frames of 8 x 8 px blocks of random colour, with pixel noise."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(40, 220, (n, 8, 8, 3)), np.ones((1, 8, 8, 1)))
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
