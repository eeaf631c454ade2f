"""Where the verdict flips: a threshold from the good images' leave-one-out scores, refined by a few NG ones.

Every teaching image is scored against the memory bank without the rows it contributed
(`patchcore.leave_one_out_scores`), so all of them, not a held-out fifth, tell how far an unseen good part
lies from the bank. Scores are normalised so that the threshold is 1.0: ``score = distance / raw_threshold``;
a frame is NG at ``score >= 1.0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The good-only rule: this quantile of the good images' leave-one-out scores (1.0: the highest; an unseen
#: good part of the same kind scores above the highest of n with chance 1 / (n + 1): 0.5% for 200) ...
GOOD_QUANTILE = 1.0
#: ... times (1 + this margin): the taught images are few, their tail is not the line's tail. Measured on the
#: plate family (200 taught, 200 + 200 held-out seeds): quantile 0.99 without margin 2.0% false reject;
#: 1.0 without margin 1.0% false reject, 1.5% escape; 1.0 and 5%: 0.5% false reject, 3.5% escape.
GOOD_MARGIN = 0.05

GOOD_RULE = (f"raw = quantile {GOOD_QUANTILE} of the good images' leave-one-out raw scores x {1 + GOOD_MARGIN:.2f} "
             f"(a {GOOD_MARGIN:.0%} margin); score = raw distance / raw, NG at score >= 1.0")
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


def good_only(good_raw: np.ndarray) -> Threshold:
    """The threshold from good (leave-one-out) scores alone (`GOOD_RULE`)."""
    q = float(np.quantile(np.asarray(good_raw, np.float64), GOOD_QUANTILE))
    return Threshold(q * (1.0 + GOOD_MARGIN), GOOD_RULE, q)


def with_bad(good_raw: np.ndarray, bad_raw: np.ndarray) -> Threshold:
    """The threshold refined with NG scores (`BAD_RULE`): favours no escape while false rejects stay <= 1%."""
    base = good_only(good_raw)
    lowest = float(np.min(bad_raw))
    mid = 0.5 * (base.good_quantile + lowest)
    raw = max(base.good_quantile, min(base.raw, mid))
    # a quantile sitting exactly on a good score would call that image NG (score >= 1.0): step just above it
    raw = float(np.nextafter(raw, np.inf)) if raw == base.good_quantile else raw
    return Threshold(raw, BAD_RULE, base.good_quantile, lowest)
