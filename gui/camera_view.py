"""`CameraView`: one camera's newest frame with defect overlays, header and health badge."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from camera.protocol import Camera, CameraState
from gui.bridge import CameraLive, DisplayFrame, EngineBridge, frame_size
from gui.heatmap_overlay import LiveHeatMaps
from gui.imaging import NG_COLOUR, OK_COLOUR, STALE_COLOUR, Box, boxes_from, draw_boxes, fit_rect, frame_to_display
from inspector.pipeline.results import InspectionResult, PartResult

#: The view says "behind N s" once the newest received frame is this much newer than the frame shown.
BEHIND_SHOW_S = 1.0
HEADER_PX = 24
#: The strip under the picture with the camera's numbers (received and inspected rates, latency, drops).
STATS_PX = 16
STATS_TIP = (
    "rx: frames received from the camera per second\n"
    "insp: frames inspected per second (when inspection is slower than the camera, the newest frame wins "
    "and the others are dropped)\n"
    "p50: median time from frame to result\n"
    "drops: frames not inspected since the start"
)


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

    Otherwise `refresh` (called on the bridge's tick) shows the newest *inspected* frame: the
    frame its result carries, with that result's boxes and verdict, never a newer uninspected
    frame under an older verdict. When inspection lags (the newest received frame is
    `BEHIND_SHOW_S` or more newer than the one shown) the view says "behind 1.4 s". The frame
    is turned into a QImage (one copy) and its reference released at once; painting uses the
    copy, which also keeps the last picture on screen when the camera stops or inspection pauses.

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
        self.shown_frame_wall: float | None = None  # acquisition time of the frame shown
        #: "behind 1.4 s" while the frame shown is well older than the newest received, else ""
        self.behind_text = ""
        #: the numbers strip as last painted and the width it had (tests check that it fits)
        self.painted_stats: tuple[str, float] = ("", 0.0)
        self.badge: Badge | None = None
        self.part_mode = getattr(bridge, "line", None) is not None
        self.shown_part: PartResult | None = None
        #: what the view shows of `shown_part`: "image", "missing" (not in the part), "released" (given back)
        self.part_state = ""
        self._born = time.time()
        self._header = ""
        self._fonts: tuple[QFont, tuple[QFont, QFontMetricsF, QFont, QFontMetricsF]] | None = None
        #: the anomaly heat map over the picture (`gui.heatmap_overlay`; the wall's toggle); None: none
        self.heat_maps: LiveHeatMaps | None = None
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setToolTip(f"{self.camera_id}: double-click to enlarge\n{STATS_TIP}")

    def sizeHint(self) -> QSize:
        return QSize(320, 280)

    # ------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Take the newest frame and result, recompute header and badge; repaint if changed."""
        changed = self._take_part() if self.part_mode else self._take_frame()
        live = self.bridge.live.get(self.camera_id) or CameraLive(self.camera_id)
        header = self._header_text(live)
        behind = ""
        if not self.part_mode and self.newest_frame_wall is not None and self.shown_frame_wall is not None:
            lag = self.newest_frame_wall - self.shown_frame_wall
            behind = f"behind {_age_text(lag)}" if lag >= BEHIND_SHOW_S else ""
        now = time.time()
        age = now - self.newest_frame_wall if self.newest_frame_wall is not None else None
        badge = health_badge(self.camera.state, age, self.stale_after_s)
        if badge is None and age is None and now - self._born > self.stale_after_s:
            badge = Badge("STALE", "no frame yet", STALE_COLOUR)
        if changed or header != self._header or badge != self.badge or behind != self.behind_text:
            self._header, self.badge, self.behind_text = header, badge, behind
            self.update()

    def _take_frame(self) -> bool:
        res_frame, result = self.bridge.result_frame(self.camera_id)
        newest = self.camera.pool.latest()
        try:
            if newest is not None:
                self.newest_frame_wall = newest.acquired_wall
            # only a result's own frame is shown: picture, boxes and verdict are always one inspection
            show = res_frame
            if show is None or result is None or show.sequence == self.image_sequence:
                return False
            try:
                self._show_handle(show)
            except (ValueError, IndexError, cv2.error) as exc:  # a malformed frame (counted by the engine)
                log.debug("camera %s: frame %d not shown: %s", self.camera_id, show.sequence, exc)
                return False
            self.shown_result = result
            self.shown_frame_wall = show.acquired_wall
            self.boxes = boxes_from(result.detections)
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

    def _show_handle(self, show: DisplayFrame) -> None:
        """Copy a held frame (or a part's frame copy) into `image`, scaled to where it is drawn."""
        dpr = self.devicePixelRatioF()
        frame_w, frame_h = frame_size(show)
        rect = self.image_rect(frame_w, frame_h)
        image = frame_to_display(show.image, show.pixel_format, (round(rect.width() * dpr), round(rect.height() * dpr)))
        image.setDevicePixelRatio(dpr)
        self.image, self.frame_size = image, (frame_w, frame_h)
        self.image_sequence = show.sequence

    def _header_text(self, live: CameraLive) -> str:
        return self._stats_variants(live)[0]

    @staticmethod
    def _stats_variants(live: CameraLive) -> list[str]:
        """The numbers strip, longest first: painting takes the first that fits (each number stays named)."""
        lat = f"p50 {live.latency_p50_ms:.0f} ms" if live.latency_p50_ms is not None else "p50 –"
        rx, insp, drops = f"{live.fps:.1f}", f"{live.inspected_fps:.1f}", f"drops {live.dropped:,}"
        return [
            f"rx {rx} fps · insp {insp} fps · {lat} · {drops}",
            f"rx {rx} · insp {insp} fps · {lat} · {drops}",
            f"rx {rx} · insp {insp} fps · {drops}",
            f"insp {insp} fps · {drops}",
        ]

    @property
    def caption(self) -> str:
        """The header's title: the camera, and on a triggered line the part shown."""
        if not self.part_mode:
            return self.camera_id
        return f"{self.camera_id} · part {self.shown_part.part_id}" if self.shown_part is not None else self.camera_id

    @property
    def last_verdict(self) -> str:
        """The verdict of the frame shown (on a triggered line: this camera's verdict on the part shown)."""
        return self.shown_result.verdict.value if self.shown_result is not None else ""

    # ------------------------------------------------------------------ painting
    def image_rect(self, frame_w: int, frame_h: int) -> QRect:
        """Where a frame of this size is drawn: its aspect ratio, centred, whole pixels."""
        body = QRectF(self.rect()).adjusted(2, HEADER_PX + 2, -2, -STATS_PX - 2)
        return fit_rect(frame_w, frame_h, body).toRect()

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect())
        p.fillRect(rect, QColor("#111417"))
        body = rect.adjusted(0, HEADER_PX, 0, -STATS_PX)
        if self.image is not None and not self.image.isNull():
            frame_w, frame_h = self.frame_size
            target = self.image_rect(frame_w, frame_h)
            dpr = self.image.devicePixelRatio()
            if (self.image.width(), self.image.height()) == (round(target.width() * dpr), round(target.height() * dpr)):
                p.drawImage(target.topLeft(), self.image)  # the usual case: a 1:1 blit
            else:  # resized since the frame came: scale this once, the next frame fits again
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                p.drawImage(QRectF(target), self.image)
            if self.heat_maps is not None:
                self.heat_maps.paint(p, self.shown_result, QRectF(target))
            draw_boxes(p, self.boxes, QRectF(target), frame_w, frame_h, font_px=max(10, int(target.height() / 28)))
            if self.badge is not None:
                p.fillRect(target, QColor(0, 0, 0, 110))  # dim the old picture
            elif self.behind_text:
                self._paint_behind(p, QRectF(target))
        elif self.part_mode and self.shown_part is not None:
            self._paint_no_image(p, body.adjusted(2, 2, -2, -2), self.shown_part)
        else:
            p.setPen(QColor("#7a848c"))
            waiting = "waiting for frames…" if self.newest_frame_wall is None else "waiting for the first inspected frame…"
            p.drawText(body, Qt.AlignmentFlag.AlignCenter, "waiting for the first part…" if self.part_mode else waiting)
        self._paint_header(p, QRectF(rect.x(), rect.y(), rect.width(), HEADER_PX))
        self._paint_stats(p, QRectF(rect.x(), rect.bottom() - STATS_PX + 1, rect.width(), STATS_PX))
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
        font, fm, _small, _small_fm = self._header_fonts()
        p.setFont(font)
        p.setPen(QColor("white"))
        verdict = self.last_verdict
        pill_w = fm.horizontalAdvance("NG") + 14 if verdict else 0.0
        caption = fm.elidedText(self.caption, Qt.TextElideMode.ElideMiddle, r.width() - pill_w - 16)
        p.drawText(QPointF(r.x() + 6, r.y() + (r.height() + fm.ascent() - fm.descent()) / 2), caption)
        if verdict:
            pill = QRectF(r.right() - pill_w - 4, r.y() + 3, pill_w, r.height() - 6)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(NG_COLOUR if verdict == "NG" else OK_COLOUR)
            p.drawRoundedRect(pill, 4, 4)
            p.setPen(QColor("white"))
            p.drawText(pill, Qt.AlignmentFlag.AlignCenter, verdict)

    def _paint_stats(self, p: QPainter, r: QRectF) -> None:
        """The camera's numbers under the picture: the longest labelled form that fits the width."""
        p.fillRect(r, QColor("#1b2024"))
        _font, _fm, small, small_fm = self._header_fonts()
        width = r.width() - 12
        live = self.bridge.live.get(self.camera_id) or CameraLive(self.camera_id)
        variants = self._stats_variants(live)
        text = next((t for t in variants if small_fm.horizontalAdvance(t) <= width), None)
        if text is None:  # a very small view: the shortest form, cut
            text = small_fm.elidedText(variants[-1], Qt.TextElideMode.ElideRight, width)
        self.painted_stats = (text, width)
        p.setFont(small)
        p.setPen(QColor("#c9d1d9"))
        p.drawText(r.adjusted(6, 0, -6, 0), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), text)

    def _paint_behind(self, p: QPainter, target: QRectF) -> None:
        """An amber tag on the picture: inspection lags the camera by this much."""
        font = QFont(self.font())
        font.setPixelSize(13)
        font.setBold(True)
        fm = QFontMetricsF(font)
        w = fm.horizontalAdvance(self.behind_text) + 12
        tag = QRectF(target.right() - w - 4, target.y() + 4, w, fm.height() + 6)  # clear of the box labels' corner
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(STALE_COLOUR)
        p.drawRoundedRect(tag, 4, 4)
        p.setFont(font)
        p.setPen(QColor("black"))
        p.drawText(tag, Qt.AlignmentFlag.AlignCenter, self.behind_text)

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
