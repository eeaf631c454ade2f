"""`PlcView`: the station's PLC links at a glance (View > PLC link), for the embedded and the attached window.

Per link: where it listens and who is connected, the last command and how it ended, and for
Modbus the result FIFO (waiting, depth, how long the head waited, overflows), the error code
and the counters the PLC reads. It reads a `PlcStatus` from its source once a second while
shown: `EngineBridge.plc_status` (the station's servers) or `RemoteBridge.plc_status` (the
service's status snapshot); it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFormLayout,
    QGroupBox,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from inspector.ops.plc_health import wait_limit_s
from inspector.plc.link_status import LastCommand, ModbusLinkStatus, OpcUaLinkStatus, PlcStatus

_BAR_COLOURS = {"ok": "#2e7d32", "warning": "#f0b400", "alarm": "#c62828"}
_STYLES = {"ok": "", "warning": "color: #b26a00; font-weight: bold;", "alarm": "color: #c62828; font-weight: bold;"}
NOT_CONFIGURED = "No PLC link on this station: set [plc] modbus or opcua in the station's config."
MODBUS_ROWS = ("Link", "Clients", "Last command", "Result FIFO", "Error code", "State", "Counters", "Errors")
OPCUA_ROWS = ("Link", "Sessions", "Last call", "State", "Counters")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s ago" if seconds < 10 else f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def command_text(c: LastCommand | None) -> tuple[str, str]:
    """The last command as one line, and its level (``ok``, ``warning`` for a refusal)."""
    if c is None:
        return "none yet", "ok"
    call = f"{c.name}({c.arg})" if c.arg else c.name
    if c.status == "refused":
        code = f" ({c.error_code})" if c.error_code else ""
        return f"{call}: refused\n{c.error}{code} · {_ago(c.age_s)}", "warning"
    return f"{call}: {c.status} · {_ago(c.age_s)}", "ok"


def fifo_text(s: ModbusLinkStatus) -> tuple[str, str]:
    """The result FIFO in two lines (waiting, overflows), and its level (the rules of `inspector.ops.plc_health`)."""
    parts = [f"{s.fifo_count} of {s.fifo_depth} waiting"]
    level = "ok"
    if s.head_wait_s is not None:
        parts.append(f"oldest waited {s.head_wait_s:.1f} s")
        if s.head_wait_s > wait_limit_s(s.cycle_s):
            level = "warning"
    if s.fifo_count * 2 > s.fifo_depth:
        level = "warning"
    if s.fifo_overflows:
        overflow = f"{s.fifo_overflows:,} not queued (FIFO full), last {_ago(s.last_overflow_age_s)}"
        level = "alarm"
    else:
        overflow = "no overflow"
    return " · ".join(parts) + "\n" + overflow, level


class _Rows(QGroupBox):
    """A titled form of labelled values (selectable; lines broken by the texts, never by the width)."""

    def __init__(self, title: str, names: tuple[str, ...]) -> None:
        super().__init__(title)
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.form = form
        self.values: dict[str, QLabel] = {}
        for name in names:
            value = QLabel("–")  # no word wrap: a wrapped label in a form is cut short, not made taller
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[name] = value
            form.addRow(f"{name}:", value)

    def put(self, name: str, text: str, level: str = "ok") -> None:
        label = self.values[name]
        label.setText(text)
        label.setStyleSheet(_STYLES[level])


class PlcView(QWidget):
    """The PLC links of the station (read-only).

    Args:
        source: Returns the links' state now (`EngineBridge.plc_status` or `RemoteBridge.plc_status`).
        period_ms: How often it reads while shown.
    """

    def __init__(self, source: Callable[[], PlcStatus], *, period_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.status = PlcStatus()
        self.none_label = QLabel(NOT_CONFIGURED)
        self.none_label.setWordWrap(True)
        self.modbus = _Rows("Modbus TCP", MODBUS_ROWS)
        self.fifo_bar = QProgressBar()
        self.fifo_bar.setTextVisible(True)
        self.fifo_bar.setFormat("%v of %m results waiting for the PLC")
        self._fifo_level = ""
        self.modbus.form.insertRow(4, "", self.fifo_bar)
        self.opcua = _Rows("OPC UA", OPCUA_ROWS)
        inner = QWidget()
        box = QVBoxLayout(inner)
        for w in (self.none_label, self.modbus, self.opcua):
            box.addWidget(w)
        box.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._timer = QTimer(self)
        self._timer.setInterval(period_ms)
        self._timer.timeout.connect(self.refresh)
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh()
        self._timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self._timer.stop()  # nothing read while nobody looks
        super().hideEvent(event)

    def refresh(self) -> None:
        """Read the links' state and show it."""
        self.status = s = self.source()
        self.none_label.setVisible(not s.configured)
        self.modbus.setVisible(s.modbus is not None)
        self.opcua.setVisible(s.opcua is not None)
        if s.modbus is not None:
            self._show_modbus(s.modbus)
        if s.opcua is not None:
            self._show_opcua(s.opcua)

    def _show_modbus(self, s: ModbusLinkStatus) -> None:
        rows = self.modbus
        n = len(s.clients)
        link = f"listening on {s.listening}" if s.serving else f"NOT listening ({s.listening})"
        rows.put("Link", f"{link}\n{n} client{'s' if n != 1 else ''} connected",
                 "ok" if s.serving and n else ("warning" if s.serving else "alarm"))
        rows.put("Clients", "\n".join(s.clients) if s.clients else "none connected")
        rows.put("Last command", *command_text(s.last_command))
        rows.put("Result FIFO", *fifo_text(s))
        self.fifo_bar.setRange(0, max(1, s.fifo_depth))
        self.fifo_bar.setValue(min(s.fifo_count, s.fifo_depth))
        level = fifo_text(s)[1]
        if level != self._fifo_level:  # style sheets are costly: only on change
            self._fifo_level = level
            self.fifo_bar.setStyleSheet(f"QProgressBar::chunk {{ background: {_BAR_COLOURS[level]}; }}")
        rows.put("Error code", f"{s.error_code} {s.error_name}" if s.error_code else "0 (none)",
                 "warning" if s.error_code else "ok")
        rows.put("State", f"{s.state} · recipe {s.recipe}")
        rows.put("Counters", f"OK {s.parts_ok:,} · NG {s.parts_ng:,} (incomplete {s.parts_incomplete:,})\n"
                             f"commands {s.commands:,} · refused connections {s.refused_connections:,}")
        rows.put("Errors", " · ".join(f"{k} {v:,}" for k, v in sorted(s.errors.items())) or "none")

    def _show_opcua(self, s: OpcUaLinkStatus) -> None:
        rows = self.opcua
        n = len(s.clients)
        link = f"listening on {s.listening}" if s.serving else f"NOT listening ({s.listening})"
        rows.put("Link", f"{link}\n{n} session{'s' if n != 1 else ''}",
                 "ok" if s.serving and n else ("warning" if s.serving else "alarm"))
        rows.put("Sessions", "\n".join(f"{c.user or '(anonymous)'} from {c.address}" for c in s.clients) or "none")
        rows.put("Last call", *command_text(s.last_command))
        rows.put("State", f"{s.vision_state} · {s.automatic_state}", "alarm" if s.vision_state == "Error" else "ok")
        extra = " · ".join(f"{k} {v:,}" for k, v in sorted(s.counts.items()) if v)
        rows.put("Counters", f"jobs {s.jobs:,} · results {s.results:,} · not published {s.results_not_published:,}"
                             + (f"\n{extra}" if extra else ""), "alarm" if s.results_not_published else "ok")


def add_plc_dock(window: QMainWindow, source: Callable[[], PlcStatus]) -> tuple[QDockWidget, PlcView, QAction]:
    """A hidden "PLC link" dock on ``window`` and its View menu entry; returns (dock, view, the menu's action)."""
    view = PlcView(source)
    dock = QDockWidget("PLC link", window)
    dock.setObjectName("plc-link")
    dock.setWidget(view)
    dock.setMinimumWidth(420)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()
    action = dock.toggleViewAction()
    action.setText("PLC link")
    action.setToolTip("The Modbus and OPC UA links: clients, last command, result FIFO, errors")
    menu = window.findChild(QMenu, "view-menu")
    if menu is None:
        menu = window.menuBar().addMenu("&View")
        menu.setObjectName("view-menu")
    menu.addAction(action)
    return dock, view, action
