"""`CameraView`: one camera's newest frame with defect overlays, header and health badge."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from camera.frame_pool import FrameHandle
from camera.protocol import Camera, CameraState
from gui.bridge import CameraLive, EngineBridge
from gui.imaging import NG_COLOUR, OK_COLOUR, STALE_COLOUR, Box, boxes_from, draw_boxes, fit_rect, frame_to_display
from inspector.pipeline.results import InspectionResult, PartResult

#: A result's frame is shown (with its boxes) while it is at most this much older than the newest frame.
FRESH_RESULT_S = 0.6
HEADER_PX = 24


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Badge:
    """A health banner over the picture."""

    text: str
    detail: str
    colour: QColor


def health_badge(state: CameraState, frame_age_s: float | None, stale_after_s: float) -> Badge | None:
    """The banner for a camera's state and the age of its newest frame (None: healthy).

    A camera that says it streams but has delivered nothing for ``stale_after_s`` is shown
    STALE whatever it says; one that is offline, failed or stopped is shown OFFLINE.
    """
    age = "no frame yet" if frame_age_s is None else f"last frame {_age_text(frame_age_s)} ago"
    if state in (CameraState.OFFLINE, CameraState.ERROR, CameraState.OPEN, CameraState.CLOSED):
        label = {CameraState.ERROR: "ERROR", CameraState.OPEN: "STOPPED", CameraState.CLOSED: "CLOSED"}.get(state, "OFFLINE")
        return Badge(f"OFFLINE · {label}" if label != "OFFLINE" else "OFFLINE", age, NG_COLOUR)
    if state is CameraState.STALE or (frame_age_s is not None and frame_age_s > stale_after_s):
        return Badge("STALE", age, STALE_COLOUR)
    return None


def _age_text(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


class CameraView(QWidget):
    """Paints one camera: the newest inspected frame and its boxes, a header, a badge.

    On a triggered line the view shows the most recently decided part instead: this
    camera's frame of it with its boxes, the part id in the header, and "no image for
    part N" when the camera is missing from it (never an older frame).

    Otherwise `refresh` (called on the bridge's tick) picks the frame to show: the newest result's
    own frame while it is fresh, so boxes always sit on the pixels they were found in;
    otherwise the pool's newest frame (inspection paused or behind). The frame is turned
    into a QImage (one copy) and its reference released at once; painting uses the copy,
    which also keeps the last picture on screen when the camera stops.

    Args:
        camera: The camera (its pool and state are read).
        bridge: The engine bridge (newest results, rates).
        stale_after_s: Frames older than this make the view STALE even if the camera
            does not say so.
    """

    activated = Signal(str)  # double-click: camera id

    def __init__(self, camera: Camera, bridge: EngineBridge, *, stale_after_s: float = 3.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera = camera
        self.camera_id = camera.info.id
        self.bridge = bridge
        self.stale_after_s = stale_after_s
        self.image: QImage | None = None  # the shown frame, already scaled to `image_rect` (device pixels)
        self.frame_size: tuple[int, int] = (0, 0)  # the shown frame's own width and height
        self.image_sequence = -1
        self.boxes: list[Box] = []
        self.shown_result: InspectionResult | None = None
        self.newest_frame_wall: float | None = None  # acquisition time of the newest frame seen
        self.badge: Badge | None = None
        self.part_mode = getattr(bridge, "line", None) is not None
        self.shown_part: PartResult | None = None
        #: what the view shows of `shown_part`: "image", "missing" (not in the part), "released" (given back)
        self.part_state = ""
        self._born = time.time()
        self._header = ""
        self._fonts: tuple[QFont, tuple[QFont, QFontMetricsF, QFont, QFontMetricsF]] | None = None
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setToolTip(f"{self.camera_id}: double-click to enlarge")

    def sizeHint(self) -> QSize:
        return QSize(320, 280)

    # ------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Take the newest frame and result, recompute header and badge; repaint if changed."""
        changed = self._take_part() if self.part_mode else self._take_frame()
        live = self.bridge.live.get(self.camera_id) or CameraLive(self.camera_id)
        header = self._header_text(live)
        now = time.time()
        age = now - self.newest_frame_wall if self.newest_frame_wall is not None else None
        badge = health_badge(self.camera.state, age, self.stale_after_s)
        if badge is None and age is None and now - self._born > self.stale_after_s:
            badge = Badge("STALE", "no frame yet", STALE_COLOUR)
        if changed or header != self._header or badge != self.badge:
            self._header, self.badge = header, badge
            self.update()

    def _take_frame(self) -> bool:
        res_frame, result = self.bridge.result_frame(self.camera_id)
        newest = self.camera.pool.latest()
        try:
            if newest is not None:
                self.newest_frame_wall = newest.acquired_wall
            show: FrameHandle | None
            if res_frame is not None and (newest is None or newest.acquired_wall - res_frame.acquired_wall <= FRESH_RESULT_S):
                show = res_frame
            else:
                show = newest
            if show is None or show.sequence == self.image_sequence:
                return False
            try:
                self._show_handle(show)
            except (ValueError, IndexError, cv2.error) as exc:  # a malformed frame (counted by the engine)
                log.debug("camera %s: frame %d not shown: %s", self.camera_id, show.sequence, exc)
                return False
            matches = result is not None and result.sequence == show.sequence
            self.shown_result = result if matches else None
            self.boxes = boxes_from(result.detections) if matches and result is not None else []
            return True
        finally:
            for h in (res_frame, newest):
                if h is not None:
                    h.release()

    def _take_part(self) -> bool:
        """Show this camera's frame of the newest decided part (its pixels copied while held)."""
        newest = self.camera.pool.latest()
        if newest is not None:
            self.newest_frame_wall = newest.acquired_wall
            newest.release()
        part = self.bridge.current_part()
        if part is None or part is self.shown_part:
            return False
        self.shown_part = part
        result = next((f for f in part.frames if f.camera_id == self.camera_id), None)
        self.shown_result = result
        self.boxes = boxes_from(result.detections) if result is not None else []
        self.image, self.part_state = None, "missing"
        if result is None:
            return True
        self.part_state = "released"
        h = self.bridge.part_frame(part.part_id, self.camera_id)
        if h is None:
            return True
        try:
            self._show_handle(h)
            self.part_state = "image"
        except (ValueError, IndexError, cv2.error) as exc:  # a malformed frame (counted by the engine)
            log.debug("camera %s: frame of part %s not shown: %s", self.camera_id, part.part_id, exc)
        finally:
            h.release()
        return True

    def _show_handle(self, show: FrameHandle) -> None:
        """Copy a held frame into `image`, scaled to where it is drawn."""
        dpr = self.devicePixelRatioF()
        frame_h, frame_w = show.image.shape[:2]
        rect = self.image_rect(frame_w, frame_h)
        image = frame_to_display(show.image, show.pixel_format, (round(rect.width() * dpr), round(rect.height() * dpr)))
        image.setDevicePixelRatio(dpr)
        self.image, self.frame_size = image, (frame_w, frame_h)
        self.image_sequence = show.sequence

    def _header_text(self, live: CameraLive) -> str:
        lat = f"p50 {live.latency_p50_ms:.0f} ms" if live.latency_p50_ms is not None else "p50 –"
        return f"{live.fps:4.1f} fps · {lat} · drops {live.dropped}"

    @property
    def caption(self) -> str:
        """The header's title: the camera, and on a triggered line the part shown."""
        if not self.part_mode:
            return self.camera_id
        return f"{self.camera_id} · part {self.shown_part.part_id}" if self.shown_part is not None else self.camera_id

    @property
    def last_verdict(self) -> str:
        if self.part_mode:  # this camera's verdict on the part shown
            return self.shown_result.verdict.value if self.shown_result is not None else ""
        live = self.bridge.live.get(self.camera_id)
        return live.last_verdict if live is not None else ""

    # ------------------------------------------------------------------ painting
    def image_rect(self, frame_w: int, frame_h: int) -> QRect:
        """Where a frame of this size is drawn: its aspect ratio, centred, whole pixels."""
        body = QRectF(self.rect()).adjusted(2, HEADER_PX + 2, -2, -2)
        return fit_rect(frame_w, frame_h, body).toRect()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect())
        p.fillRect(rect, QColor("#111417"))
        body = rect.adjusted(0, HEADER_PX, 0, 0)
        if self.image is not None and not self.image.isNull():
            frame_w, frame_h = self.frame_size
            target = self.image_rect(frame_w, frame_h)
            dpr = self.image.devicePixelRatio()
            if (self.image.width(), self.image.height()) == (round(target.width() * dpr), round(target.height() * dpr)):
                p.drawImage(target.topLeft(), self.image)  # the usual case: a 1:1 blit
            else:  # resized since the frame came: scale this once, the next frame fits again
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                p.drawImage(QRectF(target), self.image)
            draw_boxes(p, self.boxes, QRectF(target), frame_w, frame_h, font_px=max(10, int(target.height() / 28)))
            if self.badge is not None:
                p.fillRect(target, QColor(0, 0, 0, 110))  # dim the old picture
        elif self.part_mode and self.shown_part is not None:
            self._paint_no_image(p, body.adjusted(2, 2, -2, -2), self.shown_part)
        else:
            p.setPen(QColor("#7a848c"))
            p.drawText(body, Qt.AlignmentFlag.AlignCenter, "waiting for the first part…" if self.part_mode else "waiting for frames…")
        self._paint_header(p, QRectF(rect.x(), rect.y(), rect.width(), HEADER_PX))
        if self.badge is not None:
            self._paint_badge(p, body, self.badge)
        p.setPen(QColor("#2c3338"))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(rect.adjusted(0, 0, -1, -1))
        p.end()

    def no_image_text(self) -> tuple[str, str]:
        """Title and detail shown instead of a picture for the part shown."""
        part = self.shown_part
        pid = part.part_id if part is not None else "?"
        if self.part_state == "missing":
            return f"no image for part {pid}", "incomplete: NG (fail safe)"
        return f"image released · part {pid}", "the frame was given back to the camera"

    def _paint_no_image(self, p: QPainter, body: QRectF, part: PartResult) -> None:
        missing = self.part_state == "missing"
        p.fillRect(body, QColor("#3a1d1d") if missing else QColor("#1b2024"))
        title, detail = self.no_image_text()
        font = QFont(self.font())
        font.setPixelSize(max(12, min(22, int(body.width() / max(12, len(title)) * 1.6))))
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor("#ff8a80") if missing else QColor("#c9d1d9"))
        mid = body.center().y()
        p.drawText(QRectF(body.x(), body.y(), body.width(), mid - body.y()), int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom), title)
        small = QFont(self.font())
        small.setPixelSize(12)
        p.setFont(small)
        p.setPen(QColor("#c9d1d9"))
        p.drawText(QRectF(body.x(), mid + 4, body.width(), body.bottom() - mid - 4), int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), detail)

    def _header_fonts(self) -> tuple[QFont, QFontMetricsF, QFont, QFontMetricsF]:
        """The header's fonts and metrics, made once per widget font (painted 5-10 times a second)."""
        base = self.font()
        if self._fonts is None or self._fonts[0] != base:
            name = QFont(base)
            name.setPixelSize(13)
            name.setBold(True)
            small = QFont(base)
            small.setPixelSize(11)
            self._fonts = (QFont(base), (name, QFontMetricsF(name), small, QFontMetricsF(small)))
        return self._fonts[1]

    def _paint_header(self, p: QPainter, r: QRectF) -> None:
        p.fillRect(r, QColor("#23292e"))
        font, fm, small, small_fm = self._header_fonts()
        p.setFont(font)
        p.setPen(QColor("white"))
        caption = self.caption
        name_w = fm.horizontalAdvance(caption)
        p.drawText(QPointF(r.x() + 6, r.y() + (r.height() + fm.ascent() - fm.descent()) / 2), caption)
        verdict = self.last_verdict
        pill_w = 0.0
        if verdict:
            pill_w = fm.horizontalAdvance("NG") + 14
            pill = QRectF(r.right() - pill_w - 4, r.y() + 3, pill_w, r.height() - 6)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(NG_COLOUR if verdict == "NG" else OK_COLOUR)
            p.drawRoundedRect(pill, 4, 4)
            p.setPen(QColor("white"))
            p.drawText(pill, Qt.AlignmentFlag.AlignCenter, verdict)
        p.setFont(small)
        p.setPen(QColor("#c9d1d9"))
        stats = QRectF(r.x() + name_w + 14, r.y(), r.width() - name_w - pill_w - 24, r.height())
        text = small_fm.elidedText(self._header, Qt.TextElideMode.ElideRight, stats.width())
        p.drawText(stats, int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight), text)

    def _paint_badge(self, p: QPainter, body: QRectF, badge: Badge) -> None:
        h = min(max(54.0, body.height() * 0.34), 110.0)
        band = QRectF(body.x(), body.center().y() - h / 2, body.width(), h)
        colour = QColor(badge.colour)
        colour.setAlpha(235)
        p.fillRect(band, colour)
        title = QFont(self.font())
        title.setPixelSize(int(min(h * 0.42, body.width() / max(6, len(badge.text)) * 1.5)))
        title.setBold(True)
        p.setFont(title)
        p.setPen(QColor("black") if badge.colour == STALE_COLOUR else QColor("white"))
        p.drawText(band.adjusted(4, 2, -4, -h * 0.36), int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom), badge.text)
        detail = QFont(self.font())
        detail.setPixelSize(max(11, int(h * 0.2)))
        p.setFont(detail)
        p.drawText(band.adjusted(4, h * 0.64, -4, -2), int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), badge.detail)

    # ------------------------------------------------------------------ input
    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.activated.emit(self.camera_id)
        event.accept()
