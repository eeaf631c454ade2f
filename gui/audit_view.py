"""`AuditView`: the read-only audit trail (who changed what, when, old -> new)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inspector.access.control import StationControl
from inspector.access.users import AuditEntry

AUDIT_COLUMNS: tuple[str, ...] = ("Time", "User", "Action", "Target", "Old", "New")
_SINCE: tuple[tuple[str, float | None], ...] = (("Last 24 h", 86400.0), ("Last 7 days", 7 * 86400.0), ("All", None))


class AuditModel(QAbstractTableModel):
    """Audit rows, newest first. Read-only: no ``setData``, no editable flags."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[AuditEntry] = []

    def set_entries(self, entries: list[AuditEntry]) -> None:
        self.beginResetModel()
        self.entries = list(entries)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(AUDIT_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return AUDIT_COLUMNS[section]
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self.entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            col = index.column()
            if col == 0:
                return datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S")
            return (e.user, e.action, e.target, e.old or "", e.new or "")[col - 1]
        if role == Qt.ItemDataRole.ForegroundRole and e.action.endswith("_failed"):
            return QColor("#b3261e")
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{e.action} {e.target}: {e.old} -> {e.new}"
        return None


class AuditView(QWidget):
    """The audit trail, refreshed when the control API records something.

    Args:
        control: Where the rows come from.
        limit: Rows shown at most.
    """

    def __init__(self, control: StationControl, *, limit: int = 2000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.control = control
        self.limit = limit
        self.model = AuditModel(self)
        self.since_combo = QComboBox()
        for label, _ in _SINCE:
            self.since_combo.addItem(label)
        self.since_combo.setCurrentIndex(1)
        self.since_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        self.count_label = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("Audit trail (append-only)"))
        top.addStretch(1)
        top.addWidget(self.count_label)
        top.addWidget(self.since_combo)
        top.addWidget(refresh)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        for col, width in enumerate((150, 110, 170, 260, 120)):
            self.table.setColumnWidth(col, width)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the newest rows."""
        back = _SINCE[self.since_combo.currentIndex()][1]
        since = time.time() - back if back is not None else None
        self.model.set_entries(self.control.audit_entries(limit=self.limit, since=since))
        self.count_label.setText(f"{len(self.model.entries):,} rows")
