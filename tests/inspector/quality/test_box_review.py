"""Box-by-box review (issue 29.2, engine side): the reviewed boxes stored per inspection, the mark they imply,
the audit through StationControl, and a YOLO export that writes exactly the reviewed boxes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from inspector.access.control import StationControl
from inspector.access.users import PermissionDenied, Role
from inspector.quality.history_export import export_yolo
from inspector.storage.box_review import ReviewedBox, box_reviews, get_box_review, review_mark_for, save_box_review
from inspector.storage.history import HistoryFilter, ReviewRefused, get_inspection, set_review
from tests.inspector.quality.reviewed_history import CLASSES, FOUR_BOXES, SHAPE, ReviewedHistory, write_history

H, W = SHAPE[:2]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[ReviewedHistory]:
    h = write_history(tmp_path)
    yield h
    h.engine.dispose()


def _model_boxes(h: ReviewedHistory) -> list[ReviewedBox]:
    """The NG image's detections, each confirmed as the model drew it."""
    _, dets = get_inspection(h.engine, h.ng_id)
    return [ReviewedBox(d["class_id"], d["class_name"], d["x1"], d["y1"], d["x2"], d["y2"], "confirmed", d["id"])
            for d in dets]


def _yolo(box: tuple[str, float, int, int, int, int]) -> list[float]:
    c, _s, x1, y1, x2, y2 = box
    return _rounded([CLASSES.index(c), (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H])


def _rounded(values: list[float]) -> list[float]:
    return [round(float(v), 5) for v in values]


def _label(out: Path, h: ReviewedHistory, inspection_id: int) -> list[list[float]]:
    row, _ = get_inspection(h.engine, inspection_id)
    text_ = (out / "labels" / f"{row.uid}.txt").read_text()
    return [_rounded([float(v) for v in line.split()]) for line in text_.splitlines()]


def test_rejecting_one_box_of_four_exports_the_other_three(history: ReviewedHistory, tmp_path: Path) -> None:
    boxes = _model_boxes(history)
    wrong = next(i for i, b in enumerate(boxes) if b.class_name == "dent")
    boxes[wrong] = ReviewedBox(**{**boxes[wrong].__dict__, "status": "rejected"})
    assert save_box_review(history.engine, history.ng_id, boxes, "eng", clock=lambda: 123.0) == "confirmed"
    review = get_box_review(history.engine, history.ng_id)
    assert review is not None and (review.reviewed_by, review.reviewed_at) == ("eng", 123.0)
    assert [b.status for b in review.boxes].count("rejected") == 1 and len(review.labels) == 3
    row, _ = get_inspection(history.engine, history.ng_id)
    assert (row.review_mark,) == ("confirmed",)

    res = export_yolo(history.engine, HistoryFilter(), tmp_path / "ds", CLASSES)
    assert (res.images, res.negatives, res.box_reviewed, res.boxes) == (1, 0, 1, 3)
    expected = [_yolo(b) for b in FOUR_BOXES if b[0] != "dent"]
    assert sorted(_label(tmp_path / "ds", history, history.ng_id)) == sorted(expected)


def test_a_whole_image_false_call_still_exports_a_negative(history: ReviewedHistory, tmp_path: Path) -> None:
    set_review(history.engine, history.ng_id, "false_call", "eng")
    res = export_yolo(history.engine, HistoryFilter(), tmp_path / "ds", CLASSES)
    assert (res.images, res.negatives, res.box_reviewed) == (1, 1, 0)
    assert _label(tmp_path / "ds", history, history.ng_id) == []


def test_a_missed_defect_drawn_on_a_kept_ok_image_is_exported(history: ReviewedHistory, tmp_path: Path) -> None:
    set_review(history.engine, history.ok_kept_id, "missed", "eng", need_image=True)
    res = export_yolo(history.engine, HistoryFilter(), tmp_path / "before", CLASSES)
    assert res.images == 0 and len(res.needs_labels) == 1  # no box yet: someone has to draw it
    drawn = ReviewedBox(CLASSES.index("crack"), "crack", 10.0, 12.0, 30.0, 40.0)
    assert save_box_review(history.engine, history.ok_kept_id, [drawn], "eng") == "missed"
    res = export_yolo(history.engine, HistoryFilter(), tmp_path / "after", CLASSES)
    assert (res.images, res.needs_labels, res.boxes) == (1, [], 1)
    assert _label(tmp_path / "after", history, history.ok_kept_id) == [_rounded([2, 20 / W, 26 / H, 20 / W, 28 / H])]


@pytest.mark.parametrize(("verdict", "kept", "mark"), [("NG", True, "confirmed"), ("NG", False, "false_call"),
                                                       ("OK", True, "missed"), ("OK", False, "confirmed")])
def test_the_mark_a_box_review_implies(verdict: str, kept: bool, mark: str) -> None:
    boxes = [ReviewedBox(0, "scratch", 1, 1, 5, 5, "confirmed" if kept else "rejected", 1)]
    assert review_mark_for(verdict, boxes) == mark
    assert review_mark_for(verdict, []) == ("false_call" if verdict == "NG" else "confirmed")


def test_clean_exports_an_empty_label_file(history: ReviewedHistory, tmp_path: Path) -> None:
    assert save_box_review(history.engine, history.ng_id, [], "eng") == "false_call"
    assert save_box_review(history.engine, history.ok_kept_id, [], "eng") == "confirmed"
    res = export_yolo(history.engine, HistoryFilter(), tmp_path / "ds", CLASSES)
    assert (res.images, res.negatives, res.box_reviewed, res.boxes) == (2, 2, 2, 0)
    assert _label(tmp_path / "ds", history, history.ng_id) == []
    assert _label(tmp_path / "ds", history, history.ok_kept_id) == []
    review = get_box_review(history.engine, history.ok_kept_id)
    assert review is not None and review.clean and review.summary() == "clean (no label)"


def test_another_whole_image_mark_replaces_the_box_review_the_same_keeps_it(history: ReviewedHistory) -> None:
    boxes = _model_boxes(history)[:2]
    save_box_review(history.engine, history.ng_id, boxes, "eng")
    set_review(history.engine, history.ng_id, "confirmed", "eng")  # the same mark: the boxes stay
    assert get_box_review(history.engine, history.ng_id) is not None
    set_review(history.engine, history.ng_id, "false_call", "eng")
    assert get_box_review(history.engine, history.ng_id) is None
    save_box_review(history.engine, history.ng_id, boxes, "eng")
    set_review(history.engine, history.ng_id, None, "eng")  # cleared: no labels left either
    assert get_box_review(history.engine, history.ng_id) is None
    with history.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM reviewed_boxes")) == 0


def test_a_second_box_review_replaces_the_first(history: ReviewedHistory) -> None:
    boxes = _model_boxes(history)
    save_box_review(history.engine, history.ng_id, boxes, "eng")
    save_box_review(history.engine, history.ng_id, boxes[:1], "maria")
    review = box_reviews(history.engine, [history.ng_id, history.ok_kept_id])
    assert list(review) == [history.ng_id] and len(review[history.ng_id].boxes) == 1
    assert review[history.ng_id].reviewed_by == "maria"


def test_a_box_review_needs_the_image(history: ReviewedHistory) -> None:
    with pytest.raises(ReviewRefused, match=r"a box review needs the image, and none was kept \(OK images are kept "
                                            r"only as a sample: \[storage\] ok_sample_every\)"):
        save_box_review(history.engine, history.ok_not_kept_id, [], "eng")
    assert get_box_review(history.engine, history.ok_not_kept_id) is None
    with pytest.raises(KeyError):
        save_box_review(history.engine, 999_999, [], "eng")


def test_bad_boxes_are_refused(history: ReviewedHistory) -> None:
    boxes = _model_boxes(history)
    with pytest.raises(ValueError, match="reviewed twice"):
        save_box_review(history.engine, history.ng_id, [boxes[0], boxes[0]], "eng")
    foreign = ReviewedBox(0, "scratch", 1, 1, 9, 9, "edited", 424242)
    with pytest.raises(ValueError, match="detection 424242 is not one of its boxes"):
        save_box_review(history.engine, history.ng_id, [foreign], "eng")
    for kwargs, match in (({"x2": 1.2}, "x2 > x1"), ({"status": "maybe"}, "status"), ({"class_name": " "}, "class"),
                          ({"x1": float("nan")}, "finite"), ({"detection_id": 3}, "drawn box comes from no detection")):
        with pytest.raises(ValueError, match=match):
            ReviewedBox(**{"class_id": 0, "class_name": "scratch", "x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0,
                           **kwargs})
    with pytest.raises(ValueError, match="reviewer"):
        save_box_review(history.engine, history.ng_id, [], " ")
    assert get_box_review(history.engine, history.ng_id) is None


def test_the_reviewed_boxes_go_with_their_inspection(history: ReviewedHistory) -> None:
    save_box_review(history.engine, history.ng_id, _model_boxes(history), "eng")
    with history.engine.begin() as conn:
        conn.execute(text("DELETE FROM inspections WHERE id = :i"), {"i": history.ng_id})
    with history.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM box_reviews")) == 0
        assert conn.scalar(text("SELECT count(*) FROM reviewed_boxes")) == 0


def test_box_reviews_are_permission_checked_and_audited(history: ReviewedHistory) -> None:
    control = StationControl.offline(history.engine)
    control.create_admin("admin-pass")
    control.login("admin", "admin-pass")
    control.add_user("eng", "engineer-pass", Role.ENGINEER)
    control.add_user("op", "operator-pass", Role.OPERATOR)
    control.logout()
    control.login("op", "operator-pass")
    with pytest.raises(PermissionDenied):
        control.review_boxes(history.ng_id, [])
    control.logout()
    control.login("eng", "engineer-pass")
    boxes = _model_boxes(history)
    boxes[1] = ReviewedBox(**{**boxes[1].__dict__, "status": "rejected"})
    assert control.review_boxes(history.ng_id, boxes) == "confirmed"
    entry = control.audit_entries(limit=1)[0]
    assert (entry.user, entry.action) == ("eng", "history.review_boxes")
    assert f"inspection {history.ng_id} (cam1 #7)" == entry.target
    assert entry.old is None and entry.new is not None and entry.new.startswith("confirmed: 3 labels (")
    assert entry.new.endswith("; 1 rejected")
    assert control.review_boxes(history.ng_id, []) == "false_call"
    entry = control.audit_entries(limit=1)[0]
    assert entry.old is not None and entry.old.startswith("confirmed: 3 labels")
    assert entry.new == "false_call: clean (no label)"
    with pytest.raises(ReviewRefused):
        control.review_boxes(history.ok_not_kept_id, [])
