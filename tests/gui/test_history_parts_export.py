"""The CSV export of the History tab exports what the table shows: parts in the Parts view (issue 31.8)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from sqlalchemy import Engine

from inspector.storage.db import open_database
from tests.gui.conftest import PASSWORDS
from tests.gui.test_history_parts import _part, _tab, parts_engine, write_parts_db  # noqa: F401 - a fixture


def test_the_parts_view_exports_the_parts_it_shows(qtbot: Any, parts_engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    """Before: the button exported the inspections of the other filter bar (14 frames under 3 NG parts)."""
    tab = _tab(qtbot, parts_engine)
    tab.control.login("eng", PASSWORDS["eng"])
    assert tab.show_parts()
    view = tab.parts_view
    view.filter_bar.verdict_combo.setCurrentIndex(view.filter_bar.verdict_combo.findData("NG"))
    view.apply_filter()
    qtbot.waitUntil(lambda: "match" in view.count_label.text(), timeout=3000)
    shown = int(view.count_label.text().split()[0])
    assert shown == 3 and [r.part_id for r in view.model.rows] == ["P-5", "P-3", "P-2"]
    out = tmp_path / "parts.csv"
    with qtbot.waitSignal(tab.message) as msg:
        assert tab.export_csv_to(out) == shown
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["part_id"] for r in rows] == ["P-5", "P-3", "P-2"] and msg.args[0] == f"exported 3 parts to {out}"
    assert [r["incomplete"] for r in rows] == ["1", "1", "0"] and rows[1]["missing"] == "line-cam3"
    assert tab.control.audit_entries(limit=1)[0].action == "history.export_parts_csv"
    tab.show_parts(False)  # the inspections view exports its inspections, as before
    assert tab.export_csv_to(tmp_path / "rows.csv") == int(tab.count_label.text().split()[0])


def test_the_parts_count_and_export_stay_the_parts_matched_while_the_line_goes_on(
        qtbot: Any, tmp_path: Path) -> None:
    """The parts filter ends at the query's time, as the inspections filter does (issue 15.5)."""
    from tests.gui.test_history_parts import PARTS

    url = write_parts_db(tmp_path / "p.db", tmp_path / "img", PARTS)
    eng = open_database(url)
    try:
        tab = _tab(qtbot, eng)
        tab.control.login("eng", PASSWORDS["eng"])
        assert tab.show_parts()
        view = tab.parts_view
        qtbot.waitUntil(lambda: view.count_label.text().startswith("5 parts match"), timeout=3000)
        # the line goes on: another part is stored (another connection to the same file)
        assert write_parts_db(tmp_path / "p.db", tmp_path / "img", [_part("P-6", time.time(), seq0=60)]) == url
        assert tab.export_csv_to(tmp_path / "later.csv") == 5  # the parts the table matched, not the 6th
        view.refresh()
        qtbot.waitUntil(lambda: view.count_label.text().startswith("6 parts match"), timeout=3000)
    finally:
        eng.dispose()
