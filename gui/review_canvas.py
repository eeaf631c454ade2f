"""The history's image view as a box-by-box review canvas: confirm or reject each detection, draw, move,
resize and delete boxes with a class, mark the image clean, undo.

Mouse: click a box to select it; drag its inside to move it, a corner to resize it; with "new box"
armed (N), drag on the image to draw one. Keyboard: N new box, Del/Backspace delete (a detection is
rejected, a drawn box removed), A confirm, R reject, 1-9 class, Tab next box, arrows move by a pixel
(Shift: ten), C clean, Ctrl+Z undo, Esc cancel drawing.

Edits stay in the canvas until the history tab saves them (`reviewed_boxes`). A detection nobody
touched counts as confirmed when the verdict counted it and as rejected when a rule did not
(below its threshold): what the reviewer saw and let stand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QWidget

from gui.history_widgets import InspectionImageView
from gui.imaging import class_colour, fit_rect
from inspector.storage.box_review import MIN_BOX_PX, BoxReview, ReviewedBox

#: Widget pixels around a corner that grab it for resizing.
HANDLE_PX = 7.0
#: Undo steps kept per image.
UNDO_DEPTH = 200
#: The box tool bar's buttons: key -> (label, tooltip)
BOX_ACTIONS: dict[str, tuple[str, str]] = {
    "new": ("New box (N)", "drag on the image to draw a box of the chosen class: a defect the model missed"),
    "reject": ("Reject box (Del)", "the selected detection is wrong: it leaves the labels, the image's other boxes stay"),
    "undo": ("Undo (Ctrl+Z)", "take back the last box edit"),
    "clean": ("Mark clean (C)", "no defect on this image: saved with an empty label file"),
    "save": ("Save boxes (Ctrl+S)", "store the boxes as this image's labels (the YOLO export writes exactly these)"),
}
_TAG = {"pending": "", "confirmed": " ✓", "edited": " ✎", "drawn": " +", "rejected": " ✗"}


@dataclass(frozen=True)
class CanvasBox:
    """A box on the canvas, in image pixels.

    ``status`` is ``pending`` (a detection not yet judged), or one of the stored statuses
    (`inspector.storage.models.BOX_STATUSES`). ``accepted`` is whether the verdict counted the detection.
    """

    class_id: int
    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float
    status: str = "drawn"
    detection_id: int | None = None
    score: float | None = None
    accepted: bool = True

    @property
    def kept(self) -> bool:
        """Whether the box would be a label if saved now."""
        if self.status == "pending":
            return self.accepted
        return self.status != "rejected"

    def moved_to(self, x1: float, y1: float, x2: float, y2: float) -> CanvasBox:
        status = self.status if self.status == "drawn" else "edited"
        return dataclasses.replace(self, x1=x1, y1=y1, x2=x2, y2=y2, status=status)


class ReviewCanvas(InspectionImageView):
    """The inspection's image with its boxes, editable box by box.

    Args:
        classes: The model's class names (index = class id; keys 1-9 pick them).
    """

    changed = Signal()

    def __init__(self, classes: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.classes = tuple(classes)
        self.items: list[CanvasBox] = []
        self.selected: int | None = None
        self.draw_class = 0
        self.drawing = False  # "new box" armed: the next drag on the image draws one
        self.editable = False
        self.dirty = False
        self._undo: list[tuple[list[CanvasBox], int | None]] = []
        self._drag: tuple[str, int, QPointF, CanvasBox] | None = None  # (what, box, start in image px, box then)
        self._rubber: tuple[QPointF, QPointF] | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)

    # ------------------------------------------------------------------ loading and saving
    def load_review(self, detections: Sequence[dict[str, Any]], review: BoxReview | None, *, editable: bool) -> None:
        """Show these detections (``get_inspection``'s dicts), as a saved box review left them if any."""
        by_det = {b.detection_id: b for b in review.boxes if b.detection_id is not None} if review else {}
        items: list[CanvasBox] = []
        for d in detections:
            saved = by_det.get(int(d["id"]))
            base = CanvasBox(int(d["class_id"]), str(d["class_name"]), float(d["x1"]), float(d["y1"]), float(d["x2"]),
                             float(d["y2"]), "pending", int(d["id"]), float(d["score"]), bool(d["accepted"]))
            if saved is not None:
                base = dataclasses.replace(base, class_id=saved.class_id, class_name=saved.class_name, x1=saved.x1,
                                           y1=saved.y1, x2=saved.x2, y2=saved.y2, status=saved.status)
            items.append(base)
        if review is not None:
            items += [CanvasBox(b.class_id, b.class_name, b.x1, b.y1, b.x2, b.y2) for b in review.boxes
                      if b.detection_id is None]
        self.items, self.selected, self._undo, self.dirty = items, None, [], False
        self.drawing, self._drag, self._rubber = False, None, None
        self.editable = editable and self.image is not None
        self.update()

    def clear(self, text: str = "select an inspection") -> None:
        self.items, self.selected, self._undo, self.dirty, self.editable = [], None, [], False, False
        super().clear(text)

    def reviewed_boxes(self) -> list[ReviewedBox]:
        """The boxes to store: untouched detections settled (confirmed if counted, else rejected)."""
        out = []
        for b in self.items:
            status = ("confirmed" if b.accepted else "rejected") if b.status == "pending" else b.status
            out.append(ReviewedBox(b.class_id, b.class_name, b.x1, b.y1, b.x2, b.y2, status, b.detection_id))
        return out

    def labels(self) -> list[CanvasBox]:
        """The boxes that would be labels if saved now."""
        return [b for b in self.items if b.kept]

    # ------------------------------------------------------------------ edits (each undoable)
    def _edit(self) -> None:
        self._undo.append((list(self.items), self.selected))
        del self._undo[:-UNDO_DEPTH]

    def _done(self) -> None:
        self.dirty = True
        self.update()
        self.changed.emit()

    def select(self, i: int | None) -> None:
        self.selected = i if i is not None and 0 <= i < len(self.items) else None
        self.update()

    def set_status(self, i: int, status: str) -> None:
        """Confirm (``confirmed``) or reject (``rejected``) box ``i``; a drawn box is only ever removed."""
        if not self.editable or not 0 <= i < len(self.items) or self.items[i].status == "drawn":
            return
        b = self.items[i]
        if status == "confirmed" and b.status == "edited":
            return  # an edited box is confirmed already, with its edit
        self._edit()
        self.items[i] = dataclasses.replace(b, status=status)
        self._done()

    def delete(self, i: int) -> None:
        """Delete box ``i``: a detection is rejected (kept on record), a drawn box goes."""
        if not self.editable or not 0 <= i < len(self.items):
            return
        if self.items[i].status != "drawn":
            self.set_status(i, "rejected")
            return
        self._edit()
        del self.items[i]
        self.selected = None
        self._done()

    def set_class(self, class_id: int) -> None:
        """Give the selected box this class (and use it for the next drawn box)."""
        if not 0 <= class_id < len(self.classes):
            return
        self.draw_class = class_id
        i = self.selected
        if not self.editable or i is None or self.items[i].class_id == class_id:
            self.update()
            return
        self._edit()
        b = self.items[i]
        status = b.status if b.status in ("drawn", "rejected") else "edited"  # a rejected box stays rejected
        self.items[i] = dataclasses.replace(b, class_id=class_id, class_name=self.classes[class_id], status=status)
        self._done()

    def add_box(self, x1: float, y1: float, x2: float, y2: float, class_id: int | None = None) -> int | None:
        """Draw a box (image pixels, clipped to the image); returns its index, None if too small."""
        if not self.editable or self.image is None:
            return None
        cid = self.draw_class if class_id is None else class_id
        if not 0 <= cid < len(self.classes):
            return None
        r = self._clip(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        if r is None:
            return None
        self._edit()
        self.items.append(CanvasBox(cid, self.classes[cid], *r))
        self.selected = len(self.items) - 1
        self._done()
        return self.selected

    def place(self, i: int, x1: float, y1: float, x2: float, y2: float) -> bool:
        """Move or resize box ``i`` to these edges (image pixels, clipped); False if too small."""
        if not self.editable or not 0 <= i < len(self.items):
            return False
        r = self._clip(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        if r is None:
            return False
        self._edit()
        self.items[i] = self.items[i].moved_to(*r)
        self._done()
        return True

    def nudge(self, dx: float, dy: float) -> None:
        """Move the selected box by whole pixels, staying on the image."""
        i = self.selected
        if i is None or self.image is None:
            return
        b = self.items[i]
        dx = min(max(dx, -b.x1), self.image.width() - b.x2)
        dy = min(max(dy, -b.y1), self.image.height() - b.y2)
        if dx or dy:
            self.place(i, b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy)

    def mark_clean(self) -> None:
        """No defect on this image: every detection rejected, drawn boxes removed."""
        if not self.editable:
            return
        self._edit()
        self.items = [dataclasses.replace(b, status="rejected") for b in self.items if b.status != "drawn"]
        self.selected = None
        self._done()

    def undo(self) -> bool:
        """Take back the last edit; False when there is none."""
        if not self._undo:
            return False
        self.items, self.selected = self._undo.pop()
        self.dirty = bool(self._undo) or self.dirty
        self.update()
        self.changed.emit()
        return True

    def arm_drawing(self, on: bool = True) -> None:
        """The next drag on the image draws a box of `draw_class` (N)."""
        self.drawing = on and self.editable
        self.setCursor(Qt.CursorShape.CrossCursor if self.drawing else Qt.CursorShape.ArrowCursor)
        self.update()

    def _clip(self, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float] | None:
        assert self.image is not None
        w, h = self.image.width(), self.image.height()
        x1, x2 = max(0.0, min(x1, w)), max(0.0, min(x2, w))
        y1, y2 = max(0.0, min(y1, h)), max(0.0, min(y2, h))
        if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
            return None
        return (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))

    # ------------------------------------------------------------------ geometry
    def image_rect(self) -> QRectF:
        """Where the image is drawn in the widget."""
        if self.image is None:
            return QRectF()
        return fit_rect(self.image.width(), self.image.height(), QRectF(self.rect()).adjusted(4, 4, -4, -4))

    def to_image(self, p: QPointF) -> QPointF:
        """A widget point in image pixels."""
        t = self.image_rect()
        assert self.image is not None
        return QPointF((p.x() - t.x()) * self.image.width() / t.width(), (p.y() - t.y()) * self.image.height() / t.height())

    def to_widget(self, x: float, y: float) -> QPointF:
        """An image pixel position in widget coordinates."""
        t = self.image_rect()
        assert self.image is not None
        return QPointF(t.x() + x * t.width() / self.image.width(), t.y() + y * t.height() / self.image.height())

    def box_rect(self, i: int) -> QRectF:
        b = self.items[i]
        return QRectF(self.to_widget(b.x1, b.y1), self.to_widget(b.x2, b.y2))

    def _hit(self, p: QPointF) -> tuple[str, int] | None:
        """What a press at ``p`` grabs: a corner of the selected box, else the smallest box under it."""
        if self.selected is not None:
            r = self.box_rect(self.selected)
            for name, c in (("tl", r.topLeft()), ("tr", r.topRight()), ("bl", r.bottomLeft()), ("br", r.bottomRight())):
                if abs(p.x() - c.x()) <= HANDLE_PX and abs(p.y() - c.y()) <= HANDLE_PX:
                    return name, self.selected
        under = [(self.box_rect(i).width() * self.box_rect(i).height(), i) for i in range(len(self.items))
                 if self.box_rect(i).adjusted(-2, -2, 2, 2).contains(p)]
        return ("move", min(under)[1]) if under else None

    # ------------------------------------------------------------------ mouse and keys
    def mousePressEvent(self, e: QMouseEvent) -> None:
        self.setFocus()
        if self.image is None or e.button() != Qt.MouseButton.LeftButton:
            return
        p = e.position()
        start = self.to_image(p)
        if self.drawing and self.image_rect().contains(p):
            self._rubber = (start, start)
            return
        hit = self._hit(p)
        self.select(hit[1] if hit else None)
        if hit is not None and self.editable:
            self._drag = (hit[0], hit[1], start, self.items[hit[1]])

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        if self.image is None:
            return
        q = self.to_image(e.position())
        if self._rubber is not None:
            self._rubber = (self._rubber[0], q)
            self.update()
        elif self._drag is not None:
            self._preview_drag(q)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        if self.image is None or e.button() != Qt.MouseButton.LeftButton:
            return
        q = self.to_image(e.position())
        if self._rubber is not None:
            a = self._rubber[0]
            self._rubber = None
            self.arm_drawing(False)
            if self.add_box(a.x(), a.y(), q.x(), q.y()) is None:
                self.update()
        elif self._drag is not None:
            what, i, start, before = self._drag
            self._drag = None
            edges = self._dragged(what, before, q.x() - start.x(), q.y() - start.y())
            if edges != (before.x1, before.y1, before.x2, before.y2):
                self.items[i] = before  # the preview goes; the edit is recorded once, undoable
                self.place(i, *edges)

    def _dragged(self, what: str, b: CanvasBox, dx: float, dy: float) -> tuple[float, float, float, float]:
        if what == "move":
            assert self.image is not None
            dx = min(max(dx, -b.x1), self.image.width() - b.x2)
            dy = min(max(dy, -b.y1), self.image.height() - b.y2)
            return (b.x1 + dx, b.y1 + dy, b.x2 + dx, b.y2 + dy)
        x1 = b.x1 + dx if what in ("tl", "bl") else b.x1
        x2 = b.x2 + dx if what in ("tr", "br") else b.x2
        y1 = b.y1 + dy if what in ("tl", "tr") else b.y1
        y2 = b.y2 + dy if what in ("bl", "br") else b.y2
        return (x1, y1, x2, y2)

    def _preview_drag(self, q: QPointF) -> None:
        assert self._drag is not None
        what, i, start, before = self._drag
        x1, y1, x2, y2 = self._dragged(what, before, q.x() - start.x(), q.y() - start.y())
        if abs(x2 - x1) >= MIN_BOX_PX and abs(y2 - y1) >= MIN_BOX_PX:
            self.items[i] = dataclasses.replace(before, x1=min(x1, x2), y1=min(y1, y2), x2=max(x1, x2), y2=max(y1, y2))
            self.update()

    def keyPressEvent(self, e: QKeyEvent) -> None:
        key, mods = e.key(), e.modifiers()
        step = 10.0 if mods & Qt.KeyboardModifier.ShiftModifier else 1.0
        i = self.selected
        if key == Qt.Key.Key_Z and mods & Qt.KeyboardModifier.ControlModifier:
            self.undo()
        elif key == Qt.Key.Key_N:
            self.arm_drawing(not self.drawing)
        elif key == Qt.Key.Key_Escape:
            self.arm_drawing(False)
            self.select(None)
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and i is not None:
            self.delete(i)
        elif key == Qt.Key.Key_A and i is not None:
            self.set_status(i, "confirmed")
        elif key == Qt.Key.Key_R and i is not None:
            self.set_status(i, "rejected")
        elif key == Qt.Key.Key_C and not mods:
            self.mark_clean()
        elif Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
            self.set_class(key - Qt.Key.Key_1)
        elif key == Qt.Key.Key_Tab and self.items:
            self.select(0 if i is None else (i + 1) % len(self.items))
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down) and i is not None:
            dx = {Qt.Key.Key_Left: -step, Qt.Key.Key_Right: step}.get(key, 0.0)  # type: ignore[call-overload]
            dy = {Qt.Key.Key_Up: -step, Qt.Key.Key_Down: step}.get(key, 0.0)  # type: ignore[call-overload]
            self.nudge(dx, dy)
        else:
            super().keyPressEvent(e)

    def focusNextPrevChild(self, _next: bool) -> bool:
        return False  # Tab walks the boxes, not the widgets

    # ------------------------------------------------------------------ painting
    def paintEvent(self, _e: QPaintEvent) -> None:
        begun = self.begin_paint()
        if begun is None or self.image is None:
            return
        p, r = begun
        target = self.image_rect()
        p.drawImage(target, self.image)
        self.heat.paint(p, target)
        font = QFont(p.font())
        font.setPixelSize(max(11, int(target.height() / 34)))
        font.setBold(True)
        p.setFont(font)
        fm = QFontMetricsF(font)
        for i, b in enumerate(self.items):
            self._paint_box(p, fm, i, b)
        if self._rubber is not None:
            a, z = self._rubber
            p.setPen(QPen(class_colour(self._class_name(self.draw_class)), 2.0, Qt.PenStyle.DashLine))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(self.to_widget(a.x(), a.y()), self.to_widget(z.x(), z.y())).normalized())
        if self.drawing or self.editable:
            hint = (f"drag to draw a {self._class_name(self.draw_class)} box (Esc: cancel)" if self.drawing else
                    "N new box · Del delete · A confirm · R reject · 1-4 class · C clean · Ctrl+Z undo")
            p.setPen(QColor("#d0d7de"))
            p.drawText(QRectF(r.x() + 6, r.bottom() - fm.height() - 4, r.width() - 12, fm.height() + 2),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), hint)

    def _class_name(self, class_id: int) -> str:
        return self.classes[class_id] if 0 <= class_id < len(self.classes) else str(class_id)

    def _paint_box(self, p: QPainter, fm: QFontMetricsF, i: int, b: CanvasBox) -> None:
        rect = self.box_rect(i)
        colour = class_colour(b.class_name) if b.kept else QColor(170, 170, 170)
        pen = QPen(colour, 3.0 if i == self.selected else 2.0)
        if not b.kept or b.status == "pending":
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(rect)
        score = f" {b.score:.2f}" if b.score is not None and b.status != "drawn" else ""
        tag = f"{b.class_name}{score}{_TAG.get(b.status, '')}"
        spot = QRectF(rect.x(), rect.y() - fm.height() - 2, fm.horizontalAdvance(tag) + 6, fm.height() + 2)
        if spot.top() < 0:
            spot.moveTop(rect.bottom())
        p.fillRect(spot, colour)
        p.setPen(QColor("black"))
        p.drawText(QPointF(spot.x() + 3, spot.y() + fm.ascent() + 1), tag)
        if i == self.selected:
            p.setBrush(QColor("white"))
            p.setPen(QPen(QColor("black"), 1.0))
            for c in (rect.topLeft(), rect.topRight(), rect.bottomLeft(), rect.bottomRight()):
                p.drawRect(QRectF(c.x() - 3.5, c.y() - 3.5, 7, 7))


class BoxToolbar(QWidget):
    """The class for boxes and the box actions of a `ReviewCanvas`; `save` asks the owner to store the boxes.

    Args:
        canvas: The canvas the buttons act on.
    """

    save = Signal()

    def __init__(self, canvas: ReviewCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.class_combo = QComboBox()
        for i, name in enumerate(canvas.classes):
            self.class_combo.addItem(f"{i + 1} {name}", i)
        self.class_combo.currentIndexChanged.connect(canvas.set_class)
        self.class_combo.setToolTip(f"the class of the selected box and of new boxes (keys 1-{len(canvas.classes)})")
        canvas.changed.connect(self._follow_class)
        self.buttons: dict[str, QPushButton] = {}
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.class_combo)
        for key, (label, _tip) in BOX_ACTIONS.items():
            b = QPushButton(label)
            b.clicked.connect(lambda _=False, k=key: self.act(k))
            self.buttons[key] = b
            lay.addWidget(b)

    def act(self, key: str) -> None:
        """One of `BOX_ACTIONS` (what the button does)."""
        c = self.canvas
        if key == "new":
            c.arm_drawing(True)
            c.setFocus()
        elif key == "reject" and c.selected is not None:
            c.delete(c.selected)
        elif key == "undo":
            c.undo()
        elif key == "clean":
            c.mark_clean()
            self.save.emit()
        elif key == "save":
            self.save.emit()

    def _follow_class(self) -> None:
        if 0 <= self.canvas.draw_class < self.class_combo.count():
            self.class_combo.blockSignals(True)
            self.class_combo.setCurrentIndex(self.canvas.draw_class)
            self.class_combo.blockSignals(False)
