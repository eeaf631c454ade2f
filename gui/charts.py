"""Small QPainter charts for the history statistics: yield per hour and defect Paretos."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from gui.imaging import NG_COLOUR, OK_COLOUR, STALE_COLOUR
from inspector.storage.history import HourlyYield

_AXIS = QColor("#8b949e")
_TEXT = QColor("#24292f")


class YieldChart(QWidget):
    """Yield (share of OK parts) per hour as bars, with the NG count on hover-free labels.

    Bars are green at or above ``target`` yield, amber within 5 points below, red below.
    """

    def __init__(self, parent: QWidget | None = None, *, target: float = 0.98) -> None:
        super().__init__(parent)
        self.hours: list[HourlyYield] = []
        self.target = target
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 200)

    def set_data(self, hours: Sequence[HourlyYield]) -> None:
        """Show these hours (oldest first); only the last 48 are drawn."""
        self.hours = list(hours)[-48:]
        self.update()

    def paintEvent(self, _e: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(44, 24, -10, -28)
        font = QFont(self.font())
        font.setPixelSize(11)
        p.setFont(font)
        fm = QFontMetricsF(font)
        p.setPen(_TEXT)
        title = QFont(font)
        title.setBold(True)
        p.setFont(title)
        p.drawText(QPointF(8, 15), "Yield per hour (local time)")
        p.setFont(font)
        if not self.hours:
            p.setPen(_AXIS)
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "no inspections in this range")
            return
        low = min(0.9, min(h.yield_ratio for h in self.hours))
        low = max(0.0, (int(low * 20) / 20))  # round down to 5 %
        span = 1.0 - low or 1.0
        p.setPen(QPen(_AXIS, 1))
        for frac in (0.0, 0.5, 1.0):
            y = r.bottom() - frac * r.height()
            p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
            p.drawText(QRectF(0, y - 8, 40, 16), int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), f"{100 * (low + frac * span):.0f}%")
        if low < self.target:
            ty = r.bottom() - (self.target - low) / span * r.height()
            p.setPen(QPen(QColor("#1f6feb"), 1, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(r.left(), ty), QPointF(r.right(), ty))
        n = len(self.hours)
        slot = r.width() / n
        bar_w = max(2.0, slot * 0.7)
        label_every = max(1, int(fm.horizontalAdvance("00h") * 1.8 / slot) + 1)
        for i, h in enumerate(self.hours):
            y = h.yield_ratio
            colour = OK_COLOUR if y >= self.target else (STALE_COLOUR if y >= self.target - 0.05 else NG_COLOUR)
            bh = max(1.0, (y - low) / span * r.height())
            x = r.left() + i * slot + (slot - bar_w) / 2
            p.fillRect(QRectF(x, r.bottom() - bh, bar_w, bh), colour)
            if i % label_every == 0:
                p.setPen(_TEXT)
                hour = datetime.fromtimestamp(h.hour_start).strftime("%Hh")
                p.drawText(QRectF(x - 10, r.bottom() + 2, bar_w + 20, 14), Qt.AlignmentFlag.AlignHCenter, hour)
        last = self.hours[-1]
        p.setPen(_TEXT)
        p.drawText(
            QRectF(r.left(), 4, r.width(), 14),
            Qt.AlignmentFlag.AlignRight,
            f"last hour {100 * last.yield_ratio:.2f}% of {last.total:,} ({last.ng:,} NG) · target {100 * self.target:.0f}%",
        )


class ParetoChart(QWidget):
    """Horizontal bars, largest first, with counts and each bar's share of the total.

    Args:
        title: Shown above the bars.
        colour_for: Optional label -> colour (e.g. class colours); default a single blue.
    """

    def __init__(self, title: str, parent: QWidget | None = None, *, colour_for: object = None) -> None:
        super().__init__(parent)
        self.title = title
        self.items: list[tuple[str, int]] = []
        self._colour_for = colour_for
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(300, 180)

    def set_data(self, items: Sequence[tuple[str, int]]) -> None:
        """``(label, count)`` pairs; sorted largest first, the top 10 drawn."""
        self.items = sorted(items, key=lambda kv: -kv[1])[:10]
        self.update()

    def paintEvent(self, _e: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPixelSize(11)
        title = QFont(font)
        title.setBold(True)
        p.setFont(title)
        p.setPen(_TEXT)
        p.drawText(QPointF(8, 15), self.title)
        p.setFont(font)
        fm = QFontMetricsF(font)
        r = QRectF(self.rect()).adjusted(8, 24, -8, -6)
        if not self.items:
            p.setPen(_AXIS)
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "no defects in this range")
            return
        total = sum(c for _, c in self.items) or 1
        label_w = min(r.width() * 0.4, max(fm.horizontalAdvance(lbl) for lbl, _ in self.items) + 8)
        count_w = fm.horizontalAdvance("999,999 (100%)") + 6
        row_h = min(24.0, r.height() / len(self.items))
        top = self.items[0][1] or 1
        for i, (label, count) in enumerate(self.items):
            y = r.top() + i * row_h
            p.setPen(_TEXT)
            p.drawText(QRectF(r.left(), y, label_w - 6, row_h), int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), label)
            bar_max = r.width() - label_w - count_w
            w = max(1.0, bar_max * count / top)
            colour = self._colour(label)
            p.fillRect(QRectF(r.left() + label_w, y + row_h * 0.15, w, row_h * 0.7), colour)
            p.drawText(
                QRectF(r.left() + label_w + w + 4, y, count_w, row_h),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                f"{count:,} ({100 * count / total:.0f}%)",
            )

    def _colour(self, label: str) -> QColor:
        if callable(self._colour_for):
            return QColor(self._colour_for(label))
        return QColor("#1f6feb")
