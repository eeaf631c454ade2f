"""Verdict rules per camera: per-class score threshold, minimum area, region of interest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from inspector.pipeline.results import Detection, Verdict


@dataclass(frozen=True)
class VerdictRules:
    """Turns detections into OK/NG.

    A detection counts as a defect when its score reaches its class threshold, its box
    area reaches ``min_area_px`` and its centre lies inside ``roi`` (if set). The part is
    NG when at least one defect counts; the rule that decided names the strongest one.
    """

    default_threshold: float = 0.35
    class_thresholds: dict[str, float] = field(default_factory=dict)
    min_area_px: float = 0.0
    roi: tuple[float, float, float, float] | None = None
    ignore_classes: frozenset[str] = frozenset()

    def threshold_for(self, class_name: str) -> float:
        return self.class_thresholds.get(class_name, self.default_threshold)

    def lowest_threshold(self) -> float:
        """The lowest threshold of any class (what decoding must keep)."""
        return min([self.default_threshold, *self.class_thresholds.values()])

    def as_pairs(self) -> tuple[tuple[str, float], ...]:
        pairs = [("default", self.default_threshold), *sorted(self.class_thresholds.items())]
        if self.min_area_px:
            pairs.append(("min_area_px", self.min_area_px))
        return tuple(pairs)

    def _counts(self, d: Detection) -> bool:
        """Whether ``d`` counts as a defect: not ignored, at its threshold, large enough, inside the ROI."""
        return (d.class_name not in self.ignore_classes and d.score >= self.threshold_for(d.class_name)
                and d.area >= self.min_area_px and (self.roi is None or _inside(d, self.roi)))

    def decide(self, detections: Sequence[Detection]) -> tuple[Verdict, str, tuple[Detection, ...], tuple[Detection, ...]]:
        """Apply the rules.

        Returns:
            ``(verdict, rule, counted, rejected)``.
        """
        counted: list[Detection] = []
        rejected: list[Detection] = []
        for d in detections:
            (counted if self._counts(d) else rejected).append(d)
        if not counted:
            return Verdict.OK, "no defect", (), tuple(rejected)
        top = max(counted, key=lambda d: d.score)
        rule = f"{top.class_name}>={self.threshold_for(top.class_name):.2f}"
        return Verdict.NG, rule, tuple(counted), tuple(rejected)


def anomaly_rule(verdict: Verdict, rule: str, score: float | None, threshold: float, posed: bool = True
                 ) -> tuple[Verdict, str]:
    """Add the anomaly model's rule to a camera's verdict: NG when ``score`` reaches ``threshold``.

    The rule text always carries the score (the database keeps it in the rule column): NG reads
    ``anomaly 1.70 >= 1.00`` (after the detector's rule when both decided NG:
    ``scratch>=0.40; anomaly 1.70 >= 1.00``), OK ``no defect; anomaly 0.42 < 1.00``. ``score`` None
    (no anomaly model) changes nothing; a NaN score (a failed runtime) is NG: fail safe. ``posed`` False: an
    aligned part's model found no pose for the frame (no part, another part, one lying far off, or a defect
    large enough to throw the pose off), and its score was taken where the frame lay: the rule ends
    ``, no part pose``, the verdict still the score's. (Forced NG, it failed parts whose large masked-out
    region alone threw the pose off; a frame without its part scores far above the threshold as it lies.)
    """
    if score is None:
        return verdict, rule
    lost = "" if posed else ", no part pose"
    if score < threshold:
        return verdict, f"{rule}; anomaly {score:.2f} < {threshold:.2f}{lost}"
    text = f"anomaly {score:.2f} >= {threshold:.2f}{lost}"
    return Verdict.NG, f"{rule}; {text}" if verdict is Verdict.NG else text


def _inside(d: Detection, roi: tuple[float, float, float, float]) -> bool:
    cx, cy = (d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2
    return roi[0] <= cx <= roi[2] and roi[1] <= cy <= roi[3]
