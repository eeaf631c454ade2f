"""The toolbar's recipe selector: hidden without recipes, role-gated, switched off the GUI thread."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QThreadPool, QTimer

from gui.app import MainWindow
from gui.bridge import EngineBridge
from gui.recipe_selector import RecipeSelector
from inspector.config import parse_config
from inspector.recipes.recipe import Recipe
from inspector.recipes.switch import RecipeSelection
from inspector.station import Station, StationError
from tests.gui.conftest import PASSWORDS, FakeStation, make_control
from tests.inspector.line.test_line_station import line_config

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "defect-yolo11p-320"
RECIPE = """
[recipe]
name = "{name}"
number = {number}
version = 2
[model]
name = "{model}"
"""


def _recipe(name: str, number: int, version: int) -> Recipe:
    return Recipe.model_validate({"recipe": {"name": name, "number": number, "version": version},
                                  "model": {"name": f"model-{name}"}})


class RecipeStation(FakeStation):
    """A fake free-running station with two recipes; `select_recipe` may be held by `gate` or fail."""

    def __init__(self) -> None:
        super().__init__("fake-1")
        a, b = _recipe("housing-a", 1, 3), _recipe("housing-b", 2, 2)
        self.recipes = SimpleNamespace(recipes=[a, b], current=a)
        self.gate = threading.Event()
        self.gate.set()
        self.fail: str | None = None
        self.calls: list[tuple[object, threading.Thread]] = []

    def switch_recipe(self, key: int | str) -> RecipeSelection:
        self.calls.append((key, threading.current_thread()))
        assert self.gate.wait(10), "the test never released the switch"
        if self.fail is not None:
            raise StationError(self.fail)
        self.recipes.current = next(r for r in self.recipes.recipes if r.recipe.number == key)
        return RecipeSelection(self.recipes.current)


def _window(qtbot: Any, station: Any, engine: Any) -> tuple[MainWindow, list[str]]:
    """The main window on ``station`` with its confirmations answered yes (the questions are kept)."""
    control = make_control(station, engine)
    win = MainWindow(station, control, EngineBridge(station, control), stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    questions: list[str] = []
    win.recipe_selector.ask = lambda _parent, text: questions.append(text) or True
    return win, questions


def _choose(selector: RecipeSelector, text: str) -> None:
    """What a user's pick in the combo does: the index changes, then `activated`."""
    index = selector.combo.findText(text)
    assert index >= 0, f"{text!r} not in {[selector.combo.itemText(i) for i in range(selector.combo.count())]}"
    selector.combo.setCurrentIndex(index)
    selector.combo.activated.emit(index)


@pytest.fixture
def recipe_window(qtbot: Any, engine: Any) -> Iterator[tuple[MainWindow, list[str]]]:
    win, questions = _window(qtbot, RecipeStation(), engine)
    yield win, questions
    QThreadPool.globalInstance().waitForDone(5000)
    win.bridge.close()


@pytest.fixture
def recipe_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two recipes on two models (the shipped one and a renamed copy of it), as the engine's tests do."""
    copy = tmp_path / "models" / "defect-copy"
    shutil.copytree(SHIPPED, copy)
    card = copy / "card.toml"
    card.write_text(card.read_text().replace('name = "defect-yolo11p-320"', 'name = "defect-copy"', 1))
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a.toml").write_text(RECIPE.format(name="housing-a", number=1, model="defect-yolo11p-320"))
    (folder / "b.toml").write_text(RECIPE.format(name="housing-b", number=2, model="defect-copy"))
    return folder


@pytest.fixture
def line_window(qtbot: Any, engine: Any, recipe_dir: Path) -> Iterator[tuple[MainWindow, list[str]]]:
    """The main window on a real (not started) triggered line with recipes 1 housing-a v2 (current) and 2."""
    st = Station(parse_config(line_config(n=1) + f'[recipes]\ndir = "{recipe_dir}"\nselect = 1\n'),
                 db_url="none", archive=False)
    win, questions = _window(qtbot, st, engine)
    try:
        yield win, questions
    finally:
        QThreadPool.globalInstance().waitForDone(10_000)
        win.bridge.close()
        st.recipes.wait_retired()
        st.stop()


def test_absent_on_a_station_without_recipes(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    win, _ = _window(qtbot, fake_station, engine)
    try:
        assert not win.recipe_selector.available
        assert not win.recipe_action.isVisible() and not win.recipe_selector.isVisible()
        assert not win.recipe_separator.isVisible()
    finally:
        win.bridge.close()


def test_shows_the_current_recipe_and_needs_the_operator_role(qtbot: Any, recipe_window: Any) -> None:
    win, _ = recipe_window
    sel = win.recipe_selector
    assert win.recipe_action.isVisible() and sel.isVisible()
    assert [sel.combo.itemText(i) for i in range(sel.combo.count())] == ["1 housing-a v3", "2 housing-b v2"]
    assert sel.current_text() == "1 housing-a v3"
    assert not sel.combo.isEnabled()
    assert sel.combo.toolTip() == "needs the operator role (log in)"
    with qtbot.waitSignal(win.bridge.user_changed):
        win.control.login("op", PASSWORDS["op"])
    assert sel.combo.isEnabled() and "next frame" in sel.combo.toolTip()  # free-running: a part is a frame
    with qtbot.waitSignal(win.bridge.user_changed):
        win.control.logout()
    assert not sel.combo.isEnabled()


def test_switch_runs_off_the_gui_thread_and_shows_the_new_recipe(qtbot: Any, recipe_window: Any) -> None:
    win, questions = recipe_window
    st, sel = win.station, win.recipe_selector
    win.control.login("op", PASSWORDS["op"])
    st.gate.clear()  # the switch takes as long as the test says
    _choose(sel, "2 housing-b v2")
    assert questions == ["Switch to housing-b v2 at the next frame? Frames already taken finish on housing-a v3."]
    qtbot.waitUntil(lambda: len(st.calls) == 1, timeout=2000)
    assert st.calls[0][0] == 2 and st.calls[0][1] is not threading.main_thread()
    assert sel.state.text() == "switching…" and not sel.combo.isEnabled()
    # a free-running station: what the status bar says uses the question's words (a part is a frame)
    assert win.statusBar().currentMessage() == "switching to housing-b v2 at the next frame…"
    # the GUI thread keeps running its event loop while the switch is still held
    ticks: list[int] = []
    QTimer.singleShot(20, lambda: ticks.append(1))
    qtbot.waitUntil(lambda: bool(ticks), timeout=2000)
    assert not st.gate.is_set() and sel.busy
    with qtbot.waitSignal(sel.switched, timeout=5000) as got:
        st.gate.set()
    assert got.args == ["housing-b v2"]
    assert sel.current_text() == "2 housing-b v2" and sel.state.text() == "" and sel.combo.isEnabled()
    assert win.statusBar().currentMessage() == (
        "recipe housing-b v2 from the next frame; frames already taken finish on housing-a v3")
    entry = next(e for e in win.control.audit_entries() if e.action == "recipe.select")
    assert (entry.user, entry.old, entry.new) == ("op", "housing-a v3", "housing-b v2")


def test_declining_the_question_keeps_the_recipe(qtbot: Any, recipe_window: Any) -> None:
    win, _ = recipe_window
    sel = win.recipe_selector
    win.control.login("op", PASSWORDS["op"])
    sel.ask = lambda _parent, _text: False
    _choose(sel, "2 housing-b v2")
    assert sel.current_text() == "1 housing-a v3" and win.station.calls == [] and not sel.busy


def test_a_failed_switch_reverts_the_combo_and_says_why(qtbot: Any, recipe_window: Any) -> None:
    win, _ = recipe_window
    st, sel = win.station, win.recipe_selector
    win.control.login("op", PASSWORDS["op"])
    st.fail = "recipe housing-b v2: model model-housing-b: sha256 does not match its card"
    with qtbot.waitSignal(sel.message, timeout=5000, check_params_cb=lambda m: "sha256" in m):
        _choose(sel, "2 housing-b v2")
    assert sel.current_text() == "1 housing-a v3" and sel.state.text() == "" and sel.combo.isEnabled()
    msg = win.statusBar().currentMessage()
    assert msg == "recipe housing-b v2: model model-housing-b: sha256 does not match its card (still on housing-a v3)"
    assert "\n" not in msg


def test_a_refusal_by_role_is_one_line_in_the_status_bar(qtbot: Any, recipe_window: Any) -> None:
    win, _ = recipe_window
    sel = win.recipe_selector  # logged out: the combo is disabled, but the API checks again
    with qtbot.waitSignal(sel.message, timeout=5000, check_params_cb=lambda m: "needs the operator role" in m):
        sel.select(2)
    assert win.station.calls == [] and sel.current_text() == "1 housing-a v3"


def test_follows_a_switch_made_elsewhere(qtbot: Any, recipe_window: Any) -> None:
    win, _ = recipe_window
    st, sel = win.station, win.recipe_selector
    st.recipes.current = st.recipes.recipes[1]  # e.g. the PLC's select_recipe
    qtbot.waitUntil(lambda: sel.current_text() == "2 housing-b v2", timeout=3000)


def test_switches_a_real_line_between_two_models(qtbot: Any, line_window: Any) -> None:
    win, questions = line_window
    st, sel = win.station, win.recipe_selector
    assert sel.current_text() == "1 housing-a v2"
    with qtbot.waitSignal(win.bridge.user_changed):
        win.control.login("op", PASSWORDS["op"])
    with qtbot.waitSignal(sel.switched, timeout=20_000):
        _choose(sel, "2 housing-b v2")
    assert questions == ["Switch to housing-b v2 at the next part? Parts already triggered finish on housing-a v2."]
    assert win.statusBar().currentMessage() == (
        "recipe housing-b v2 from the next part; parts already triggered finish on housing-a v2")
    assert st.recipes.current.label == "housing-b v2" and sel.current_text() == "2 housing-b v2"
    entry = next(e for e in win.control.audit_entries() if e.action == "recipe.select")
    assert (entry.user, entry.old, entry.new) == ("op", "housing-a v2", "housing-b v2")


def test_a_real_line_keeps_its_recipe_when_the_new_model_is_corrupt(qtbot: Any, line_window: Any,
                                                                    recipe_dir: Path) -> None:
    win, _ = line_window
    st, sel = win.station, win.recipe_selector
    (recipe_dir.parent / "models" / "defect-copy" / "model.onnx").write_bytes(b"not the model")
    win.control.login("op", PASSWORDS["op"])
    with qtbot.waitSignal(sel.message, timeout=20_000, check_params_cb=lambda m: "still on" in m):
        _choose(sel, "2 housing-b v2")
    assert "housing-b v2: model defect-copy" in win.statusBar().currentMessage()
    assert st.recipes.current.label == "housing-a v2" and sel.current_text() == "1 housing-a v2"
