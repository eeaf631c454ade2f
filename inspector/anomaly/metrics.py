"""Ranking metrics for anomaly scores: AUROC of images and of pixels, rates at a threshold."""

from __future__ import annotations

import numpy as np


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative
    (ties count half). Mann-Whitney U from ranks, so it takes millions of pixels.

    Raises:
        ValueError: Either set is empty.
    """
    neg = np.asarray(negatives, np.float64).ravel()
    pos = np.asarray(positives, np.float64).ravel()
    if not len(neg) or not len(pos):
        raise ValueError("auroc: needs at least one negative and one positive")
    both = np.concatenate([neg, pos])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both), np.float64)
    sorted_vals = both[order]
    # average ranks over ties
    first = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(both)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = avg[group]
    u = ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(neg) * len(pos)))


def rate_above(scores: np.ndarray, threshold: float) -> float:
    """Share of ``scores`` at or above ``threshold`` (NG verdicts)."""
    s = np.asarray(scores, np.float64)
    return float((s >= threshold).mean()) if len(s) else 0.0
