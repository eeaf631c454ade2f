"""The product recipe dialog: recipes, their kept versions with how each was accepted, switch, roll back.

An engineer's window onto `inspector.recipes.versions`: the recipes of the station's folder, and
for the chosen one every kept version (`recipes/versions/<name>/v<N>.toml`) with its detector and
its history line (saved, rolled back, adopted; the promotion gate's verdict or the admin's
override, who and when). Switching goes through `StationControl.select_recipe` (the gate is
checked there; an admin may override it with a reason, audited) on a pool thread, since the
changeover loads and warms the new model; rolling back goes through
`StationControl.rollback_recipe` (engineer role, audited) and runs from the recipe's next selection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThreadPool, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.recipe_selector import SelectRecipe, SwitchRelay
from gui.roles import gate
from inspector.access.control import StationControl, SwitchWording, switch_wording
from inspector.recipes.versions import RecipeVersion, RecipeVersionError, recipe_versions

log = logging.getLogger(__name__)

#: The version table's columns.
COLUMNS = ("version", "detector", "how", "when", "by", "gate / reason")


def ask_reason(parent: QWidget, title: str, text: str) -> str | None:
    """A one-line reason from the user (the default `RecipeDialog.ask`); None when cancelled."""
    value, ok = QInputDialog.getText(parent, title, text)
    return value if ok else None


def version_row(v: RecipeVersion) -> tuple[str, ...]:
    """One version as the table shows it: ``("* v3", "defect-new", "save", when, by, gate text (reason))``."""
    e = v.entry
    if e is None:
        return (f"{'* ' if v.active else ''}v{v.version}", v.model, "kept", "", "", "")
    gate_text = e.gate + (f" ({e.reason})" if e.reason else "")
    return (f"{'* ' if v.active else ''}v{v.version}", v.model, e.action, e.at, e.by, gate_text)


class RecipeDialog(QDialog):
    """Recipes on the left, the chosen one's kept versions on the right; Switch, Override gate…, Roll back.

    Args:
        station: The station; its ``recipes`` is a `RecipeSwitch` (with ``folder``) or None.
        control: The control API (roles, gate, audit).
        ask: ``ask(parent, title, text) -> reason or None`` (a dialog; tests replace it).
        pool: Where switches run (Qt's global pool by default).
    """

    message = Signal(str)  # one line for the status bar (and the dialog's own status)

    def __init__(self, station: Any, control: StationControl, *,
                 ask: Callable[[QWidget, str, str], str | None] = ask_reason, pool: QThreadPool | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Product recipes")
        self.station = station
        self.control = control
        self.ask = ask
        self.pool = pool or QThreadPool.globalInstance()
        self.switch = getattr(station, "recipes", None)
        self.busy = False
        self.last_error = ""
        self._relay = SwitchRelay()
        self._relay.done.connect(self._on_switched)

        self.recipe_list = QListWidget()
        self.recipe_list.currentRowChanged.connect(lambda _row: self.show_versions())
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self.update_permissions)
        self.switch_button = QPushButton("Switch to this recipe")
        self.switch_button.clicked.connect(lambda: self.switch_to())
        self.override_button = QPushButton("Switch, overriding the gate…")
        self.override_button.clicked.connect(lambda: self.switch_to(override=True))
        self.rollback_button = QPushButton("Roll back to this version…")
        self.rollback_button.clicked.connect(lambda: self.roll_back())
        self.status = QLabel()
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        for b in (self.switch_button, self.override_button, self.rollback_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.table)
        right.addLayout(buttons)
        right.addWidget(self.status)
        lay = QHBoxLayout(self)
        lay.addWidget(self.recipe_list, 1)
        lay.addLayout(right, 4)
        self.resize(980, 420)
        self.refresh()

    # ------------------------------------------------------------------ state
    @property
    def folder(self) -> Path | None:
        return Path(self.switch.folder) if self.switch is not None else None

    def recipe_names(self) -> list[str]:
        return [str(self.recipe_list.item(i).data(256)) for i in range(self.recipe_list.count())]

    @property
    def selected_recipe(self) -> str | None:
        item = self.recipe_list.currentItem()
        return str(item.data(256)) if item is not None else None

    @property
    def selected_version(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return int(self._version_text(rows[0].row()).lstrip("* v"))

    def _version_text(self, row: int) -> str:
        """The version cell of ``row`` (``"* v3"`` for the active one)."""
        item = self.table.item(row, 0)
        return item.text() if item is not None else ""

    def refresh(self) -> None:
        """Read the recipes (and the chosen one's versions) again; the running recipe is marked ▶."""
        chosen = self.selected_recipe
        self.recipe_list.blockSignals(True)
        self.recipe_list.clear()
        if self.switch is not None:
            try:
                self.switch.reload()
            except Exception as exc:  # noqa: BLE001 - an invalid folder: one line, the recipes read before stay
                self._say(str(exc).splitlines()[0])
            current = self.switch.current
            for r in self.switch.recipes:
                running = current is not None and current.recipe.name == r.recipe.name
                item = QListWidgetItem(f"{'▶ ' if running else ''}{r.recipe.number} {r.label}")
                item.setData(256, r.recipe.name)
                self.recipe_list.addItem(item)
        self.recipe_list.blockSignals(False)
        names = self.recipe_names()
        if names:
            self.recipe_list.setCurrentRow(names.index(chosen) if chosen in names else 0)
        self.show_versions()

    def show_versions(self) -> None:
        """Fill the table with the chosen recipe's kept versions (newest last, the active one ``*``)."""
        self.table.setRowCount(0)
        name, folder = self.selected_recipe, self.folder
        if name is not None and folder is not None:
            try:
                kept = recipe_versions(folder, name)
            except RecipeVersionError as exc:
                kept = []
                self._say(str(exc))
            for v in kept:
                row = self.table.rowCount()
                self.table.insertRow(row)
                for col, text in enumerate(version_row(v)):
                    self.table.setItem(row, col, QTableWidgetItem(text))
            if not kept:
                self._say(f"recipe {name}: no version kept yet (the first save or selection keeps it)")
        self.table.resizeColumnsToContents()
        self.update_permissions()

    def update_permissions(self) -> None:
        """Switch: operator; override: admin; roll back: engineer, on a kept version other than the active one."""
        chosen = self.selected_recipe is not None and not self.busy
        gate(self.switch_button, self.control, "recipe.select", usable=chosen)
        gate(self.override_button, self.control, "recipe.override_gate", usable=chosen,
             tip="select a detector without a passing promotion gate; asks for the reason (audited)")
        version = self.selected_version
        active = next((t for t in map(self._version_text, range(self.table.rowCount())) if t.startswith("*")), "")
        gate(self.rollback_button, self.control, "recipe.save",
             usable=chosen and version is not None and not active.endswith(f"v{version}"),
             tip="make this kept version active again; the station runs it from the recipe's next selection")

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    # ------------------------------------------------------------------ actions
    def switch_to(self, *, override: bool = False) -> bool:
        """Switch the station to the chosen recipe (off the GUI thread); returns whether a switch started."""
        name = self.selected_recipe
        if name is None or self.busy:
            return False
        reason = ""
        if override:
            answer = self.ask(self, "Override the promotion gate",
                              f"Why does {name} run a detector without a passing gate? (audited)")
            if answer is None or not answer.strip():
                self._say("override cancelled: a reason is needed")
                return False
            reason = answer.strip()
        self.busy = True
        self.last_error = ""
        self.update_permissions()
        self._say(self._wording().switching(name))
        self.pool.start(SelectRecipe(self.control, name, 0, self._relay, override_gate=override, reason=reason))
        return True

    def _on_switched(self, _request: int, label: str, error: str) -> None:
        self.busy = False
        self.last_error = error
        if error:
            log.warning("recipe switch refused: %s", error)
            self._say(error)
        else:
            self._say(f"recipe {label} from the next {self._wording().unit}")
        self.refresh()

    def _wording(self) -> SwitchWording:
        """What a switch waits for in the station's words."""
        return switch_wording(triggered=getattr(self.station, "line", None) is not None)

    def roll_back(self) -> bool:
        """Make the chosen kept version active again (asks for the reason); returns whether it was done."""
        name, version = self.selected_recipe, self.selected_version
        if name is None or version is None:
            return False
        answer = self.ask(self, "Roll back", f"Why roll {name} back to v{version}? (kept in its history)")
        if answer is None:
            return False
        try:
            label = self.control.rollback_recipe(name, to=version, reason=answer.strip())
        except Exception as exc:  # noqa: BLE001 - refusals (role, changed model file) are one line
            self._say((str(exc).strip().splitlines() or [type(exc).__name__])[0])
            return False
        self._say(f"{label} is active again; the station runs it from the recipe's next selection")
        self.refresh()
        return True
