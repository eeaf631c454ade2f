"""The toolbar's product recipe selector: a combo of the station's recipes, switched off the GUI thread.

Choosing a recipe asks for confirmation, then calls `StationControl.select_recipe` on a pool
thread: the changeover loads and warms the new model (~0.5 s), and the live wall must not freeze
meanwhile. The combo shows "switching…" until the control API answers, then the station's current
recipe: the new one, or (refused, failed) the old one, with the one-line reason in the status bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMessageBox, QWidget

from gui.roles import gate
from inspector.access.control import StationControl, SwitchWording, switch_wording

log = logging.getLogger(__name__)

ACTION = "recipe.select"
#: How often the combo catches up with a switch made elsewhere (PLC, OPC UA, another session).
SYNC_INTERVAL_MS = 1000
_TIP = "product recipe: a switch takes effect at the next {unit}; {finishing} finish on the old one"


def ask_user(parent: QWidget, text: str) -> bool:
    """Yes/No confirmation (the default `RecipeSelector.ask`)."""
    answer = QMessageBox.question(parent, "Switch recipe", text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def recipe_text(recipe: Any) -> str:
    """``1 housing-a v3``: the recipe's number (what a PLC selects) and its label."""
    return f"{recipe.recipe.number} {recipe.label}"


class SwitchRelay(QObject):
    """Carries a switch's outcome from the pool thread to the GUI thread (a queued signal)."""

    done = Signal(int, str, str)  # request number, new label ("" on error), error ("" on success)


class SelectRecipe(QRunnable):
    """``control.select_recipe(key, **options)`` on a pool thread (the changeover loads and warms a model); the
    outcome, or the first line of the refusal, goes back through ``relay`` with ``request``."""

    def __init__(self, control: StationControl, key: int | str, request: int, relay: SwitchRelay,
                 **options: Any) -> None:
        super().__init__()
        self.control = control
        self.key = key
        self.request = request
        self.options = options  # override_gate, reason
        self.relay = relay  # held here: it outlives the selector if the window closes mid-switch

    def run(self) -> None:
        try:
            label = self.control.select_recipe(self.key, **self.options)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the GUI, or it stays "switching…"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.relay.done.emit(self.request, "", first)
            return
        self.relay.done.emit(self.request, label, "")


class RecipeSelector(QWidget):
    """"Recipe: [1 housing-a v3 ▾]" for the toolbar; `available` is False (keep it hidden) without recipes.

    Args:
        station: The station; its ``recipes`` is a `RecipeSwitch` or None.
        control: The control API (role check, audit, the switch itself).
        ask: ``ask(parent, question) -> bool``, the confirmation (a dialog; tests replace it).
        pool: Where the switch runs (Qt's global pool by default).
    """

    message = Signal(str)  # for the status bar
    switched = Signal(str)  # the new current recipe's label

    def __init__(self, station: Any, control: StationControl, *, ask: Callable[[QWidget, str], bool] = ask_user,
                 pool: QThreadPool | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.station = station
        self.control = control
        self.ask = ask
        self.pool = pool or QThreadPool.globalInstance()
        self.switch = getattr(station, "recipes", None)
        self.busy = False
        self._asking = False
        self._request = 0
        self._switched_from = "the station settings"
        self._relay = SwitchRelay()
        self._relay.done.connect(self._on_done)

        self.title = QLabel("Recipe:")
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(16)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setPlaceholderText("none (station settings)")
        for r in self.recipes:
            self.combo.addItem(recipe_text(r), r.recipe.number)
        self.combo.activated.connect(self._on_activated)  # the user's choice only, never our own setCurrentIndex
        self.state = QLabel()
        self.state.setContentsMargins(6, 0, 0, 0)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 0, 8, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.combo)
        lay.addWidget(self.state)

        self._sync_timer = QTimer(self)
        self._sync_timer.setInterval(SYNC_INTERVAL_MS)
        self._sync_timer.timeout.connect(self.sync)
        if self.available:
            self._sync_timer.start()
        self.sync()
        self.update_permissions()

    # ------------------------------------------------------------------ state
    @property
    def available(self) -> bool:
        """The station has recipes (else the selector stays hidden)."""
        return self.switch is not None and bool(self.recipes)

    @property
    def recipes(self) -> list[Any]:
        return list(self.switch.recipes) if self.switch is not None else []

    @property
    def current(self) -> Any:
        """The station's current recipe (None: its own settings)."""
        return self.switch.current if self.switch is not None else None

    def current_text(self) -> str:
        """What the combo shows: ``"1 housing-a v3"``, or ``""`` for none."""
        return self.combo.currentText() if self.combo.currentIndex() >= 0 else ""

    def sync(self) -> None:
        """Show the station's current recipe (unless a switch or its question is under way)."""
        if self.busy or self._asking:
            return
        items = [(recipe_text(r), r.recipe.number) for r in self.recipes]
        if items != [(self.combo.itemText(i), self.combo.itemData(i)) for i in range(self.combo.count())]:
            self.combo.clear()  # a recipe saved meanwhile (the Teach dialog's new version)
            for text, number in items:
                self.combo.addItem(text, number)
            self.combo.setCurrentIndex(-1)
        cur = self.current
        index = self.combo.findData(cur.recipe.number) if cur is not None else -1
        if index != self.combo.currentIndex():
            self.combo.setCurrentIndex(index)

    def update_permissions(self) -> None:
        """Enable the combo for operators and up (not while switching); else the tooltip names the role."""
        w = self._wording()
        gate(self.combo, self.control, ACTION, usable=self.available and not self.busy,
             tip="switching…" if self.busy else _TIP.format(unit=w.unit, finishing=w.finishing))

    # ------------------------------------------------------------------ switching
    def _wording(self) -> SwitchWording:
        """What a switch waits for, and what finishes on the old recipe, in the station's words."""
        return switch_wording(triggered=getattr(self.station, "line", None) is not None)

    def _in_force(self) -> str:
        cur = self.current
        return cur.label if cur is not None else "the station settings"

    def _question(self, new: Any) -> str:
        w = self._wording()
        return f"Switch to {new.label} at the next {w.unit}? {w.finishing.capitalize()} finish on {self._in_force()}."

    def _on_activated(self, index: int) -> None:
        number = self.combo.itemData(index)
        new = next((r for r in self.recipes if r.recipe.number == number), None)
        cur = self.current
        if new is None or self.busy or (cur is not None and cur.recipe.number == number):
            self.sync()
            return
        self._asking = True
        try:
            yes = self.ask(self, self._question(new))
        finally:
            self._asking = False
        if not yes:
            self.sync()
            return
        self.select(new.recipe.number)

    def select(self, number: int) -> None:
        """Switch to recipe ``number`` (no question asked) on a pool thread; the combo follows the outcome."""
        if self.busy:
            return
        self.busy = True
        self._request += 1
        self.state.setText("switching…")
        self.update_permissions()
        label = next((r.label for r in self.recipes if r.recipe.number == number), str(number))
        self._switched_from = self._in_force()  # what the done line says finishes on the old recipe
        self.message.emit(self._wording().switching(label))
        self.pool.start(SelectRecipe(self.control, number, self._request, self._relay))

    def _on_done(self, request: int, label: str, error: str) -> None:
        if request != self._request:
            return
        self.busy = False
        self.state.setText("")
        self.sync()  # the new current, or back to the old one
        self.update_permissions()
        if error:
            log.warning("recipe switch failed: %s", error)
            self.message.emit(f"{error} (still on {self._in_force()})")
            return
        self.message.emit(self._wording().switched(label, self._switched_from))
        self.switched.emit(label)
