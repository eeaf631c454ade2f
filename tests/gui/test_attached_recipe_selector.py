"""The product recipe selector in a window ATTACHED to a running ``inspector service``: it lists the service's
recipes, switches through `StationControl.select_recipe` over the link (role and audit on the service), follows a
switch made elsewhere, and shows a refusal in one line.

One ``inspector service`` child (tests/gui/service_child.py) serves the module: two simulated cameras, the product
recipes housing (1) and cover (2) on the shipped detector, and a retrained copy of it without a promotion gate
(``defect-new``) for the refusal; its database holds root (admin), eve (engineer) and otto (operator).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.remote import RemoteLink
from inspector.access.users import AuditLog
from inspector.storage.db import open_database
from tests.gui.service_child import SHIPPED, AttachedWindow, ServiceChild, recipe_service_station
from tests.inspector.recipes.helpers import retrained_copy


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceChild]:
    folder = tmp_path_factory.mktemp("recipe-service")
    retrained_copy(folder / "models", "defect-new")
    svc = ServiceChild(folder, recipe_service_station(folder, "recipe-svc"), args=["--no-archive", "--image-fps", "1"],
                       env={"INSPECTOR_MODELS_DIR": str(folder / "models")})
    with svc.running(timeout=120.0):
        yield svc


class Window(AttachedWindow):
    """The attached window with its recipe selector's confirmation answered Yes and its messages kept."""

    def __init__(self, svc: ServiceChild, qtbot: Any) -> None:
        super().__init__(svc, qtbot)
        self.selector = self.win.recipe_selector
        self.selector.ask = lambda _parent, _question: True  # the confirmation, answered Yes
        self.messages: list[str] = []
        self.selector.message.connect(self.messages.append)

    def login(self, qtbot: Any, name: str, password: str) -> None:
        """Log in and wait until the selector takes the new role."""
        self.control.login(name, password)
        qtbot.waitUntil(self.selector.combo.isEnabled, timeout=5000)

    def choose(self, text: str) -> None:
        """What the operator does: pick ``text`` in the combo (and answer Yes)."""
        index = self.selector.combo.findText(text)
        assert index >= 0, [self.selector.combo.itemText(i) for i in range(self.selector.combo.count())]
        self.selector.combo.activated.emit(index)


@pytest.fixture
def window(service: ServiceChild, qtbot: Any) -> Iterator[Window]:
    with Window(service, qtbot) as w:
        yield w


def _selections(svc: ServiceChild) -> list[tuple[str, str | None, str | None]]:
    """The service's audit rows of recipe selections, oldest first: (user, old, new)."""
    eng = open_database(svc.url)
    try:
        return [(e.user, e.old, e.new) for e in sorted(AuditLog(eng).list(), key=lambda e: e.id)
                if e.action == "recipe.select"]
    finally:
        eng.dispose()


def _elsewhere(svc: ServiceChild, key: int | str) -> str:
    """A switch made by another session of the service (another window, the command line)."""
    link = RemoteLink(svc.socket)
    try:
        link.request("login", name="eve", password="eve-password")
        return str(link.request("select_recipe", timeout=120.0, key=key))
    finally:
        link.close()


def test_an_operator_switches_the_product_from_the_attached_window(qtbot: Any, service: ServiceChild,
                                                                   window: Window) -> None:
    sel, win = window.selector, window.win
    assert sel.available and win.recipe_action.isVisible() and win.recipes_action.isVisible()
    assert [sel.combo.itemText(i) for i in range(sel.combo.count())] == ["1 housing v1", "2 cover v1"]
    assert sel.current_text() == "1 housing v1"
    assert not sel.combo.isEnabled()  # watching only until someone logs in
    window.login(qtbot, "otto", "otto-password")
    before = _selections(service)

    window.choose("2 cover v1")
    qtbot.waitUntil(lambda: not sel.busy, timeout=120_000)
    assert window.messages[-1] == (  # the demo station runs free: a part is a frame
        "recipe cover v1 from the next frame; frames already taken finish on housing v1"), window.messages
    assert sel.current_text() == "2 cover v1"
    assert _selections(service)[len(before):] == [("otto", "housing v1", "cover v1")]  # the service audited it


def test_the_attached_selector_follows_a_switch_made_elsewhere(qtbot: Any, service: ServiceChild,
                                                               window: Window) -> None:
    sel = window.selector
    start = sel.current_text()
    other = "1 housing v1" if start == "2 cover v1" else "2 cover v1"
    _elsewhere(service, int(other.split()[0]))
    qtbot.waitUntil(lambda: sel.current_text() == other, timeout=10_000)


def test_the_attached_recipes_dialog_lists_the_services_recipes_and_rolls_back_through_it(
        qtbot: Any, service: ServiceChild, window: Window) -> None:
    from inspector.access.control import ControlError
    from inspector.access.users import PermissionDenied

    running = window.selector.current_text().split()[1]  # "housing" or "cover"
    dlg = window.win.open_recipes()  # deletes itself on close
    assert sorted(dlg.recipe_names()) == ["cover", "housing"]
    texts = [dlg.recipe_list.item(i).text() for i in range(dlg.recipe_list.count())]
    assert [t for t in texts if t.startswith("▶")] == [f"▶ {window.selector.current_text()}"], texts
    control = window.win.control
    control.login("otto", "otto-password")
    with pytest.raises(PermissionDenied, match="recipe.save"):
        control.rollback_recipe(running)
    control.login("eve", "eve-password")
    with pytest.raises(ControlError) as err:  # the service's refusal, one line: v1 is the only version kept
        control.rollback_recipe(running)
    assert "\n" not in str(err.value) and running in str(err.value)
    dlg.close()


def test_a_gate_refusal_is_one_line_in_the_attached_window(qtbot: Any, service: ServiceChild,
                                                           window: Window) -> None:
    sel = window.selector
    _elsewhere(service, "cover")  # cover has run the shipped detector (adopted into its history)
    _elsewhere(service, "housing")
    cover = service.folder / "recipes" / "cover.toml"
    cover.write_text(cover.read_text().replace(SHIPPED, "defect-new"))  # a detector without a passing gate
    qtbot.wait(1500)  # three status snapshots: the ones sent between the two switches (cover) are behind us
    qtbot.waitUntil(lambda: sel.current_text() == "1 housing v1", timeout=10_000)
    window.login(qtbot, "otto", "otto-password")
    before = _selections(service)

    window.choose("2 cover v1")
    qtbot.waitUntil(lambda: not sel.busy, timeout=120_000)
    said = window.messages[-1]
    assert "\n" not in said and "promotion gate" in said and "an admin may override" in said, said
    assert said.endswith("(still on housing v1)")
    bar = window.win.statusBar()  # the whole line, or (too long for the bar) its start and end, whole on hover
    assert bar.currentMessage() == said or (bar.currentMessage().endswith("(still on housing v1)")
                                            and bar.toolTip() == said)
    assert sel.current_text() == "1 housing v1" and _selections(service) == before
