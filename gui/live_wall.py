"""`LiveWall`: every camera of the station in a grid, with line-level verdict and counters.

On a triggered line the wall also shows the last parts (`PartsStrip`) and a `BudgetGauge`
of the trigger->verdict p99 over the last 10 s against the cycle budget.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from gui.bridge import EngineBridge, LineStatus
from gui.camera_view import CameraView
from gui.heatmap_overlay import LiveHeatMaps
from gui.imaging import NG_COLOUR, OK_COLOUR, STALE_COLOUR
from gui.parts_strip import PartDialog, PartsStrip, chip_label
from inspector.access.control import StationControl
from inspector.access.users import PermissionDenied
from inspector.pipeline.results import PartResult

_FIXED_GRIDS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (2, 2), 5: (3, 2), 6: (3, 2), 7: (4, 2), 8: (4, 2)}


#: The gauge warns from this share of the budget on, and alarms past the budget.
GAUGE_WARN_SHARE = 0.8
_GAUGE_COLOURS = {"ok": OK_COLOUR, "warning": STALE_COLOUR, "alarm": NG_COLOUR, "idle": QColor("#4a5056")}


def gauge_level(p99_ms: float, budget_ms: float, parts: int) -> str:
    """``idle`` (no part in the window), ``ok``, ``warning`` (past 80 % of the budget) or ``alarm`` (past it)."""
    if parts <= 0 or budget_ms <= 0:
        return "idle"
    if p99_ms > budget_ms:
        return "alarm"
    return "warning" if p99_ms > GAUGE_WARN_SHARE * budget_ms else "ok"


class BudgetGauge(QWidget):
    """A bar of the trigger->verdict p99 (last 10 s) against the budget, coloured by `gauge_level`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status: LineStatus | None = None
        self.level = "idle"
        self.text = "p99 – / – budget"
        self.setMinimumWidth(260)
        self.setFixedHeight(30)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(300, 30)

    def set_status(self, status: LineStatus) -> None:
        self.status = status
        self.level = gauge_level(status.p99_ms, status.budget_ms, status.window_parts)
        p99 = f"{status.p99_ms:.0f} ms" if status.window_parts else "–"
        self.text = f"p99 {p99} / {status.budget_ms:.0f} ms budget"
        self.setToolTip(f"trigger→verdict p99 over the last {status.window_s:.0f} s ({status.window_parts} parts)")
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        p.fillRect(r, QColor("#2c3338"))
        st = self.status
        if st is not None and st.window_parts and st.budget_ms > 0:
            # the bar's end is 1.25x the budget, so an overrun is visibly past the budget mark
            share = min(1.0, st.p99_ms / (1.25 * st.budget_ms))
            p.fillRect(QRectF(r.x(), r.y(), r.width() * share, r.height()), _GAUGE_COLOURS[self.level])
            mark = r.x() + r.width() / 1.25
            p.fillRect(QRectF(mark - 1, r.y(), 2, r.height()), QColor("white"))
        p.setPen(QColor("black") if self.level == "warning" else QColor("white"))
        p.drawText(r, int(Qt.AlignmentFlag.AlignCenter), self.text)
        p.end()


def grid_shape(n: int) -> tuple[int, int]:
    """``(columns, rows)`` for ``n`` cameras on a landscape screen (1, 2, 2x2, 3x2, 4x2, ...)."""
    if n <= 0:
        return (1, 1)
    if n in _FIXED_GRIDS:
        return _FIXED_GRIDS[n]
    cols = math.ceil(math.sqrt(n * 16 / 9))
    return cols, math.ceil(n / cols)


class LiveWall(QWidget):
    """The operator's screen: one `CameraView` per camera and a line status bar.

    Args:
        bridge: Engine events and pacing.
        control: The control API (pause/resume goes through it).
        stale_after_s: Passed to every `CameraView`.
    """

    message = Signal(str)  # something the user should read (refused action...)

    def __init__(self, bridge: EngineBridge, control: StationControl | None = None, *, stale_after_s: float = 3.0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.control = control
        self.station = bridge.station
        self.enlarged: str | None = None
        self.views: dict[str, CameraView] = {}
        self._shown_verdict: str | None = None
        self.triggered = bridge.line is not None
        self.strip: PartsStrip | None = None
        self.gauge: BudgetGauge | None = None
        self.part_dialog: PartDialog | None = None
        self._status_at = 0.0

        self.line_label = QLabel("—")
        self.line_label.setObjectName("lineVerdict")
        self.line_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.line_label.setMinimumWidth(110)
        self.counts_label = QLabel()
        self.counts_label.setObjectName("lineCounts")
        #: the reject gate's counters (a line with a reject output): a missed reject shows red
        self.gate_label = QLabel()
        self.gate_label.setObjectName("gateCounts")
        self.gate_label.setVisible(False)
        self.gate_label.setToolTip("Reject gate: NG parts pushed off in time, NG parts that went on "
                                   "(verdict too late or not pushed), OK parts passed")
        self.paused_label = QLabel("INSPECTION PAUSED")
        self.paused_label.setObjectName("pausedBanner")
        self.paused_label.setVisible(False)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        #: anomaly heat maps over the pictures: off by default, shown where a station runs anomaly models
        models = getattr(self.station, "anomaly_models", None)
        self.heat_button = QPushButton("Heat maps: off")
        self.heat_button.setCheckable(True)
        self.heat_button.setToolTip("Colour where the anomaly model found the picture unlike the good parts it "
                                    "was taught (red: above the threshold)")
        self.heat_button.setVisible(models is not None)
        self.heat_button.toggled.connect(self.show_heat_maps)

        bar = QHBoxLayout()
        bar.setContentsMargins(8, 6, 8, 6)
        bar.addWidget(self.line_label)
        bar.addSpacing(12)
        bar.addWidget(self.counts_label, 1)
        bar.addWidget(self.gate_label)
        if self.triggered:
            self.gauge = BudgetGauge(self)
            # which budget: a part's trigger->verdict budget, not health's frame latency budget (250 ms)
            self.budget_caption = QLabel("part budget\n(trigger→verdict)")
            self.budget_caption.setObjectName("budgetCaption")
            self.budget_caption.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            bar.addWidget(self.budget_caption)
            bar.addWidget(self.gauge)
            self.strip = PartsStrip(bridge, self)
            self.strip.part_clicked.connect(self.open_part)
        bar.addWidget(self.paused_label)
        bar.addSpacing(12)
        bar.addWidget(self.heat_button)
        bar.addWidget(self.pause_button)

        self.grid = QGridLayout()
        self.grid.setSpacing(4)
        self.grid.setContentsMargins(4, 0, 4, 4)
        for cid, cam in self.station.cameras.items():
            view = CameraView(cam, bridge, stale_after_s=stale_after_s, parent=self)
            view.activated.connect(self.toggle_enlarged)
            view.heat_maps = LiveHeatMaps(models.heat_map) if models is not None else None
            self.views[cid] = view
        self._layout_grid()

        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        top = QWidget(self)
        top.setObjectName("lineBar")
        top.setLayout(bar)
        root.addWidget(top)
        if self.strip is not None:
            root.addWidget(self.strip)
        root.addLayout(self.grid, 1)
        self.setStyleSheet(
            "#lineBar { background: #1b2024; } "
            "#lineCounts { color: #e6edf3; font-size: 15px; } "
            "#lineVerdict { font-size: 22px; font-weight: bold; border-radius: 6px; padding: 2px 14px; color: white; }"
            "#gateCounts { color: #e6edf3; font-size: 15px; padding: 2px 8px; border-radius: 4px; } "
            "#gateCounts[late=\"true\"] { background: #d62828; color: white; font-weight: bold; } "
            "#pausedBanner { background: #f0a202; color: black; font-weight: bold; padding: 3px 10px; border-radius: 4px; }"
            "#budgetCaption { color: #9aa4ad; font-size: 12px; } "
        )
        # as wide as its longest text in its own font: a crowded bar cut "LINE INCOMPLETE" to ".INE INCOMPLE"
        shown = self.line_label.text()
        self.line_label.setText("LINE INCOMPLETE")
        self.line_label.ensurePolished()
        self.line_label.setMinimumWidth(max(110, self.line_label.sizeHint().width()))
        self.line_label.setText(shown)

        bridge.tick.connect(self.refresh)
        bridge.camera_state_changed.connect(self._on_camera_state)
        bridge.paused_changed.connect(self.set_paused)
        bridge.user_changed.connect(lambda _u: self._update_pause_enabled())
        self.set_paused(bool(getattr(self.station, "paused", False)))
        self._update_pause_enabled()
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _layout_grid(self) -> None:
        for v in self.views.values():
            self.grid.removeWidget(v)
        shown = [self.enlarged] if self.enlarged else list(self.views)
        cols, rows = grid_shape(len(shown))
        for i, cid in enumerate(shown):
            self.grid.addWidget(self.views[cid], i // cols, i % cols)
        for cid, v in self.views.items():
            v.setVisible(cid in shown)
        for c in range(max(cols, 8)):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)
        for r in range(max(rows, 8)):
            self.grid.setRowStretch(r, 1 if r < rows else 0)

    def toggle_enlarged(self, camera_id: str) -> None:
        """Show one camera alone, or go back to the grid if it is already alone."""
        self.enlarged = None if self.enlarged == camera_id else camera_id
        self._layout_grid()
        self.refresh()

    def show_heat_maps(self, on: bool) -> None:
        """Draw (or stop drawing) the anomaly heat maps over every camera's picture."""
        self.heat_button.setChecked(on)
        self.heat_button.setText(f"Heat maps: {'on' if on else 'off'}")  # a checked button looks alike in some styles
        for v in self.views.values():
            if v.heat_maps is not None:
                v.heat_maps.enabled = on
                v.update()

    # ------------------------------------------------------------------ updates
    def refresh(self) -> None:
        """Repaint visible views and the line bar from the bridge's newest state."""
        for v in self.views.values():
            if v.isVisible() or not self.isVisible():
                v.refresh()
        if self.triggered:
            verdict = self._refresh_parts()
        else:
            inspected, ng = self.bridge.line_counts()
            yld = f"{100.0 * (inspected - ng) / inspected:.2f} %" if inspected else "–"
            self.counts_label.setText(f"Inspected {inspected:,}   NG {ng:,}   Yield {yld}")
            verdict = self.bridge.line_verdict()
        colour = {"OK": "#1fa84f", "NG": "#d62828", "INCOMPLETE": "#f0a202"}.get(verdict, "#4a5056")
        if verdict != self._shown_verdict:  # a style sheet change re-polishes the widget: only on change
            self._shown_verdict = verdict
            self.line_label.setText(f"LINE {verdict}" if verdict else "LINE –")
            self.line_label.setStyleSheet(f"background: {colour};")

    def _refresh_parts(self, *, recent_s: float = 3.0) -> str:
        """Strip, gauge and counters of a triggered line; returns the newest recent part's chip label."""
        assert self.strip is not None and self.gauge is not None
        self.strip.refresh()
        now = time.monotonic()
        if now - self._status_at >= 0.5:  # the report sorts the line's latencies: twice a second is plenty
            self._status_at = now
            status = self.bridge.line_status()
            if status is not None:
                self.gauge.set_status(status)
                self.counts_label.setText(
                    f"Parts {status.parts:,}   OK {status.ok:,}   NG {status.ng:,} ({status.incomplete:,} incomplete)"
                    f"   late frames {status.late_frames:,}   missed triggers {status.missed_triggers:,}")
                self._show_gate(status.gate)
        part = self.bridge.current_part()
        if part is None or time.time() - part.triggered_at > recent_s + part.budget_ms / 1000:
            return ""
        return chip_label(part)

    def _show_gate(self, gate: tuple[int, int, int] | None) -> None:
        """The reject gate's counters, red while any NG part went on with the good parts."""
        self.gate_label.setVisible(gate is not None)
        if gate is None:
            return
        in_time, late, passed = gate
        self.gate_label.setText(f"Reject gate: in time {in_time:,} · late {late:,} · passed {passed:,}")
        if self.gate_label.property("late") != bool(late):  # re-polish only on change
            self.gate_label.setProperty("late", bool(late))
            self.gate_label.style().unpolish(self.gate_label)
            self.gate_label.style().polish(self.gate_label)

    def open_part(self, part: PartResult) -> PartDialog:
        """Open (non-modal) one part's cameras, verdicts and images."""
        if self.part_dialog is not None:  # one at a time; it holds no frame (its images are copies)
            self.part_dialog.close()
            self.part_dialog.deleteLater()
        thumbs = self.strip.thumbs.get(part.part_id) if self.strip is not None else None
        self.part_dialog = PartDialog(part, self.bridge, thumbs, self)
        self.part_dialog.show()
        return self.part_dialog

    def _on_camera_state(self, camera_id: str, _old: str, _new: str) -> None:
        view = self.views.get(camera_id)
        if view is not None:
            view.refresh()

    def set_paused(self, paused: bool) -> None:
        """Show the paused state (from the engine's event)."""
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.paused_label.setVisible(paused)

    def _update_pause_enabled(self) -> None:
        allowed = self.control is not None and self.control.can("station.pause")
        self.pause_button.setEnabled(allowed)
        self.pause_button.setToolTip("" if allowed else "Log in (operator or higher) to pause or resume")

    def toggle_pause(self) -> None:
        """Pause or resume inspection through the control API."""
        self._on_pause_clicked()

    def _on_pause_clicked(self) -> None:
        want = not bool(getattr(self.station, "paused", False))
        if self.control is None:
            self.set_paused(not want)
            return
        try:
            self.control.pause(want)
        except PermissionDenied as exc:
            self.message.emit(str(exc))
        self.set_paused(bool(self.station.paused))
