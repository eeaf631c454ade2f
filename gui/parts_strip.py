"""`PartsStrip`: a triggered line's last parts as chips, newest first; `PartDialog` opens one part."""

from __future__ import annotations

import logging

import cv2
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from gui.bridge import EngineBridge, frame_size
from gui.imaging import NG_COLOUR, OK_COLOUR, STALE_COLOUR, boxes_from, draw_boxes, frame_to_display
from inspector.pipeline.results import InspectionResult, PartResult

log = logging.getLogger(__name__)

CHIP_W = 72
CHIP_GAP = 4
STRIP_H = 42
#: Incomplete parts are NG too (fail safe), but told apart: amber, hatched, and the word.
INCOMPLETE_COLOUR = STALE_COLOUR
THUMB_PX = 220


def chip_label(part: PartResult) -> str:
    """The word on a part's chip: ``OK``, ``NG`` or ``INCOMPLETE``."""
    return "INCOMPLETE" if part.incomplete else part.verdict.value


def word_font(base: QFont, text: str, width: float, pixel_size: int = 11) -> QFont:
    """``base`` bold at ``pixel_size`` or smaller, so that ``text`` fits ``width`` ("INCOMPLETE" in a chip)."""
    font = QFont(base)
    font.setBold(True)
    for size in range(pixel_size, 6, -1):
        font.setPixelSize(size)
        if QFontMetricsF(font).horizontalAdvance(text) <= width:
            break
    return font


def chip_colour(part: PartResult) -> QColor:
    return INCOMPLETE_COLOUR if part.incomplete else NG_COLOUR if part.ng else OK_COLOUR


def part_thumbnails(part: PartResult, bridge: EngineBridge) -> dict[str, QImage]:
    """Small copies (with boxes) of the part's frames the bridge still holds; cameras given back are left out."""
    out = {}
    for f in part.frames:
        h = bridge.part_frame(part.part_id, f.camera_id)
        if h is None:
            continue
        try:
            fw, fh = frame_size(h)
            scale = THUMB_PX / max(fw, fh, 1)
            image = frame_to_display(h.image, h.pixel_format, (max(1, round(fw * scale)), max(1, round(fh * scale))))
        except (ValueError, IndexError, cv2.error) as exc:
            log.debug("part %s camera %s: frame not shown: %s", part.part_id, f.camera_id, exc)
            continue
        finally:
            h.release()
        image = image.convertToFormat(QImage.Format.Format_RGB32)
        p = QPainter(image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        draw_boxes(p, boxes_from(f.detections), QRectF(image.rect()), fw, fh, font_px=10)
        p.end()
        out[f.camera_id] = image
    return out


class PartsStrip(QWidget):
    """The last parts (up to the bridge's 20) as coloured chips, newest at the left.

    Args:
        bridge: The engine bridge (its recent parts).
    """

    part_clicked = Signal(object)  # PartResult

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.parts: list[PartResult] = []  # newest first
        self.thumbs: dict[str, dict[str, QImage]] = {}  # part id -> camera -> picture copied when first seen
        self.setFixedHeight(STRIP_H)
        self.setMouseTracking(True)
        self.setToolTip("The last parts, newest first: click one to open it")

    def sizeHint(self) -> QSize:
        return QSize(20 * (CHIP_W + CHIP_GAP), STRIP_H)

    def refresh(self) -> None:
        """Take the bridge's recent parts; repaint if a part was decided since."""
        parts = self.bridge.recent_parts()
        if [p.part_id for p in parts] != [p.part_id for p in self.parts]:
            self.parts = parts
            for part in parts:  # copy small pictures while the bridge still holds the frames
                if part.part_id not in self.thumbs:
                    self.thumbs[part.part_id] = part_thumbnails(part, self.bridge)
            keep = {p.part_id for p in parts}
            self.thumbs = {pid: t for pid, t in self.thumbs.items() if pid in keep}
            self.update()

    def chip_rects(self) -> list[QRectF]:
        """Where the visible chips are, left (newest) to right."""
        fit = max(0, int((self.width() - CHIP_GAP + CHIP_GAP) // (CHIP_W + CHIP_GAP)))
        return [QRectF(CHIP_GAP + i * (CHIP_W + CHIP_GAP), 4, CHIP_W, STRIP_H - 8) for i in range(min(fit, len(self.parts)))]

    def chips(self) -> list[tuple[str, str]]:
        """The visible chips as ``(part id, label)``, newest first."""
        return [(p.part_id, chip_label(p)) for p, _ in zip(self.parts, self.chip_rects(), strict=False)]

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#15191c"))
        if not self.parts:
            p.setPen(QColor("#7a848c"))
            p.drawText(QRectF(self.rect()).adjusted(8, 0, 0, 0), int(Qt.AlignmentFlag.AlignVCenter), "no part decided yet")
        id_font = QFont(self.font())
        id_font.setPixelSize(11)
        fm = QFontMetricsF(id_font)
        words = {w: word_font(self.font(), w, CHIP_W - 6) for w in ("OK", "NG", "INCOMPLETE")}  # never clipped
        for part, r in zip(self.parts, self.chip_rects(), strict=False):
            colour = chip_colour(part)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colour)
            p.drawRoundedRect(r, 4, 4)
            if part.incomplete:  # hatched, so it is not "just another NG" even in grey-scale
                p.setBrush(QBrush(QColor(0, 0, 0, 70), Qt.BrushStyle.BDiagPattern))
                p.drawRoundedRect(r, 4, 4)
            ink = QColor("black") if part.incomplete else QColor("white")
            p.setPen(ink)
            p.setFont(id_font)
            top = QRectF(r.x() + 3, r.y() + 1, r.width() - 6, r.height() / 2)
            p.drawText(top, int(Qt.AlignmentFlag.AlignCenter), fm.elidedText(part.part_id, Qt.TextElideMode.ElideLeft, top.width()))
            p.setFont(words[chip_label(part)])
            p.drawText(QRectF(r.x(), r.center().y(), r.width(), r.height() / 2 - 1), int(Qt.AlignmentFlag.AlignCenter), chip_label(part))
            if not part.deadline_met:
                p.setPen(QPen(QColor("white"), 2))
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRoundedRect(r.adjusted(1, 1, -1, -1), 4, 4)
        p.end()

    def part_at(self, x: float, y: float) -> PartResult | None:
        for part, r in zip(self.parts, self.chip_rects(), strict=False):
            if r.contains(x, y):
                return part
        return None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        part = self.part_at(event.position().x(), event.position().y())
        if part is not None:
            self.part_clicked.emit(part)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        part = self.part_at(event.position().x(), event.position().y())
        self.setToolTip(f"part {part.part_id}: {part.verdict.value} · {part.reason}" if part is not None else "")


class PartDialog(QDialog):
    """One part: its verdict and reason, and each camera's verdict, rule and image (if still held).

    The images are copied when the dialog opens; a frame the display already gave back
    says "image released", a camera missing from the part says "no image".
    """

    def __init__(self, part: PartResult, bridge: EngineBridge, thumbs: dict[str, QImage] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.part = part
        # pictures copied when the part was decided, topped up from frames the bridge still holds
        self.thumbs = {**(thumbs or {}), **part_thumbnails(part, bridge)}
        self.setWindowTitle(f"Part {part.part_id} — {chip_label(part)}")
        head = QLabel(
            f"<b>Part {part.part_id}</b> · <b>{chip_label(part)}</b> · {part.reason}<br>"
            f"trigger→verdict {part.times.verdict_ms:.0f} ms / {part.budget_ms:.0f} ms budget"
            f"{'' if part.deadline_met else ' · DEADLINE MISSED'} · trigger {part.trigger_id}"
        )
        head.setTextFormat(Qt.TextFormat.RichText)
        by_camera = {f.camera_id: f for f in part.frames}
        grid = QGridLayout()
        self.cards: dict[str, tuple[QLabel, QLabel]] = {}  # camera -> (image or its absence, text)
        cams = list(part.expected) or list(by_camera)
        cols = 4 if len(cams) > 4 else max(1, len(cams))
        for i, cid in enumerate(cams):
            card = self._card(cid, by_camera.get(cid))
            grid.addWidget(card, i // cols, i % cols)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        root = QVBoxLayout(self)
        root.addWidget(head)
        root.addLayout(grid)
        root.addWidget(buttons)

    def _card(self, camera_id: str, result: InspectionResult | None) -> QFrame:
        frame = QFrame()
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        picture = QLabel()
        picture.setFixedSize(THUMB_PX, THUMB_PX)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        picture.setStyleSheet("background: #111417; color: #c9d1d9;")
        if result is None:
            picture.setText("no image\n(missing from the part)")
            text = f"<b>{camera_id}</b> · <span style='color:#b36b00'><b>no image</b></span>"
        else:
            thumb = self.thumbs.get(camera_id)
            if thumb is None:
                picture.setText("image released")
            else:
                picture.setPixmap(QPixmap.fromImage(thumb))
            colour = NG_COLOUR.name() if result.ng else OK_COLOUR.name()
            text = f"<b>{camera_id}</b> · <span style='color:{colour}'><b>{result.verdict.value}</b></span> · {result.rule}"
        label = QLabel(text)
        label.setTextFormat(Qt.TextFormat.RichText)
        lay = QVBoxLayout(frame)
        lay.addWidget(picture)
        lay.addWidget(label)
        self.cards[camera_id] = (picture, label)
        return frame
