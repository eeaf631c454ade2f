"""Where the verdict flips: a threshold from the good images' leave-one-out scores, refined by a few NG ones.

Every teaching image is scored against the memory bank without the rows it contributed
(`patchcore.leave_one_out_scores`), so all of them, not a held-out fifth, tell how far an unseen good part
lies from the bank. Scores are normalised so that the threshold is 1.0: ``score = distance / raw_threshold``;
a frame is NG at ``score >= 1.0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The good-only rule: the larger of the highest of the good images' leave-one-out scores (an unseen good part
#: scores above the highest of n with chance 1 / (n + 1)) and their median + this many robust standard
#: deviations (1.4826 x the median absolute deviation, a margin in units of the scores' own spread).
#: Chosen on the validation split (benchmarks/anomaly.py --eval --split validation: 200 taught, test seeds
#: 200000-200399; six sets) with the scores of the shipped scorer (int8 on this CPU, the bank and the
#: leave-one-out scores in f32): the smallest false reject <= 1% on every set allows, plus one step of margin
#: (3: plate Mono8 2.0%). The highest cannot go: the int8 scores of good parts lie above the f32 leave-one-out
#: ones, and median + 4.5 sigma alone rejected 4.0% of label Mono8's good parts (0% in f32).
GOOD_SPREAD = 4.0
#: Reported beside the rule (the card's ``good_quantile``), and the floor of both rules.
GOOD_QUANTILE = 1.0

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
    raw = _above_ties(g, max(q, float(np.median(g)) + GOOD_SPREAD * robust_sigma(g)))
    return Threshold(raw, GOOD_RULE, q)


def with_bad(good_raw: np.ndarray, bad_raw: np.ndarray) -> Threshold:
    """The threshold refined with NG scores (`BAD_RULE`): favours no escape while false rejects stay as the
    good-only rule's."""
    base = good_only(good_raw)
    g = np.asarray(good_raw, np.float64)
    lowest = float(np.min(bad_raw))
    raw = _above_ties(g, max(base.good_quantile, min(base.raw, 0.5 * (base.good_quantile + lowest))))
    return Threshold(raw, BAD_RULE, base.good_quantile, lowest)


def _above_ties(good: np.ndarray, raw: float) -> float:
    """``raw``, stepped just above it where it sits exactly on a good score (score >= 1.0 would call it NG)."""
    return float(np.nextafter(raw, np.inf)) if bool(np.any(good == raw)) else raw
