"""Frames to `QImage` and detection overlays, shared by the live wall and the history browser."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPen

from inspector.pipeline.preprocess import PIXEL_FORMATS, check_frame

#: Pixel formats Qt can wrap directly (no conversion; the QImage copy is the only copy).
_QT_FORMATS: dict[str, QImage.Format] = {
    "Mono8": QImage.Format.Format_Grayscale8,
    "BGR8": QImage.Format.Format_BGR888,
    "RGB8": QImage.Format.Format_RGB888,
    "RGBa8": QImage.Format.Format_RGBX8888,  # the alpha byte is padding for a camera
    "BGRa8": QImage.Format.Format_RGB32,  # B, G, R, X in memory on little-endian machines
}
_BAYER_TO_BGR = {
    "BayerRG8": cv2.COLOR_BayerRG2BGR,
    "BayerGR8": cv2.COLOR_BayerGR2BGR,
    "BayerGB8": cv2.COLOR_BayerGB2BGR,
    "BayerBG8": cv2.COLOR_BayerBG2BGR,
}

#: Colours of the shipped model's classes; other classes get a stable colour from their name.
CLASS_COLOURS: dict[str, str] = {
    "scratch": "#ff9f1c",
    "dent": "#2ec4f1",
    "crack": "#ff4fd8",
    "contamination": "#f5e663",
}
_PALETTE = ("#8ac926", "#ff595e", "#1982c4", "#ffca3a", "#6a4c93", "#52b788", "#f72585", "#4cc9f0")

OK_COLOUR = QColor("#1fa84f")
NG_COLOUR = QColor("#d62828")
STALE_COLOUR = QColor("#f0a202")


def class_colour(name: str) -> QColor:
    """A stable colour per defect class."""
    hex_ = CLASS_COLOURS.get(name) or _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]
    return QColor(hex_)


def frame_to_qimage(image: np.ndarray, pixel_format: str) -> QImage:
    """An owning `QImage` of a frame, made with one copy.

    Formats Qt understands are wrapped in place and copied once by `QImage.copy` (the
    caller may release the frame right after). Others (Bayer) are converted by OpenCV,
    whose output the QImage then wraps and keeps alive.

    Args:
        image: ``HxW`` (mono/Bayer) or ``HxWxC`` u8 pixels; rows may be padded (strided).
        pixel_format: GenICam pixel format name (``Mono8``, ``BGR8``, ``RGBa8``...).
    """
    image, fmt, owned = _displayable(image, pixel_format)
    return _wrap(image, _QT_FORMATS[fmt], owned=owned)


def _displayable(image: np.ndarray, pixel_format: str) -> tuple[np.ndarray, str, bool]:
    """Check a frame and bring it to a format of `_QT_FORMATS`.

    Bayer is demosaiced to BGR8; an unknown format is shown as grey or BGR by its shape
    rather than not at all. Returns the pixels, their format and whether the pixels are a
    new array (False: still the caller's, e.g. a camera slot that must not be written).
    """
    if pixel_format in PIXEL_FORMATS:
        check_frame(image, pixel_format)  # raises FrameFormatError (a ValueError) on a malformed frame
    elif image.size == 0 or image.ndim not in (2, 3):
        raise ValueError(f"cannot show a frame of shape {image.shape}")
    if pixel_format in _BAYER_TO_BGR:
        return cv2.cvtColor(image, _BAYER_TO_BGR[pixel_format]), "BGR8", True
    if pixel_format in _QT_FORMATS:
        return image, pixel_format, False
    if image.ndim == 3 and image.shape[2] == 3:
        return image, "BGR8", False
    if image.ndim == 3:
        return np.ascontiguousarray(image[:, :, 0]), "Mono8", True
    return image, "Mono8", False


#: OpenCV conversions to B, G, R, 255 bytes (`QImage.Format_RGB32` on little-endian machines).
_TO_BGRA: dict[str, int] = {
    "Mono8": cv2.COLOR_GRAY2BGRA,
    "BGR8": cv2.COLOR_BGR2BGRA,
    "RGB8": cv2.COLOR_RGB2BGRA,
    "RGBa8": cv2.COLOR_RGBA2BGRA,
}


def frame_to_display(image: np.ndarray, pixel_format: str, size: tuple[int, int]) -> QImage:
    """A frame scaled to ``size`` (width, height) in the screen's own 32-bit format.

    For the live wall: scaling and colour conversion happen here, in OpenCV (which lets
    other threads run), so that painting is a plain 1:1 blit. `QPainter.drawImage` with a
    24-bit image and a scale converts and resamples while holding the interpreter lock,
    about 1.8 ms for a 320x320 frame, eight times per refresh. Down-scaling uses area
    averaging, which also looks better than the painter's filter.

    Args:
        image: As for `frame_to_qimage` (read, not kept: the frame can be released after).
        pixel_format: GenICam pixel format name.
        size: Device pixels of the result; at least 1x1.
    """
    image, pixel_format, fresh = _displayable(image, pixel_format)
    w, h = max(1, int(size[0])), max(1, int(size[1]))
    src_h, src_w = image.shape[:2]
    if (w, h) != (src_w, src_h):
        fresh = True
        shrink = w < src_w or h < src_h
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if pixel_format == "BGRa8":  # already B, G, R, X: copy unless resized, and make X opaque
        bgra = image if fresh else image.copy()
        bgra[:, :, 3] = 255
    else:
        bgra = cv2.cvtColor(image, _TO_BGRA[pixel_format])
    return _wrap(bgra, QImage.Format.Format_RGB32, owned=True)


def _wrap(image: np.ndarray, fmt: QImage.Format, *, owned: bool) -> QImage:
    h, w = image.shape[:2]
    if not image.flags.c_contiguous:  # padded (strided) rows: this copy is then the only one
        image, owned = np.ascontiguousarray(image), True
    qimg = QImage(image.data, w, h, image.strides[0], fmt)
    if owned:
        qimg._keep = image  # type: ignore[attr-defined]  # QImage wraps; keep the pixels alive
        return qimg
    return qimg.copy()  # the one copy: the frame slot goes back to the camera after this


def fit_rect(img_w: int, img_h: int, area: QRectF) -> QRectF:
    """The largest rectangle of the image's aspect ratio centred in ``area``."""
    if img_w <= 0 or img_h <= 0 or area.width() <= 0 or area.height() <= 0:
        return QRectF(area)
    s = min(area.width() / img_w, area.height() / img_h)
    w, h = img_w * s, img_h * s
    return QRectF(area.x() + (area.width() - w) / 2, area.y() + (area.height() - h) / 2, w, h)


@dataclass(frozen=True)
class Box:
    """A box to draw, in image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_name: str
    score: float
    accepted: bool = True


def boxes_from(detections: Iterable[object]) -> list[Box]:
    """Boxes from `inspector.pipeline.results.Detection` objects or history detection dicts."""
    out = []
    for d in detections:
        if isinstance(d, dict):
            out.append(Box(d["x1"], d["y1"], d["x2"], d["y2"], str(d["class_name"]), float(d["score"]), bool(d.get("accepted", True))))
        else:
            out.append(Box(d.x1, d.y1, d.x2, d.y2, d.class_name, d.score))  # type: ignore[attr-defined]
    return out


def place_tags(boxes: list[QRectF], sizes: list[tuple[float, float]], bounds: QRectF) -> list[QRectF]:
    """Where each box's tag goes: above or below it, left- or right-aligned, inside ``bounds``.

    Tags are placed in the given order (put the most important first); each takes the
    first candidate spot that overlaps no tag placed before it, else the first spot that
    fits the bounds, so crowded defects keep readable tags.
    """
    placed: list[QRectF] = []
    for r, (tw, th) in zip(boxes, sizes):
        left = min(max(r.left(), bounds.left()), bounds.right() - tw)
        right = min(max(r.right() - tw, bounds.left()), bounds.right() - tw)
        spots = [QRectF(x, y, tw, th) for y in (r.top() - th, r.bottom()) for x in (left, right)]
        spots.append(QRectF(left, r.top(), tw, th))  # inside the box, at its top
        inside = [q for q in spots if q.top() >= bounds.top() and q.bottom() <= bounds.bottom()] or spots
        free = [q for q in inside if not any(q.intersects(o) for o in placed)]
        placed.append((free or inside)[0])
    return placed


def draw_boxes(p: QPainter, boxes: Iterable[Box], target: QRectF, img_w: int, img_h: int, *, font_px: int = 11) -> None:
    """Draw boxes with a ``class score`` tag, mapped from image pixels into ``target``."""
    if img_w <= 0 or img_h <= 0:
        return
    sx, sy = target.width() / img_w, target.height() / img_h
    font = QFont(p.font())
    font.setPixelSize(font_px)
    font.setBold(True)
    p.setFont(font)
    fm = QFontMetricsF(font)
    ordered = sorted(boxes, key=lambda b: (b.accepted, b.score), reverse=True)  # best tags get the best spots
    rects = [
        QRectF(target.x() + b.x1 * sx, target.y() + b.y1 * sy, max(2.0, (b.x2 - b.x1) * sx), max(2.0, (b.y2 - b.y1) * sy))
        for b in ordered
    ]
    tags = [f"{b.class_name} {b.score:.2f}" for b in ordered]
    colours = [class_colour(b.class_name) if b.accepted else QColor(190, 190, 190) for b in ordered]
    p.setBrush(Qt.BrushStyle.NoBrush)
    for b, r, colour in zip(ordered, rects, colours):
        pen = QPen(colour, 2.0 if b.accepted else 1.0)
        if not b.accepted:
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawRect(r)
    spots = place_tags(rects, [(fm.horizontalAdvance(t) + 6, fm.height() + 2) for t in tags], target)
    p.setPen(QColor("black"))
    for tag, spot, colour in zip(tags, spots, colours):  # tags over every box outline
        p.fillRect(spot, colour)
        p.drawText(QPointF(spot.x() + 3, spot.y() + fm.ascent() + 1), tag)
