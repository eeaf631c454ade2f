"""Pieces of the history browser: the filter bar and the NG image viewer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
from PySide6.QtCore import QDateTime, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QComboBox, QDateTimeEdit, QHBoxLayout, QLabel, QSizePolicy, QWidget

from gui.heatmap_overlay import HeatMapLayer
from gui.imaging import Box, boxes_from, draw_boxes, fit_rect, frame_to_qimage
from inspector.storage.history import HistoryFilter

#: Time-range choices: label -> seconds back from now (None: everything; "custom": the two editors).
TIME_RANGES: tuple[tuple[str, float | None | str], ...] = (
    ("Last hour", 3600.0),
    ("Last 8 h (shift)", 8 * 3600.0),
    ("Last 24 h", 24 * 3600.0),
    ("Last 7 days", 7 * 86400.0),
    ("All time", None),
    ("Custom…", "custom"),
)
REVIEW_CHOICES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Any review", {}),
    ("Not reviewed", {"reviewed": False}),
    ("Reviewed", {"reviewed": True}),
    ("Confirmed defect", {"review_mark": "confirmed"}),
    ("False call", {"review_mark": "false_call"}),
    ("Missed defect", {"review_mark": "missed"}),
)


class FilterBar(QWidget):
    """Time range, camera, class, verdict and review filters; emits `changed`.

    Args:
        cameras: Camera ids offered.
        classes: Defect class names offered.
        default_range: Index into `TIME_RANGES`.
    """

    changed = Signal(object)  # HistoryFilter

    def __init__(self, cameras: Sequence[str], classes: Sequence[str], *, default_range: int = 2,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.range_combo = QComboBox()
        for label, _ in TIME_RANGES:
            self.range_combo.addItem(label)
        self.range_combo.setCurrentIndex(default_range)
        now = QDateTime.currentDateTime()
        self.since_edit = QDateTimeEdit(now.addSecs(-24 * 3600))
        self.until_edit = QDateTimeEdit(now.addSecs(3600))
        for e in (self.since_edit, self.until_edit):
            e.setCalendarPopup(True)
            e.setDisplayFormat("yyyy-MM-dd HH:mm")
            e.setVisible(False)
        self.camera_combo = QComboBox()
        self.camera_combo.addItem("All cameras", None)
        for c in cameras:
            self.camera_combo.addItem(c, c)
        self.class_combo = QComboBox()
        self.class_combo.addItem("Any class", None)
        for c in classes:
            self.class_combo.addItem(c, c)
        self.verdict_combo = QComboBox()
        for label, v in (("OK and NG", None), ("NG only", "NG"), ("OK only", "OK")):
            self.verdict_combo.addItem(label, v)
        self.review_combo = QComboBox()
        for label, _ in REVIEW_CHOICES:
            self.review_combo.addItem(label)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.range_combo, self.since_edit, self.until_edit, self.camera_combo, self.class_combo,
                  self.verdict_combo, self.review_combo):
            lay.addWidget(w)
        lay.addStretch(1)
        for combo in (self.range_combo, self.camera_combo, self.class_combo, self.verdict_combo, self.review_combo):
            combo.currentIndexChanged.connect(self._emit)
        self.since_edit.dateTimeChanged.connect(self._emit)
        self.until_edit.dateTimeChanged.connect(self._emit)

    def current(self, now: float | None = None) -> HistoryFilter:
        """The filter the widgets describe (time ranges relative to ``now``).

        A relative range ("Last 24 h", "All time") ends at ``now``: the filter is frozen when
        the query runs, so its count, its pages and an export later are the same rows while
        the station writes on. A new query (Refresh, another filter) moves it to the new now.
        """
        now = time.time() if now is None else now
        kind = TIME_RANGES[self.range_combo.currentIndex()][1]
        since: float | None = None
        until: float | None = now
        if kind == "custom":
            since = self.since_edit.dateTime().toSecsSinceEpoch()
            until = self.until_edit.dateTime().toSecsSinceEpoch()
        elif isinstance(kind, float):
            since = now - kind
        review = REVIEW_CHOICES[self.review_combo.currentIndex()][1]
        return HistoryFilter(
            camera_id=self.camera_combo.currentData(),
            verdict=self.verdict_combo.currentData(),
            since=since,
            until=until,
            class_name=self.class_combo.currentData(),
            **review,
        )

    def _emit(self, *_args: object) -> None:
        custom = TIME_RANGES[self.range_combo.currentIndex()][1] == "custom"
        self.since_edit.setVisible(custom)
        self.until_edit.setVisible(custom)
        self.changed.emit(self.current())


class InspectionImageView(QWidget):
    """An archived NG image with its detection boxes (rejected ones dashed grey)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.boxes: list[Box] = []
        self.placeholder = "select an inspection"
        #: the anomaly heat map archived beside the image (drawn over it while enabled)
        self.heat = HeatMapLayer(enabled=True)
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 380)

    def show_inspection(self, image_path: str | None, detections: Sequence[dict[str, Any]]) -> bool:
        """Load the image (False and a placeholder if it was not saved or was purged)."""
        self.boxes = boxes_from(detections)
        self.image = None
        if not image_path:
            self.placeholder = "image not saved"
        elif not Path(image_path).is_file():
            self.placeholder = "image not saved (or removed by retention)"
        else:
            pixels = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
            if pixels is None:
                self.placeholder = "image unreadable"
            else:
                self.image = frame_to_qimage(pixels, "Mono8" if pixels.ndim == 2 else "BGR8")
        self.heat.load(image_path if self.image is not None else None)
        self.update()
        return self.image is not None

    def clear(self, text: str = "select an inspection") -> None:
        self.image, self.boxes, self.placeholder = None, [], text
        self.heat.set_heat(None)
        self.update()

    def begin_paint(self) -> tuple[QPainter, QRectF] | None:
        """A painter on the dark background and the widget's rect; None (the placeholder drawn) without an image."""
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        r = QRectF(self.rect())
        p.fillRect(r, QColor("#111417"))
        if self.image is None:
            p.setPen(QColor("#9aa4ad"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return None
        return p, r

    def paintEvent(self, _e: QPaintEvent) -> None:
        begun = self.begin_paint()
        if begun is None or self.image is None:
            return
        p, r = begun
        target = fit_rect(self.image.width(), self.image.height(), r.adjusted(4, 4, -4, -4))
        p.drawImage(target, self.image)
        self.heat.paint(p, target)
        draw_boxes(p, self.boxes, target, self.image.width(), self.image.height(), font_px=max(11, int(target.height() / 32)))


class InfoLabel(QLabel):
    """A selectable, word-wrapped label for inspection details."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
