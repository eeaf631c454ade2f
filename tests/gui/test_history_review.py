"""Review box by box in the history's image view (issue 29.2): confirm or reject each detection, draw, move,
resize and delete boxes with a class, mark an image clean, undo; the YOLO export holds exactly the reviewed boxes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt

from gui.history import HistoryTab
from inspector.storage.box_review import get_box_review
from inspector.storage.history import get_inspection
from tests.gui.conftest import PASSWORDS, FakeStation, make_control
from tests.inspector.quality.reviewed_history import CLASSES, FOUR_BOXES, SHAPE, ReviewedHistory, write_history

H, W = SHAPE[:2]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[ReviewedHistory]:
    h = write_history(tmp_path)
    yield h
    h.engine.dispose()


@pytest.fixture
def tab(qtbot: Any, history: ReviewedHistory) -> HistoryTab:
    control = make_control(FakeStation("cam1"), history.engine)
    control.login("eng", PASSWORDS["eng"])
    t = HistoryTab(control, ["cam1"], CLASSES, default_range=4)  # all time
    qtbot.addWidget(t)
    t.resize(1300, 800)
    t.show()
    t.update_permissions()
    t.apply_filter()
    return t


def _select(qtbot: Any, tab: HistoryTab, inspection_id: int) -> None:
    row = next(i for i, r in enumerate(tab.model.rows) if r.id == inspection_id)
    tab.select_row(row)
    qtbot.waitUntil(lambda: tab.current is not None and tab.current.id == inspection_id, timeout=2000)


def _at(tab: HistoryTab, x: float, y: float) -> QPoint:
    """The widget point over image pixel (x, y)."""
    return tab.image_view.to_widget(x, y).toPoint()


def _drag(qtbot: Any, tab: HistoryTab, a: tuple[float, float], b: tuple[float, float]) -> None:
    canvas = tab.image_view
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=_at(tab, *a))
    qtbot.mouseMove(canvas, _at(tab, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=_at(tab, *b))


def _exported(tab: HistoryTab, history: ReviewedHistory, out: Path, inspection_id: int) -> list[tuple[int, list[float]]]:
    """The label lines of one image in a YOLO export made through the tab: (class, box in image pixels)."""
    tab.export_yolo_to(out)
    row, _ = get_inspection(history.engine, inspection_id)
    lines = []
    for line in (out / "labels" / f"{row.uid}.txt").read_text().splitlines():
        c, cx, cy, w, h = (float(v) for v in line.split())
        lines.append((int(c), [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H]))
    return sorted(lines)


def _near(got: list[float], want: tuple[float, ...] | list[float], px: float = 0.6) -> bool:
    return all(abs(g - w) <= px for g, w in zip(got, want, strict=True))


def test_a_kept_ok_image_marked_missed_with_a_drawn_box_exports_that_box(
    qtbot: Any, tab: HistoryTab, history: ReviewedHistory, tmp_path: Path
) -> None:
    """Done-when 1: an OK image kept (ok_sample_every) -> marked missed defect -> a box drawn -> exported."""
    _select(qtbot, tab, history.ok_kept_id)
    assert tab.image_view.image is not None and tab.image_view.items == []
    qtbot.mouseClick(tab.review_buttons["missed"], Qt.MouseButton.LeftButton)
    assert get_inspection(history.engine, history.ok_kept_id)[0].review_mark == "missed"
    assert tab.export_yolo_to(tmp_path / "before") == 0  # no box yet: listed as needing labels
    assert (tmp_path / "before" / "needs_labels.txt").is_file()

    canvas = tab.image_view
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_3)  # crack
    qtbot.keyClick(canvas, Qt.Key.Key_N)  # new box
    assert canvas.drawing
    _drag(qtbot, tab, (12.0, 10.0), (40.0, 34.0))
    assert not canvas.drawing and len(canvas.items) == 1 and canvas.dirty
    qtbot.keyClick(tab, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # save
    qtbot.waitUntil(lambda: get_box_review(history.engine, history.ok_kept_id) is not None, timeout=2000)
    assert get_inspection(history.engine, history.ok_kept_id)[0].review_mark == "missed"

    labels = _exported(tab, history, tmp_path / "after", history.ok_kept_id)
    assert len(labels) == 1 and labels[0][0] == CLASSES.index("crack")
    assert _near(labels[0][1], (12.0, 10.0, 40.0, 34.0)), labels
    assert not (tmp_path / "after" / "needs_labels.txt").exists()
    entry = next(e for e in tab.control.audit_entries(limit=5) if e.action == "history.review_boxes")
    assert (entry.user, entry.old, entry.new) == ("eng", "missed", "missed: 1 label (crack); 1 drawn")


def test_rejecting_one_box_of_four_keeps_the_other_three(
    qtbot: Any, tab: HistoryTab, history: ReviewedHistory, tmp_path: Path
) -> None:
    """Done-when 2: one wrong box of four rejected -> the export keeps the other three."""
    _select(qtbot, tab, history.ng_id)
    canvas = tab.image_view
    assert len(canvas.items) == 4
    _c, _s, x1, y1, x2, y2 = next(b for b in FOUR_BOXES if b[0] == "dent")
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_at(tab, (x1 + x2) / 2, (y1 + y2) / 2))
    assert canvas.selected is not None and canvas.items[canvas.selected].class_name == "dent"
    qtbot.keyClick(canvas, Qt.Key.Key_Delete)
    assert [b.status for b in canvas.items].count("rejected") == 1
    qtbot.mouseClick(tab.box_buttons["save"], Qt.MouseButton.LeftButton)
    row, _ = get_inspection(history.engine, history.ng_id)
    assert row.review_mark == "confirmed"  # the NG verdict was right: three real defects

    labels = _exported(tab, history, tmp_path / "ds", history.ng_id)
    want = sorted((CLASSES.index(c), [x1_, y1_, x2_, y2_]) for c, _s, x1_, y1_, x2_, y2_ in FOUR_BOXES if c != "dent")
    assert [c for c, _ in labels] == [c for c, _ in want]
    assert all(_near(g, w) for (_, g), (_, w) in zip(labels, want, strict=True)), labels
    # the saved review comes back on the canvas: the rejected box shown as rejected
    _select(qtbot, tab, history.ok_kept_id)
    _select(qtbot, tab, history.ng_id)
    assert sorted(b.status for b in tab.image_view.items) == ["confirmed", "confirmed", "confirmed", "rejected"]
    assert "3 labels" in tab.info.text() and "1 rejected" in tab.info.text()


def test_move_resize_class_and_undo_with_mouse_and_keys(qtbot: Any, tab: HistoryTab, history: ReviewedHistory) -> None:
    _select(qtbot, tab, history.ng_id)
    canvas = tab.image_view
    i = next(k for k, b in enumerate(canvas.items) if b.class_name == "crack")  # 50, 30, 70, 50
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_at(tab, 60, 40))
    assert canvas.selected == i
    _drag(qtbot, tab, (60.0, 40.0), (55.0, 36.0))  # move by (-5, -4)
    b = canvas.items[i]
    assert b.status == "edited" and _near([b.x1, b.y1, b.x2, b.y2], (45, 26, 65, 46))
    _drag(qtbot, tab, (65.0, 46.0), (75.0, 56.0))  # the bottom-right corner: resize
    b = canvas.items[i]
    assert _near([b.x1, b.y1, b.x2, b.y2], (45, 26, 75, 56))
    qtbot.keyClick(canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)  # 10 px right, stays on the image
    b = canvas.items[i]
    assert _near([b.x1, b.x2], (50, 80))
    qtbot.keyClick(canvas, Qt.Key.Key_4)  # contamination
    assert canvas.items[i].class_name == "contamination" and tab.class_combo.currentIndex() == 3
    for _ in range(4):
        qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    b = canvas.items[i]
    assert (b.status, b.class_name, b.x1, b.y1, b.x2, b.y2) == ("pending", "crack", 50, 30, 70, 50)
    assert not canvas.undo()  # nothing left to take back
    qtbot.keyClick(canvas, Qt.Key.Key_R)  # rejected, then given another class: still rejected
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert (canvas.items[i].status, canvas.items[i].class_name, canvas.items[i].kept) == ("rejected", "dent", False)
    qtbot.keyClick(canvas, Qt.Key.Key_A)  # confirmed again, with the class it was given
    assert (canvas.items[i].status, canvas.items[i].kept) == ("confirmed", True)
    # a drawn box deleted is gone; a detection deleted stays on record as rejected
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    _drag(qtbot, tab, (2.0, 2.0), (9.0, 9.0))
    assert len(canvas.items) == 5 and canvas.items[-1].status == "drawn"
    qtbot.keyClick(canvas, Qt.Key.Key_Delete)
    assert len(canvas.items) == 4
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    _drag(qtbot, tab, (2.0, 2.0), (2.3, 2.2))  # a click, not a box
    assert len(canvas.items) == 4


def test_mark_clean_exports_an_empty_label_file(qtbot: Any, tab: HistoryTab, history: ReviewedHistory, tmp_path: Path) -> None:
    _select(qtbot, tab, history.ng_id)
    qtbot.mouseClick(tab.box_buttons["clean"], Qt.MouseButton.LeftButton)
    row, _ = get_inspection(history.engine, history.ng_id)
    assert row.review_mark == "false_call"
    assert _exported(tab, history, tmp_path / "ds", history.ng_id) == []
    assert tab.model.rows[[r.id for r in tab.model.rows].index(history.ng_id)].review_mark == "false_call"
    _select(qtbot, tab, history.ok_kept_id)
    canvas = tab.image_view
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_C)  # clean: on an OK image, the verdict confirmed
    assert tab.save_boxes()
    assert "confirmed OK (clean)" in tab.info.text()


def test_a_box_review_needs_the_image_and_an_engineer(qtbot: Any, tab: HistoryTab, history: ReviewedHistory) -> None:
    _select(qtbot, tab, history.ok_not_kept_id)
    assert tab.image_view.image is None and not tab.image_view.editable
    assert all(not b.isEnabled() and "no image kept" in b.toolTip() for b in tab.box_buttons.values())
    with qtbot.waitSignal(tab.message) as msg:
        assert not tab.review("missed")
    assert "none was kept (OK images are kept only as a sample: [storage] ok_sample_every)" in msg.args[0]
    tab.control.logout()
    tab.control.login("op", PASSWORDS["op"])
    tab.update_permissions()
    _select(qtbot, tab, history.ng_id)
    assert not tab.image_view.editable
    assert all(not b.isEnabled() and "needs the engineer role" in b.toolTip() for b in tab.box_buttons.values())
    tab.image_view.setFocus()
    qtbot.keyClick(tab.image_view, Qt.Key.Key_C)  # keys do nothing for an operator
    assert all(b.status == "pending" for b in tab.image_view.items)
    with qtbot.waitSignal(tab.message) as msg:
        assert not tab.save_boxes()
    assert "history.review" in msg.args[0]
    assert get_box_review(history.engine, history.ng_id) is None


def test_missed_after_drawing_saves_the_drawn_boxes(qtbot: Any, tab: HistoryTab, history: ReviewedHistory, tmp_path: Path) -> None:
    """Either order works: draw first, then "Missed defect" saves the boxes with the mark."""
    _select(qtbot, tab, history.ok_kept_id)
    qtbot.mouseClick(tab.box_buttons["new"], Qt.MouseButton.LeftButton)
    _drag(qtbot, tab, (20.0, 20.0), (30.0, 28.0))
    qtbot.mouseClick(tab.review_buttons["missed"], Qt.MouseButton.LeftButton)
    review = get_box_review(history.engine, history.ok_kept_id)
    assert review is not None and len(review.labels) == 1 and review.labels[0].class_name == CLASSES[0]
    assert get_inspection(history.engine, history.ok_kept_id)[0].review_mark == "missed"
    tab.grab()  # paints the reviewed boxes without error
