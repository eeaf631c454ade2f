"""The Parts view of the History tab: a triggered line's parts, newest first, and one part camera by camera.

A part row says what the line decided (verdict, reason, trigger->verdict time against the
cycle budget, incomplete or not); selecting it shows one tile per expected camera with that
camera's verdict, rule, classes and archived image. Only NG frames are archived, so an OK
tile says so; a camera in the part's ``missing`` says it had no image at the deadline (and
shows its late frame, if one came after the verdict).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import Engine

from gui.history_widgets import TIME_RANGES, InfoLabel, InspectionImageView
from gui.imaging import NG_COLOUR, OK_COLOUR, STALE_COLOUR
from gui.table_model import PagedTableModel
from inspector.storage.history import (
    PART_CLOCK_SLACK_S,
    HistoryFilter,
    HistoryRow,
    PartDetail,
    PartRow,
    count_parts,
    get_inspection,
    get_part,
    query_history,
    query_parts,
)

log = logging.getLogger(__name__)

PART_COLUMNS: tuple[str, ...] = ("Time", "Part", "Verdict", "Trigger→verdict", "Incomplete", "Reason")
#: Placeholders of a camera tile, by what the part holds for that camera.
NO_IMAGE_OK = "no image kept (OK)"
NO_IMAGE_MISSING = "no image — missing at the deadline"
NO_FRAME_STORED = "no frame stored for this part"
_RANGES = tuple((label, span) for label, span in TIME_RANGES if span != "custom")
_NG_BG = QColor(214, 40, 40, 40)
_INCOMPLETE_BG = QColor(240, 162, 2, 60)
_LATE_COLOUR = "#b36b00"


@dataclass(frozen=True)
class PartsFilter:
    """Which parts to show; None means "any"."""

    verdict: str | None = None
    incomplete: bool | None = None
    since: float | None = None
    until: float | None = None


def verdict_label(part: PartRow) -> str:
    """``OK``, ``NG`` or ``INCOMPLETE`` (an incomplete part is NG, told apart as on the live wall)."""
    return "INCOMPLETE" if part.incomplete else part.verdict


def timing_text(part: PartRow) -> str:
    """``"181 / 1000 ms"``, with ``" LATE"`` when the verdict missed its deadline."""
    budget = f" / {part.budget_ms:.0f}" if part.budget_ms > 0 else ""
    return f"{part.verdict_ms:.0f}{budget} ms{'' if part.deadline_met else ' LATE'}"


def _part_cell(r: PartRow, col: int) -> str:
    if col == 0:
        return datetime.fromtimestamp(r.triggered_at).strftime("%Y-%m-%d %H:%M:%S")
    if col == 1:
        return r.part_id
    if col == 2:
        return r.verdict
    if col == 3:
        return timing_text(r)
    if col == 4:
        return "INCOMPLETE" if r.incomplete else ""
    return r.reason


class PartsModel(PagedTableModel):
    """Parts matching a `PartsFilter`, newest first, fetched a page at a time (keyset paging).

    Args:
        engine: The inspection database.
        page_size: Rows per page.
    """

    COLUMNS = PART_COLUMNS

    def __init__(self, engine: Engine, *, page_size: int = 200, parent: Any = None) -> None:
        super().__init__(engine, PartsFilter(), page_size=page_size, parent=parent)

    def _page(self, before: tuple[float, int] | None) -> list[PartRow]:
        f = self.filter
        return query_parts(self.engine, verdict=f.verdict, since=f.since, until=f.until, incomplete=f.incomplete,
                           limit=self.page_size, before=before)

    def count(self) -> int:
        f = self.filter
        return count_parts(self.engine, verdict=f.verdict, since=f.since, until=f.until, incomplete=f.incomplete)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _part_cell(r, col)
        if role == Qt.ItemDataRole.UserRole:
            return r
        if role == Qt.ItemDataRole.ToolTipRole and col == 4 and r.incomplete:
            return "no image at the deadline from " + ", ".join(r.missing)
        if role == Qt.ItemDataRole.BackgroundRole:
            return _INCOMPLETE_BG if r.incomplete else _NG_BG if r.verdict == "NG" else None
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 2:
                return QColor("#b3261e") if r.verdict == "NG" else QColor("#1a7f37")
            if (col == 3 and not r.deadline_met) or (col == 4 and r.incomplete):
                return QColor("#8a5300")
        if role == Qt.ItemDataRole.FontRole and (col == 2 or (col == 4 and r.incomplete)):
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class PartsFilterBar(QWidget):
    """Time range, verdict and "incomplete only"; `PartsView` reads it with `current`."""

    def __init__(self, *, default_range: int = 2, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.range_combo = QComboBox()
        for label, _ in _RANGES:
            self.range_combo.addItem(label)
        self.range_combo.setCurrentIndex(min(default_range, len(_RANGES) - 1))
        self.verdict_combo = QComboBox()
        for label, v in (("OK and NG", None), ("NG only", "NG"), ("OK only", "OK")):
            self.verdict_combo.addItem(label, v)
        self.incomplete_box = QCheckBox("Incomplete only")
        self.incomplete_box.setToolTip("Parts failed safe because a camera had no image at the deadline")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.range_combo, self.verdict_combo, self.incomplete_box):
            lay.addWidget(w)
        lay.addStretch(1)

    def current(self, now: float | None = None) -> PartsFilter:
        """The filter the widgets describe (time ranges relative to ``now``, which ends them: the count,
        the pages and an export later are the same parts while the line goes on; Refresh moves it)."""
        now = time.time() if now is None else now
        span = _RANGES[self.range_combo.currentIndex()][1]
        return PartsFilter(
            verdict=self.verdict_combo.currentData(),
            incomplete=True if self.incomplete_box.isChecked() else None,
            since=now - span if isinstance(span, float) else None,
            until=now,
        )


class _TileImage(InspectionImageView):
    """The image of a tile: smaller than the inspection view's, so 4 cameras fit without scrolling."""

    def sizeHint(self) -> QSize:
        return QSize(260, 190)


def tile_columns(cameras: int) -> int:
    """Tiles per row: 2 up to 4 cameras, 3 for up to 9, else 4."""
    return 2 if cameras <= 4 else 3 if cameras <= 9 else 4


class CameraTile(QFrame):
    """One expected camera of a part: its image (or why there is none) and its verdict line.

    Attributes:
        camera_id: The camera.
        frame: Its on-time frame, or its late one for a camera missing at the deadline (None: no frame).
        missing: The camera had no image at the part's deadline.
    """

    def __init__(self, engine: Engine, camera_id: str, frame: HistoryRow | None, *, missing: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera_id = camera_id
        self.frame = frame
        self.missing = missing
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.image = _TileImage()
        self.image.setMinimumSize(160, 120)
        dets: list[dict[str, Any]] = []
        if frame is not None and frame.image_path:
            try:
                dets = get_inspection(engine, frame.id)[1]
            except KeyError:
                dets = []
            self.image.show_inspection(frame.image_path, dets)
        if self.image.image is None:
            self.image.clear(self._placeholder())
        self.text = QLabel(self._caption())
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        if missing:
            self.setStyleSheet(f"CameraTile {{ border: 2px solid {STALE_COLOUR.name()}; }}")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.image, 1)
        lay.addWidget(self.text)

    def _placeholder(self) -> str:
        f = self.frame
        if self.missing:
            return NO_IMAGE_MISSING if f is None else f"{NO_IMAGE_MISSING}\n(late frame {f.verdict}, after the verdict)"
        if f is None:
            return NO_FRAME_STORED
        if f.verdict == "OK":
            return NO_IMAGE_OK
        return self.image.placeholder  # NG: "image not saved (or removed by retention)" and the like

    def _caption(self) -> str:
        f = self.frame
        head = f"<b>{self.camera_id}</b>"
        if self.missing:
            head += f" · <span style='color:{_LATE_COLOUR}'><b>MISSING at the deadline</b></span>"
        if f is None:
            return head if self.missing else f"{head} · {NO_FRAME_STORED}"
        colour = NG_COLOUR.name() if f.verdict == "NG" else OK_COLOUR.name()
        verdict = f"<span style='color:{colour}'><b>{f.verdict}</b></span> · {f.rule}"
        details = f"{f.classes or 'no defects'} · #{f.sequence} · {f.total_ms:.0f} ms"
        if f.late:  # stored under its part, never counted for it
            late = f"<span style='color:{_LATE_COLOUR}'><b>LATE</b></span>"
            return f"{head}<br>{late} frame, after the verdict (not counted): {verdict}<br>{details}"
        return f"{head} · {verdict}<br>{details}"

    def placeholder(self) -> str:
        """What the tile shows instead of an image ('' when it shows one)."""
        return "" if self.image.image is not None else self.image.placeholder


def frames_of(engine: Engine, part: PartRow) -> PartDetail:
    """The part with its frames, exactly this row even when its part id repeats.

    `get_part` returns the newest part with an id; for an older part with the same id the
    frames are read from the part's trigger up to (half the gap to) that newer part.
    """
    detail = get_part(engine, part.part_id, line=part.line)
    if detail is not None and detail.part.id == part.id:
        return detail
    t = part.triggered_at
    until = None
    if detail is not None and detail.part.triggered_at > t:
        nxt = detail.part.triggered_at
        until = nxt - min(PART_CLOCK_SLACK_S, (nxt - t) / 2)
    rows = query_history(engine, HistoryFilter(part_id=part.part_id, since=t - PART_CLOCK_SLACK_S, until=until),
                         limit=max(64, 4 * len(part.expected)))
    if part.expected:
        rows = [r for r in rows if r.camera_id in part.expected]
    rows.sort(key=lambda r: (r.late, r.camera_id, r.acquired_at, r.id))
    return PartDetail(part, tuple(rows))


class PartDetailPanel(QWidget):
    """A part's header (verdict, reason, timing) and one `CameraTile` per expected camera."""

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.detail: PartDetail | None = None
        self.tiles: dict[str, CameraTile] = {}
        self.head = InfoLabel()
        self.head.setTextFormat(Qt.TextFormat.RichText)
        self.head.setText("select a part")
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.grid_host)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.head)
        lay.addWidget(scroll, 1)

    def clear(self, text: str = "select a part") -> None:
        self.detail = None
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
            tile.deleteLater()
        self.tiles = {}
        self.head.setText(text)

    def show_part(self, part: PartRow) -> PartDetail:
        """Show ``part``: every expected camera, its frame and image, missing and late ones marked."""
        self.clear()
        detail = frames_of(self.engine, part)
        self.detail = detail
        on_time: dict[str, HistoryRow] = {}
        late: dict[str, HistoryRow] = {}
        for f in detail.frames:
            (late if f.late else on_time).setdefault(f.camera_id, f)
        cameras = list(part.expected) or sorted({f.camera_id for f in detail.frames})
        cols = tile_columns(len(cameras))
        for i, cam in enumerate(cameras):
            frame = on_time.get(cam) or late.get(cam)
            tile = CameraTile(self.engine, cam, frame, missing=cam in part.missing)
            self.tiles[cam] = tile
            self.grid.addWidget(tile, i // cols, i % cols)
        when = datetime.fromtimestamp(part.triggered_at).strftime("%Y-%m-%d %H:%M:%S")
        colour = _LATE_COLOUR if part.incomplete else NG_COLOUR.name() if part.verdict == "NG" else OK_COLOUR.name()
        deadline = "" if part.deadline_met else f" · <b style='color:{_LATE_COLOUR}'>DEADLINE&nbsp;MISSED</b>"
        missing = (f"<br><b style='color:{_LATE_COLOUR}'>no image at the deadline from {', '.join(part.missing)}</b>"
                   if part.missing else "")
        n_late = sum(1 for f in detail.frames if f.late)
        self.head.setText(
            f"<b>Part {part.part_id}</b> · <b style='color:{colour}'>{verdict_label(part)}</b> · {part.reason}<br>"
            f"{part.line} · {when} · trigger {part.trigger_id} · trigger→verdict {timing_text(part).removesuffix(' LATE')}"
            f"{' budget' if part.budget_ms > 0 else ''}{deadline}"
            f"{f' · recipe {part.recipe}' if part.recipe else ''}"
            f"{f' · {n_late} late frame(s)' if n_late else ''}{missing}"
        )
        return detail


class PartsView(QWidget):
    """Filters, the parts table (paged as the user scrolls) and the selected part's cameras.

    Args:
        engine: The inspection database.
        page_size: Parts per fetched page.
        default_range: Index into the time ranges (``TIME_RANGES`` without "Custom…").
    """

    def __init__(self, engine: Engine, *, page_size: int = 200, default_range: int = 2,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.model = PartsModel(engine, page_size=page_size, parent=self)
        self.filter_bar = PartsFilterBar(default_range=default_range)
        for combo in (self.filter_bar.range_combo, self.filter_bar.verdict_combo):
            combo.currentIndexChanged.connect(lambda _i: self.apply_filter())
        self.filter_bar.incomplete_box.toggled.connect(lambda _on: self.apply_filter())
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.filter_bar, 1)
        top.addWidget(refresh)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((136, 100, 54, 122, 96)):
            self.table.setColumnWidth(col, width)
        hh.setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.count_label = QLabel()
        self.detail = PartDetailPanel(engine)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.table, 1)
        ll.addWidget(self.count_label)
        split.addWidget(left)
        split.addWidget(self.detail)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([720, 560])
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.addLayout(top)
        root.addWidget(split, 1)

    def apply_filter(self, flt: PartsFilter | None = None) -> None:
        """Show the first page for ``flt`` (default: the filter bar's); the count follows."""
        flt = flt if flt is not None else self.filter_bar.current()
        self.model.set_filter(flt)
        self.detail.clear()
        self.count_label.setText(f"{len(self.model.rows):,}{'+' if not self.model.exhausted else ''} parts…")
        QTimer.singleShot(0, self._update_count)  # the first page shows before the count query runs

    def refresh(self) -> None:
        """Re-run the filter (time ranges move to now; new parts appear)."""
        self.apply_filter()

    def _update_count(self) -> None:
        n = self.model.count()
        self.count_label.setText(f"{n:,} parts match · {len(self.model.rows):,} loaded")

    def select_row(self, i: int) -> None:
        """Select (and show) table row ``i``."""
        self.table.selectRow(i)
        self.table.setCurrentIndex(self.model.index(i, 0))

    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.detail.show_part(self.model.row_at(current.row()))
