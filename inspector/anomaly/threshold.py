"""Where the verdict flips: a threshold from the good images' leave-one-out scores, refined by a few NG ones.

Every teaching image is scored against the memory bank without the rows it contributed
(`patchcore.leave_one_out_scores`), so all of them, not a held-out fifth, tell how far an unseen good part
lies from the bank. Scores are normalised so that the threshold is 1.0: ``score = distance / raw_threshold``;
a frame is NG at ``score >= 1.0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The good-only rule: the good images' leave-one-out median + this many robust standard deviations (1.4826 x
#: the median absolute deviation), a margin in units of the good scores' own spread. Chosen on the validation
#: split (benchmarks/anomaly.py --split validation: 200 taught, test seeds 200000-200399; six sets, three
#: families in colour and Mono8) as the smallest margin whose false reject stayed <= 0.5% (half the 1% target,
#: since 200 good images measure a rate to about +-0.7%) on every set; false reject / escape there, fabric,
#: label, plate (colour): 4.5 sigma 0% / 51%, 0.5% / 27%, 0% / 3.0%; 4 sigma 0% / 48%, 1.0% / 21.5%, 0% / 2.0%;
#: 3.5 sigma 0% / 41%, 1.0% / 17%, 0.5% / 1.5%; the rule before (the larger of the highest leave-one-out
#: score and median + 5 sigma) 0% / 67.5%, 0% / 31.5%, 0% / 3.0%: its floor, the highest score, is one outlying
#: taught image (fabric: 1.152 where the held-out good parts' highest was 1.023).
GOOD_SPREAD = 4.5
#: Reported beside the rule (the card's ``good_quantile``): this quantile of the leave-one-out scores.
GOOD_QUANTILE = 1.0
#: With NG images the threshold may come down to median + this many robust sigmas, never lower (false rejects on
#: the validation split <= 1.0% at 3.5 sigma, up to 1.5% at 3).
BAD_FLOOR_SPREAD = 3.5

GOOD_RULE = (f"raw = the good images' leave-one-out raw scores' median + {GOOD_SPREAD:g} x 1.4826 x their median "
             "absolute deviation; score = raw distance / raw, NG at score >= 1.0")
BAD_RULE = (f"with NG images: the good-only raw, lowered to the midpoint between median + {BAD_FLOOR_SPREAD:g} robust "
            f"sigmas of the good leave-one-out scores and the lowest NG score where that is lower (never below "
            f"median + {BAD_FLOOR_SPREAD:g} sigmas); score = raw distance / raw, NG at >= 1.0")


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
    raw = _above_ties(g, float(np.median(g)) + GOOD_SPREAD * robust_sigma(g))
    return Threshold(raw, GOOD_RULE, float(np.quantile(g, GOOD_QUANTILE)))


def with_bad(good_raw: np.ndarray, bad_raw: np.ndarray) -> Threshold:
    """The threshold refined with NG scores (`BAD_RULE`): lower where an NG image scores under the good-only
    threshold, never below the floor that keeps false rejects <= 1%."""
    base = good_only(good_raw)
    g = np.asarray(good_raw, np.float64)
    floor = float(np.median(g)) + BAD_FLOOR_SPREAD * robust_sigma(g)
    lowest = float(np.min(bad_raw))
    raw = _above_ties(g, max(floor, min(base.raw, 0.5 * (floor + lowest))))
    return Threshold(raw, BAD_RULE, base.good_quantile, lowest)


def _above_ties(good: np.ndarray, raw: float) -> float:
    """``raw``, stepped just above it where it sits exactly on a good score (score >= 1.0 would call it NG)."""
    return float(np.nextafter(raw, np.inf)) if bool(np.any(good == raw)) else raw
