"""The product recipe dialog: versions with their gate verdicts, switch, override (admin), roll back (engineer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.recipe_dialog import RecipeDialog
from inspector.config import parse_config
from inspector.recipes.versions import read_history, save_recipe_version
from inspector.station import Station
from tests.gui.conftest import PASSWORDS, make_control
from tests.inspector.line.test_line_station import line_config
from tests.inspector.recipes.helpers import retrained_copy, write_recipes


@pytest.fixture
def recipe_station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Station]:
    """A line station with recipes housing-a (shipped model) and housing-b (a copy), a database, housing-a running."""
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    recipes = write_recipes(tmp_path)
    st = Station(parse_config(line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'),
                 db_url=f"sqlite:///{tmp_path / 'station.db'}", archive=False)
    yield st
    st.stop()


def _rows(dlg: RecipeDialog) -> list[tuple[str, ...]]:
    return [tuple(dlg.table.item(r, c).text() for c in range(dlg.table.columnCount()))
            for r in range(dlg.table.rowCount())]


def _pick(dlg: RecipeDialog, name: str, version: int | None = None) -> None:
    dlg.recipe_list.setCurrentRow(dlg.recipe_names().index(name))
    if version is not None:
        row = next(i for i, r in enumerate(_rows(dlg)) if r[0].lstrip("* ") == f"v{version}")
        dlg.table.selectRow(row)


def test_versions_with_their_gate_a_switch_an_admins_override_and_a_rollback(
        qtbot: Any, recipe_station: Station, engine: Any) -> None:
    st = recipe_station
    folder = Path(st.recipes.folder)
    control = make_control(st, st.engine)
    answers: list[str | None] = []
    dlg = RecipeDialog(st, control, ask=lambda _p, _t, _q: answers.pop(0))
    qtbot.addWidget(dlg)
    assert dlg.recipe_names() == ["housing-a", "housing-b"]
    assert dlg.recipe_list.item(0).text().startswith("▶ 1 housing-a v2")  # the running one
    assert not dlg.switch_button.isEnabled() and "operator" in dlg.switch_button.toolTip()  # nobody logged in

    # an engineer saves v3 (scratch 0.6); the table lists both, v3 active, with how each was accepted
    control.login("eng", PASSWORDS["eng"])
    save_recipe_version(folder, (folder / "a.toml").read_text().replace("scratch = 0.5", "scratch = 0.6"), by="eng",
                        reason="scratch calls on the new lot")
    dlg.refresh()
    rows = _rows(dlg)
    assert [r[:3] for r in rows] == [("v2", "defect-yolo11p-320", "adopt"), ("* v3", "defect-yolo11p-320", "save")]
    assert rows[1][4] == "eng" and "same model file" in rows[1][5] and "scratch calls on the new lot" in rows[1][5]

    # roll back to v2: engineer role, a reason asked, audited; the active mark moves
    _pick(dlg, "housing-a", 2)
    assert dlg.rollback_button.isEnabled()
    answers.append("new lot gone")
    assert dlg.roll_back()
    assert [r[0] for r in _rows(dlg)] == ["* v2", "v3"]
    assert read_history(folder, "housing-a")[-1].action == "rollback"
    audit = [a for a in control.audit_entries() if a.action == "recipe.rollback"]
    assert audit and audit[0].user == "eng" and "new lot gone" in str(audit[0].new)

    # switch to housing-b (off the GUI thread)
    _pick(dlg, "housing-b")
    assert dlg.switch_to()
    qtbot.waitUntil(lambda: not dlg.busy, timeout=30_000)
    assert dlg.last_error == "" and st.recipes.current.label == "housing-b v2"
    assert dlg.recipe_list.item(1).text().startswith("▶ 2 housing-b")
    _pick(dlg, "housing-a")
    assert dlg.switch_to()
    qtbot.waitUntil(lambda: not dlg.busy, timeout=30_000)

    # housing-b's file now names a detector without a gate: refused for the engineer, who cannot override
    retrained_copy(Path(st.recipes.folder).parent / "models", "defect-new")
    b = folder / "b.toml"
    b.write_text(b.read_text().replace('name = "defect-copy"', 'name = "defect-new"'))
    _pick(dlg, "housing-b")
    assert dlg.switch_to()
    qtbot.waitUntil(lambda: not dlg.busy, timeout=30_000)
    assert "no promotion gate" in dlg.last_error and "\n" not in dlg.last_error
    assert dlg.status.text() == dlg.last_error
    assert st.recipes.current.recipe.name == "housing-a"
    assert not dlg.override_button.isEnabled() and "admin" in dlg.override_button.toolTip()

    # the admin overrides with a reason: switched, the history and the audit trail name it
    control.login("admin", PASSWORDS["admin"])
    dlg.update_permissions()
    assert dlg.override_button.isEnabled()
    answers.append("")  # no reason: nothing happens
    assert not dlg.switch_to(override=True)
    answers.append("supplier trial")
    assert dlg.switch_to(override=True)
    qtbot.waitUntil(lambda: not dlg.busy, timeout=30_000)
    assert dlg.last_error == "" and st.recipes.current.label == "housing-b v2"
    e = read_history(folder, "housing-b")[-1]
    assert (e.action, e.by, e.reason) == ("gate_override", "admin", "supplier trial")
    assert any(a.action == "recipe.gate_override" and "supplier trial" in str(a.new) for a in control.audit_entries())
    assert "gate overridden by admin" in _rows(dlg)[-1][5]
