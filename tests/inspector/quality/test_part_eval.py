"""Part-level evaluation: every face of a part through the runtime path, one verdict per part."""

from __future__ import annotations

from camera.renderer import defective_faces
from inspector.quality.part_eval import LINE_EVAL_SEED_BASE, evaluate_parts


def test_part_rates_count_parts_and_the_sweep_trades_escapes_for_false_rejects() -> None:
    m = evaluate_parts("defect-yolo11p-320", parts=12, faces=4, threshold=0.4)
    truly_bad = sum(bool(defective_faces(LINE_EVAL_SEED_BASE + p, 4)) for p in range(12))
    assert m["defective_parts"] + m["ok_parts"] == 12
    # a part is defective when a face really shows a defect; the renderer may fail to place one
    assert m["defective_parts"] <= truly_bad
    assert 0 <= m["part_escapes"] <= m["defective_parts"] and 0 <= m["part_false_rejects"] <= m["ok_parts"]
    sweep = m["part_threshold_sweep"]
    esc = [r["part_escape_rate"] for r in sweep]
    frr = [r["part_false_reject_rate"] for r in sweep]
    assert esc == sorted(esc) and frr == sorted(frr, reverse=True)
    # with no area or ROI rules, "any face scores >= t" is exactly the verdict rules' NG at t
    at = next(r for r in sweep if abs(r["threshold"] - 0.4) < 1e-9)
    assert at["part_escape_rate"] == m["part_escape_rate"]
    assert at["part_false_reject_rate"] == m["part_false_reject_rate"]


def test_the_class_sweep_moves_one_class_threshold_with_the_others_at_their_rule() -> None:
    m = evaluate_parts("defect-yolo11p-320", parts=12, faces=4, threshold=0.3, class_thresholds={"scratch": 0.5})
    sweep = m["part_class_sweep"]
    assert set(sweep) == {"scratch", "dent", "crack", "contamination"}
    for name, rows in sweep.items():
        esc = [r["part_escapes"] for r in rows]
        fr = [r["part_false_rejects"] for r in rows]
        assert esc == sorted(esc) and fr == sorted(fr, reverse=True)
        # at the class's own threshold the sweep is the evaluated verdict
        own = 0.5 if name == "scratch" else 0.3
        at = next(r for r in rows if abs(r["threshold"] - own) < 1e-9)
        assert (at["part_escapes"], at["part_false_rejects"]) == (m["part_escapes"], m["part_false_rejects"])
        assert at["part_escape_rate"] == m["part_escape_rate"]
