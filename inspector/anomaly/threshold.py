"""Where the verdict flips: a threshold from the good images' leave-one-out scores, refined by a few NG ones.

Every teaching image is scored against the memory bank without the rows it contributed
(`patchcore.leave_one_out_scores`), so all of them, not a held-out fifth, tell how far an unseen good part
lies from the bank. Scores are normalised so that the threshold is 1.0: ``score = distance / raw_threshold``;
a frame is NG at ``score >= 1.0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The good-only rule: the larger of this quantile of the good images' leave-one-out scores (1.0: the highest;
#: an unseen good part of the same kind scores above the highest of n with chance 1 / (n + 1): 0.5% for 200) ...
GOOD_QUANTILE = 1.0
#: ... and their median + this many robust standard deviations (1.4826 x the median absolute deviation): a
#: margin that scales with the spread of the good scores, where a fixed 5% margin above the highest was
#: 1.3-1.8 of them. Measured on the three rendered families, colour and Mono8 (200 taught, 200 + 200 held-out
#: seeds; escape good-only, false reject): highest x 1.05 (the rule before) fabric 70% / 59%, label 30.5% /
#: 38%, plate 3.0% / 3.0%, false reject <= 0.5%; this rule 64.5% / 56.5%, 23.5% / 31%, 3.0% / 3.0%, false
#: reject <= 0.5% (0% / 0.5%, 0% / 0%, 0% / 0.5%). The highest alone: plate 1.0% false reject.
GOOD_SPREAD = 5.0

GOOD_RULE = (f"raw = the larger of the good images' leave-one-out raw scores' quantile {GOOD_QUANTILE} and their "
             f"median + {GOOD_SPREAD:g} x 1.4826 x their median absolute deviation; score = raw distance / raw, "
             "NG at score >= 1.0")
BAD_RULE = (f"with NG images: the good-only raw, lowered to the midpoint between the good leave-one-out quantile "
            f"{GOOD_QUANTILE} and the lowest NG score where that is lower (never below that quantile, so false "
            f"rejects stay as the good-only rule's); score = raw distance / raw, NG at >= 1.0")


@dataclass(frozen=True)
class Threshold:
    """A raw threshold and how it was set."""

    raw: float
    rule: str
    good_quantile: float
    lowest_bad: float | None = None


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (the standard deviation, for normal data; a few outliers do not move it)."""
    v = np.asarray(values, np.float64)
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def good_only(good_raw: np.ndarray) -> Threshold:
    """The threshold from good (leave-one-out) scores alone (`GOOD_RULE`)."""
    g = np.asarray(good_raw, np.float64)
    q = float(np.quantile(g, GOOD_QUANTILE))
    raw = max(q, float(np.median(g)) + GOOD_SPREAD * robust_sigma(g))
    # a threshold sitting exactly on a good score would call that image NG (score >= 1.0): step just above it
    raw = float(np.nextafter(raw, np.inf)) if raw == q else raw
    return Threshold(raw, GOOD_RULE, q)


def with_bad(good_raw: np.ndarray, bad_raw: np.ndarray) -> Threshold:
    """The threshold refined with NG scores (`BAD_RULE`): favours no escape while false rejects stay <= 1%."""
    base = good_only(good_raw)
    lowest = float(np.min(bad_raw))
    mid = 0.5 * (base.good_quantile + lowest)
    raw = max(base.good_quantile, min(base.raw, mid))
    # a quantile sitting exactly on a good score would call that image NG (score >= 1.0): step just above it
    raw = float(np.nextafter(raw, np.inf)) if raw == base.good_quantile else raw
    return Threshold(raw, BAD_RULE, base.good_quantile, lowest)
