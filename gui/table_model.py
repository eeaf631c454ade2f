"""`PagedTableModel`: the table-model plumbing the history views share — rows, columns, header,
and keyset paging (the first page on a new filter, the next one as the user scrolls)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt


class PagedTableModel(QAbstractTableModel):
    """Rows matching ``self.filter``, newest first, a page at a time.

    Each page continues strictly after the last row held (its ``cursor``), so pages never
    overlap or skip rows while new ones are written. Subclasses give ``COLUMNS``, ``data``
    and ``_page(before)``.

    Args:
        engine: The inspection database.
        flt: The first filter.
        page_size: Rows per page.
    """

    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, engine: Any, flt: Any, *, page_size: int = 200, parent: Any = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.page_size = page_size
        self.filter = flt
        self.rows: list[Any] = []
        self.exhausted = True
        self.pages_fetched = 0
        self.last_fetch_s = 0.0

    def _page(self, before: tuple[float, int] | None) -> list[Any]:  # pragma: no cover - subclasses give it
        raise NotImplementedError

    def set_filter(self, flt: Any) -> None:
        """Show the first page of another filter."""
        t0 = time.perf_counter()
        old, self.filter = self.filter, flt
        try:
            first = self._page(None)
        except BaseException:
            self.filter = old
            raise
        self.beginResetModel()
        self.rows = first
        self.exhausted = len(first) < self.page_size
        self.pages_fetched = 1
        self.endResetModel()
        self.last_fetch_s = time.perf_counter() - t0

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self.exhausted

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:  # noqa: B008
        if parent.isValid() or self.exhausted:
            return
        t0 = time.perf_counter()
        page = self._page(self.rows[-1].cursor if self.rows else None)
        self.exhausted = len(page) < self.page_size
        if page:
            self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(page) - 1)
            self.rows.extend(page)
            self.endInsertRows()
            self.pages_fetched += 1
        self.last_fetch_s = time.perf_counter() - t0

    def row_at(self, i: int) -> Any:
        return self.rows[i]

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None
