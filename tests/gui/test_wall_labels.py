"""The wall's words are whole and its budgets named (issue 31.8): "LINE INCOMPLETE" and chips never clipped,
the part budget (trigger->verdict) told apart from health's frame latency budget."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtGui import QFont, QFontMetricsF

from gui.parts_strip import CHIP_W, word_font
from inspector.ops.health import assess
from tests.gui.test_parts_wall import Line, line_station, wall  # noqa: F401 - fixtures
from tests.inspector.ops.test_health import _station as health_station


def test_line_incomplete_is_never_cut_on_a_crowded_bar(qtbot: Any, wall: Any, line_station: Any) -> None:  # noqa: F811
    """Before: the bar's long counters squeezed the verdict to its 110 px minimum (".INE INCOMPLE")."""
    line = Line(line_station)
    for i in range(1, 4):
        line.part(i)
    line.part(4, missing=("line-cam2",))
    qtbot.waitUntil(lambda: wall.line_label.text() == "LINE INCOMPLETE", timeout=2000)
    wall.resize(640, 560)  # narrower than the bar's words
    qtbot.wait(100)
    label = wall.line_label
    needed = QFontMetricsF(label.font()).horizontalAdvance("LINE INCOMPLETE")
    assert label.width() >= label.sizeHint().width() and label.contentsRect().width() >= needed
    assert wall.budget_caption.text() == "part budget\n(trigger→verdict)" and wall.budget_caption.isVisible()


def test_a_chip_word_fits_its_chip() -> None:
    """Before: "INCOMPLETE" at 11 px bold was wider than the 72 px chip and cut at both ends."""
    font = word_font(QFont(), "INCOMPLETE", CHIP_W - 6)
    assert QFontMetricsF(font).horizontalAdvance("INCOMPLETE") <= CHIP_W - 6
    assert word_font(QFont(), "OK", CHIP_W - 6).pixelSize() == 11  # short words keep their size


def test_health_names_the_frame_latency_budget_and_the_part_budget() -> None:
    h = assess(health_station(latency_ms=300.0))
    assert "frame p50 latency 300 ms > budget 250 ms (frame latency budget, last 10 s)" in h["summary"]
