from __future__ import annotations

import pytest

from inspector.pipeline.results import Detection, Verdict
from inspector.pipeline.verdict import VerdictRules


def det(cls: str, score: float, box=(10, 10, 30, 30), cid: int = 0) -> Detection:
    return Detection(*box, class_id=cid, score=score, class_name=cls)


@pytest.mark.parametrize(
    ("rules", "detections", "verdict", "rule"),
    [
        (VerdictRules(), [], Verdict.OK, "no defect"),
        (VerdictRules(0.5), [det("scratch", 0.4)], Verdict.OK, "no defect"),
        (VerdictRules(0.5), [det("scratch", 0.6)], Verdict.NG, "scratch>=0.50"),
        (VerdictRules(0.5, {"dent": 0.8}), [det("dent", 0.7)], Verdict.OK, "no defect"),
        (VerdictRules(0.5, {"dent": 0.8}), [det("dent", 0.7), det("crack", 0.55)], Verdict.NG, "crack>=0.50"),
        (VerdictRules(0.3, min_area_px=500), [det("dent", 0.9)], Verdict.OK, "no defect"),  # 20x20 = 400 px
        (VerdictRules(0.3, roi=(100, 100, 200, 200)), [det("dent", 0.9)], Verdict.OK, "no defect"),
        (VerdictRules(0.3, roi=(0, 0, 50, 50)), [det("dent", 0.9)], Verdict.NG, "dent>=0.30"),
        (VerdictRules(0.3, ignore_classes=frozenset({"dent"})), [det("dent", 0.9)], Verdict.OK, "no defect"),
    ],
)
def test_rules(rules, detections, verdict, rule) -> None:
    v, r, counted, rejected = rules.decide(detections)
    assert (v, r) == (verdict, rule)
    assert len(counted) + len(rejected) == len(detections)


def test_detection_validates_its_box_and_score() -> None:
    with pytest.raises(ValueError, match="xyxy"):
        Detection(30, 10, 10, 30, 0, 0.5)
    with pytest.raises(ValueError, match="score"):
        Detection(10, 10, 30, 30, 0, 1.5)
