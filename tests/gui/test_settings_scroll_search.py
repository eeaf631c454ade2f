"""The settings tree: scrolling never changes a value; a search says what the visibility level hides (issue 31.8)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from gui.settings_dialog import CameraSettingsDialog
from tests.gui.conftest import FakeStation, make_control


def _wheel(w: QWidget, steps: int) -> bool:
    """A mouse wheel turned ``steps`` notches over the middle of ``w`` (negative: towards the user); accepted?"""
    pos = QPointF(w.width() / 2, w.height() / 2)
    ev = QWheelEvent(pos, QPointF(w.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(w, ev)
    return ev.isAccepted()


def test_the_wheel_scrolls_the_tree_and_changes_a_value_only_when_focused(qtbot: Any, fake_station: FakeStation,
                                                                          engine: Any) -> None:
    """Before: scrolling the tree with the pointer over a spin box or a list changed the feature."""
    dlg = CameraSettingsDialog(make_control(fake_station, engine), "fake-1")
    qtbot.addWidget(dlg)
    dlg.visibility_combo.setCurrentText("Guru")
    dlg.resize(760, 300)  # more features than fit: the tree scrolls
    dlg.show()
    qtbot.waitExposed(dlg)
    assert dlg.tree.verticalScrollBar().maximum() > 0
    for name in ("Width", "ExposureTime", "PixelFormat"):
        ed = dlg.editors[name]
        dlg.tree.scrollToItem(dlg.items[name])
        before = dlg.editors[name].property("value") if name != "PixelFormat" else ed.currentText()
        accepted = _wheel(ed, -3)
        after = ed.property("value") if name != "PixelFormat" else ed.currentText()
        assert after == before, f"{name} changed by scrolling over it"
        # left to Qt to hand on to the editor's parent, the tree's viewport, which scrolls
        assert not accepted and ed.parentWidget() is dlg.tree.viewport()
    assert not dlg.dirty
    ed = dlg.editors["Width"]
    ed.setFocus()
    qtbot.waitUntil(ed.hasFocus, timeout=2000)
    value = ed.value()
    _wheel(ed, 1)
    assert ed.value() == value + ed.singleStep() and dlg.dirty == {"Width"}  # focused: the wheel steps it


def test_a_search_says_how_many_matches_the_visibility_level_hides(qtbot: Any, fake_station: FakeStation,
                                                                  engine: Any) -> None:
    """Before: "Expos" at Beginner showed an empty tree and nothing else."""
    dlg = CameraSettingsDialog(make_control(fake_station, engine), "fake-1")
    qtbot.addWidget(dlg)
    dlg.show()
    assert dlg.visibility_combo.currentText() == "Beginner" and not dlg.search_hint.isVisible()
    dlg.search.setText("Expos")
    assert dlg.visible_features() == []
    assert dlg.search_hint.isVisible()
    assert dlg.search_hint.text() == "1 match at Expert visibility: choose Expert under Visibility to see it"
    dlg.search.setText("part")  # PartOkShare, PartSeed... are Guru
    n = sum(1 for name in dlg.items if "part" in name.lower() and dlg.features[name].visibility == "Guru")
    assert n >= 2 and dlg.search_hint.text().startswith(f"{n} matches at Guru visibility")
    dlg.search.setText("o")  # matches at both levels
    assert "at Expert/Guru visibility: choose Expert" in dlg.search_hint.text()
    dlg.visibility_combo.setCurrentText("Guru")
    assert not dlg.search_hint.isVisible()  # nothing hidden
    dlg.search.clear()
    dlg.visibility_combo.setCurrentText("Beginner")
    assert not dlg.search_hint.isVisible()  # no search: the level alone is no surprise
