"""The defect history browser: lazily paged table, filters, NG image, review box by box, exports, statistics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gui.charts import ParetoChart, YieldChart
from gui.history_parts import PartsView
from gui.history_widgets import FilterBar, InfoLabel
from gui.imaging import class_colour
from gui.review_canvas import BOX_ACTIONS, BoxToolbar, ReviewCanvas
from gui.roles import gate
from gui.table_model import PagedTableModel
from inspector.access.control import StationControl
from inspector.access.users import PermissionDenied
from inspector.quality.history_export import export_csv, export_yolo
from inspector.quality.parts_export import export_parts_csv
from inspector.storage.box_review import BoxReview, get_box_review, review_mark_for
from inspector.storage.history import (
    HistoryFilter,
    HistoryRow,
    count_history,
    get_inspection,
    pareto,
    query_history,
    query_parts,
    yield_by_hour,
)

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("Time", "Camera", "Seq", "Verdict", "Defects", "Max score", "Review", "Latency")
REVIEW_LABELS = {"confirmed": "confirmed defect", "false_call": "false call", "missed": "missed defect"}
_REVIEW_SHORT = {"confirmed": "confirmed", "false_call": "false call", "missed": "missed"}
_NG_BG = QColor(214, 40, 40, 40)
NO_PARTS_TEXT = "No parts in this database: free-running stations record single inspections only."


class HistoryModel(PagedTableModel):
    """Inspections matching a filter, newest first, fetched a page at a time.

    The view asks for more (`canFetchMore`/`fetchMore`) as the user scrolls; each page
    continues strictly after the last row held (keyset paging), so pages never overlap
    or skip rows even while new inspections are being written.

    Args:
        engine: The inspection database.
        page_size: Rows per page.
    """

    COLUMNS = COLUMNS

    def __init__(self, engine: Engine, *, page_size: int = 200, parent: Any = None) -> None:
        super().__init__(engine, HistoryFilter(), page_size=page_size, parent=parent)

    # ------------------------------------------------------------------ data
    def _page(self, before: tuple[float, int] | None) -> list[HistoryRow]:
        return query_history(self.engine, self.filter, limit=self.page_size, before=before)

    def refresh(self) -> None:
        """Re-read from the newest row (new inspections appear)."""
        self.set_filter(self.filter)

    def replace_row(self, row: HistoryRow) -> None:
        """Show an updated row (after a review) in place."""
        for i, r in enumerate(self.rows):
            if r.id == row.id:
                self.rows[i] = row
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))
                return

    # ------------------------------------------------------------------ Qt model
    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(r, col)
        if role == Qt.ItemDataRole.UserRole:
            return r
        if role == Qt.ItemDataRole.BackgroundRole and r.verdict == "NG":
            return _NG_BG
        if role == Qt.ItemDataRole.ForegroundRole and col == 3:
            return QColor("#b3261e") if r.verdict == "NG" else QColor("#1a7f37")
        if role == Qt.ItemDataRole.FontRole and col == 3:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 5, 7):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def review_label(mark: str | None, verdict: str) -> str:
    """How a review mark reads for an inspection with this verdict ("confirmed" on an OK image: a clean one)."""
    if mark == "confirmed" and verdict == "OK":
        return "confirmed OK (clean)"
    return REVIEW_LABELS.get(mark or "", "not reviewed")


def _cell(r: HistoryRow, col: int) -> str:
    if col == 0:
        return datetime.fromtimestamp(r.acquired_at).strftime("%Y-%m-%d %H:%M:%S")
    if col == 1:
        return r.camera_id
    if col == 2:
        return str(r.sequence)
    if col == 3:
        return r.verdict
    if col == 4:
        return r.classes
    if col == 5:
        return "" if r.max_score is None else f"{r.max_score:.2f}"
    if col == 6:
        return "clean" if r.review_mark == "confirmed" and r.verdict == "OK" else _REVIEW_SHORT.get(r.review_mark or "", "")
    return f"{r.total_ms:.0f} ms"


class HistoryTab(QWidget):
    """Filter bar, history table, selected inspection with review buttons, statistics.

    Args:
        control: The control API (reviews and exports are permission-checked and audited).
        cameras: Camera ids for the filter.
        classes: Defect classes for the filter and the YOLO export.
        engine: History database (default ``control.engine``).
        page_size: Rows per fetched page.
    """

    message = Signal(str)

    def __init__(self, control: StationControl, cameras: Sequence[str], classes: Sequence[str], *,
                 engine: Engine | None = None, page_size: int = 200, default_range: int = 2,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.control = control
        self.engine = engine if engine is not None else control.engine
        self.classes = tuple(classes)
        self.model = HistoryModel(self.engine, page_size=page_size, parent=self)
        self.current: HistoryRow | None = None
        self._stats_dirty = True

        self.filter_bar = FilterBar(cameras, classes, default_range=default_range)
        self.filter_bar.changed.connect(self.apply_filter)
        self.count_label = QLabel()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self._ask_csv)
        self.yolo_button = QPushButton("Export YOLO dataset…")
        self.yolo_button.clicked.connect(self._ask_yolo)
        top = QHBoxLayout()
        top.addWidget(self.filter_bar, 1)
        top.addWidget(refresh)
        top.addWidget(self.csv_button)
        top.addWidget(self.yolo_button)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setAlternatingRowColors(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((140, 82, 56, 52, 150, 68, 108, 60)):
            self.table.setColumnWidth(col, width)
        hh.setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)

        self.image_view = ReviewCanvas(self.classes)
        self.info = InfoLabel()
        self.review_buttons: dict[str | None, QPushButton] = {}
        review = QHBoxLayout()
        for mark, label in (("confirmed", "Confirmed defect"), ("false_call", "False call"), ("missed", "Missed defect"), (None, "Clear review")):
            b = QPushButton(label)
            b.clicked.connect(lambda _=False, m=mark: self.review(m))
            self.review_buttons[mark] = b
            review.addWidget(b)
        #: the anomaly heat map over the image (NG results of an anomaly model archive one)
        self.heat_check = QCheckBox("Heat map")
        self.heat_check.setChecked(True)
        self.heat_check.setEnabled(False)
        self.heat_check.toggled.connect(self._show_heat)
        review.addWidget(self.heat_check)
        self.box_review: BoxReview | None = None
        self.box_bar = BoxToolbar(self.image_view)
        self.box_bar.save.connect(self.save_boxes)
        self.box_buttons = self.box_bar.buttons
        self.class_combo = self.box_bar.class_combo
        self.save_shortcut = QShortcut(QKeySequence("Ctrl+S"), self)
        self.save_shortcut.activated.connect(self.save_boxes)
        self._review_possible = False
        self.update_permissions()
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(4, 4, 4, 4)
        dl.addWidget(self.image_view, 1)
        dl.addWidget(self.info)
        dl.addLayout(review)
        dl.addWidget(self.box_bar)

        self.yield_chart = YieldChart()
        self.class_chart = ParetoChart("Defects by class", colour_for=class_colour)
        self.camera_chart = ParetoChart("NG parts by camera")
        stats = QWidget()
        sl = QVBoxLayout(stats)
        sl.addWidget(self.yield_chart, 3)
        sl.addWidget(self.class_chart, 2)
        sl.addWidget(self.camera_chart, 2)

        self.side = QTabWidget()
        self.side.addTab(detail, "Inspection")
        self.side.addTab(stats, "Statistics")
        self.side.currentChanged.connect(lambda _i: self._update_stats_if_visible())

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.table, 1)
        ll.addWidget(self.count_label)
        split.addWidget(left)
        split.addWidget(self.side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([760, 500])
        inspections = QWidget()
        il = QVBoxLayout(inspections)
        il.setContentsMargins(0, 0, 0, 0)
        il.addLayout(top)
        il.addWidget(split, 1)

        # Inspections (every frame) or Parts (a triggered line's verdicts); Parts only where there are parts
        self.parts_view = PartsView(self.engine, page_size=page_size, default_range=default_range)
        self.stack = QStackedWidget()
        self.stack.addWidget(inspections)
        self.stack.addWidget(self.parts_view)
        self.inspections_button = QRadioButton("Inspections")
        self.parts_button = QRadioButton("Parts")
        self.inspections_button.setChecked(True)
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.inspections_button, 0)
        self.mode_group.addButton(self.parts_button, 1)
        self.mode_group.idToggled.connect(self._on_mode)
        self.parts_note = QLabel()
        self.parts_note.setStyleSheet("color: #6a737d;")
        mode = QHBoxLayout()
        mode.addWidget(QLabel("Show:"))
        mode.addWidget(self.inspections_button)
        mode.addWidget(self.parts_button)
        mode.addWidget(self.parts_note, 1)
        self.update_parts_available()

        root = QVBoxLayout(self)
        root.addLayout(mode)
        root.addWidget(self.stack, 1)

    # ------------------------------------------------------------------ filtering
    def apply_filter(self, flt: HistoryFilter | None = None) -> None:
        """Show the first page for ``flt`` (default: the filter bar's); count and stats follow."""
        flt = flt if flt is not None else self.filter_bar.current()
        self.model.set_filter(flt)
        self.current = None
        self.image_view.clear()
        self.info.setText("")
        self._set_review_enabled(False)
        self.count_label.setText(f"{len(self.model.rows):,}{'+' if not self.model.exhausted else ''} rows…")
        self._stats_dirty = True
        QTimer.singleShot(0, self._update_count)  # the first page shows before the count query runs
        QTimer.singleShot(0, self._update_stats_if_visible)

    def refresh(self) -> None:
        """Re-run the current filter (with "last hour"-style ranges moving to now)."""
        self.update_parts_available()
        if self.showing_parts:
            self.parts_view.refresh()
        self.apply_filter(self.filter_bar.current())

    # ------------------------------------------------------------------ inspections or parts
    @property
    def showing_parts(self) -> bool:
        return self.stack.currentIndex() == 1

    def update_parts_available(self) -> bool:
        """Offer the Parts view only where the database holds parts (a triggered line)."""
        try:
            has_parts = bool(query_parts(self.engine, limit=1))  # one index probe, unlike a count
        except SQLAlchemyError as exc:  # e.g. a database older than the parts table
            log.warning("history: parts not readable: %s", exc)
            has_parts = False
        self.parts_button.setEnabled(has_parts)
        self.parts_button.setToolTip("" if has_parts else NO_PARTS_TEXT)
        self.parts_note.setText("" if has_parts else NO_PARTS_TEXT)
        if not has_parts and self.showing_parts:
            self.inspections_button.setChecked(True)
        return has_parts

    def show_parts(self, on: bool = True) -> bool:
        """Switch to the Parts view (False if the database has no parts) or back to inspections."""
        if on and not self.update_parts_available():
            return False
        (self.parts_button if on else self.inspections_button).setChecked(True)
        return True

    def _on_mode(self, button_id: int, checked: bool) -> None:
        if not checked:
            return
        self.stack.setCurrentIndex(button_id)
        if button_id == 1:
            self.parts_view.refresh()

    def _update_count(self) -> None:
        n = count_history(self.engine, self.model.filter)
        self.count_label.setText(f"{n:,} inspections match · {len(self.model.rows):,} loaded")

    def _update_stats_if_visible(self) -> None:
        if self._stats_dirty and self.side.currentIndex() == 1:
            self.update_stats()

    def update_stats(self) -> None:
        """Recompute the yield chart and the Paretos for the current filter."""
        flt = self.model.filter
        self.yield_chart.set_data(yield_by_hour(self.engine, flt))
        p = pareto(self.engine, flt)
        self.class_chart.set_data(p.by_class)
        self.camera_chart.set_data(p.by_camera)
        self._stats_dirty = False

    # ------------------------------------------------------------------ selection and review
    def select_row(self, i: int) -> None:
        """Select (and show) table row ``i``."""
        self.table.selectRow(i)
        self.table.setCurrentIndex(self.model.index(i, 0))

    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        self.show_inspection(self.model.row_at(current.row()).id)

    def show_inspection(self, inspection_id: int) -> None:
        """Show one inspection's image, boxes and details."""
        try:
            row, dets = get_inspection(self.engine, inspection_id)
        except KeyError:
            self.image_view.clear("inspection not found")
            return
        if self.current is not None and self.current.id != inspection_id and self.image_view.dirty:
            self.message.emit(f"box edits of inspection {self.current.id} not saved (Save boxes keeps them)")
        self.current = row
        self.image_view.show_inspection(row.image_path, dets)
        self.heat_check.setEnabled(self.image_view.heat.available)
        self.box_review = get_box_review(self.engine, row.id)
        self.image_view.load_review(dets, self.box_review, editable=self.control.can("history.review"))
        when = datetime.fromtimestamp(row.acquired_at).strftime("%Y-%m-%d %H:%M:%S")
        rejected = sum(1 for d in dets if not d["accepted"])
        review = review_label(row.review_mark, row.verdict)
        boxes = ""
        if self.box_review is not None:
            by = datetime.fromtimestamp(self.box_review.reviewed_at).strftime("%Y-%m-%d %H:%M")
            boxes = f"<br>boxes reviewed by {self.box_review.reviewed_by} at {by}: {self.box_review.summary()}"
        self.info.setText(
            f"<b>{row.camera_id}</b> #{row.sequence} · {when} · <b>{row.verdict}</b> ({row.rule})<br>"
            f"{row.classes or 'no defects'}{f' · {rejected} below threshold' if rejected else ''} · review: {review}"
            f"{boxes}"
        )
        self._set_review_enabled(True)

    def _show_heat(self, on: bool) -> None:
        self.image_view.heat.enabled = on
        self.image_view.update()

    def _set_review_enabled(self, on: bool) -> None:
        self._review_possible = on
        for b in self.review_buttons.values():
            gate(b, self.control, "history.review", usable=on, tip="" if on else "select an inspection first")
        image = on and self.image_view.image is not None
        why = "" if image else ("select an inspection first" if not on else "no image kept: nothing to draw on")
        for key, b in self.box_buttons.items():
            gate(b, self.control, "history.review", usable=image, tip=BOX_ACTIONS[key][1] if image else why)
        self.class_combo.setEnabled(image and self.control.can("history.review"))
        self.image_view.editable = image and self.control.can("history.review")

    def update_permissions(self) -> None:
        """Enable the review and export buttons for the logged-in user's role (call on login and logout)."""
        self._set_review_enabled(self._review_possible)
        gate(self.csv_button, self.control, "history.export", tip="every row the table matched, as CSV")
        gate(self.yolo_button, self.control, "history.export", tip="the reviewed images, as a YOLO dataset")

    def review(self, mark: str | None) -> bool:
        """Mark the shown inspection (engineer or higher; audited).

        With box edits not yet saved that imply this very mark (boxes drawn on an OK image, then
        "Missed defect"), the boxes are saved with it; otherwise the mark judges the whole image and
        replaces any box review.
        """
        if self.current is None:
            return False
        if mark is not None and self.image_view.dirty and \
                review_mark_for(self.current.verdict, self.image_view.reviewed_boxes()) == mark:
            return self.save_boxes()
        try:
            self.control.review(self.current.id, mark)
        except PermissionDenied as exc:
            self.message.emit(str(exc))
            return False
        except (KeyError, ValueError) as exc:
            self.message.emit(f"review: {exc}")
            return False
        row, _ = get_inspection(self.engine, self.current.id)
        self.model.replace_row(row)
        self.show_inspection(row.id)
        self._stats_dirty = True
        return True

    # ------------------------------------------------------------------ box by box
    def save_boxes(self) -> bool:
        """Store the canvas's boxes as the shown image's labels (engineer or higher; audited)."""
        if self.current is None or self.image_view.image is None:
            return False
        try:
            mark = self.control.review_boxes(self.current.id, self.image_view.reviewed_boxes())
        except PermissionDenied as exc:
            self.message.emit(str(exc))
            return False
        except (KeyError, ValueError) as exc:
            self.message.emit(f"review: {exc}")
            return False
        row, _ = get_inspection(self.engine, self.current.id)
        self.model.replace_row(row)
        self.show_inspection(row.id)
        n = len(self.box_review.labels) if self.box_review is not None else 0
        self.message.emit(f"inspection {row.id}: {n} label{'s' if n != 1 else ''} saved ({review_label(mark, row.verdict)})")
        self._stats_dirty = True
        return True

    # ------------------------------------------------------------------ exports
    def export_csv_to(self, path: Path | str) -> int:
        """Write every row the table shown matched (all pages, the filter as it was queried) to CSV; returns the count.

        The Parts view exports its parts (one row per part), never the inspections of the other
        filter bar: a CSV of 53 frames under a table of 45 parts said another number than the screen.
        """
        self.control.require("history.export")
        if self.showing_parts:
            f = self.parts_view.model.filter
            n = export_parts_csv(self.engine, path, verdict=f.verdict, incomplete=f.incomplete, since=f.since,
                                 until=f.until)
            self.control.record_export("parts_csv", path, n)
            self.message.emit(f"exported {n:,} parts to {path}")
            return n
        n = export_csv(self.engine, self.model.filter, path)
        self.control.record_export("csv", path, n)
        until = self.model.filter.until
        asof = f" (as matched at {datetime.fromtimestamp(until).strftime('%H:%M:%S')})" if until is not None else ""
        self.message.emit(f"exported {n:,} rows to {path}{asof}")
        return n

    def export_yolo_to(self, folder: Path | str) -> int:
        """Export the reviewed images of the current filter as a YOLO dataset; returns images written."""
        self.control.require("history.export")
        res = export_yolo(self.engine, self.model.filter, folder, self.classes)
        self.control.record_export("yolo", folder, res.images)
        extra = f", {len(res.needs_labels)} missed defects need labels" if res.needs_labels else ""
        self.message.emit(
            f"YOLO dataset {folder}: {res.images} images ({res.negatives} negatives), {res.missing_images} images missing{extra}"
        )
        return res.images

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export history as CSV", "history.csv", "CSV (*.csv)")
        if path:
            n = self._guarded(self.export_csv_to, path)
            if n is not None:
                what = "parts" if self.showing_parts else "rows"
                QMessageBox.information(self, "CSV export", f"Exported {n:,} {what} to\n{path}")

    def _ask_yolo(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export reviewed images as a YOLO dataset")
        if folder:
            self._guarded(self.export_yolo_to, folder)

    def _guarded(self, fn: Any, arg: str) -> Any:
        try:
            return fn(arg)
        except PermissionDenied as exc:
            self.message.emit(str(exc))
        except OSError as exc:
            self.message.emit(f"export to {arg} failed: {exc.strerror or exc}")
        return None
