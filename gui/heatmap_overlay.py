"""Anomaly heat maps drawn over a camera's picture: the live wall (a toggle) and the history's image view.

A heat map is a u8 grey map over the whole frame (`inspector.anomaly.station.CameraAnomaly.heat_map`;
the archive keeps it beside an NG image as ``*.heat.png``): grey = score x 127.5, so the threshold (score
1.0) is mid-grey. Below 3/4 of the threshold nothing is drawn (good parts stay as they are); from there the
JET colours run from blue through green (the threshold) to red (1.5x the threshold), more opaque the higher
the score, so a hot spot stands out and the part stays visible under it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter

from inspector.archive import heat_map_path
from inspector.pipeline.results import InspectionResult

#: Below this grey level (score 0.75) nothing is drawn; the picture stays as it is.
FLOOR_LEVEL = 96
#: The grey level drawn red and at full opacity (score 1.5).
TOP_LEVEL = 192
#: Opacity at and above `TOP_LEVEL`; it rises linearly from the floor.
MAX_ALPHA = 200


def heat_to_qimage(heat: np.ndarray) -> QImage:
    """A u8 heat map as an ARGB32 image: JET from `FLOOR_LEVEL` (blue) to `TOP_LEVEL` (red), alpha 0 to `MAX_ALPHA`."""
    grey = np.ascontiguousarray(heat, np.uint8)
    ramp = np.clip((grey.astype(np.float32) - FLOOR_LEVEL) / (TOP_LEVEL - FLOOR_LEVEL), 0.0, 1.0)
    bgr = cv2.applyColorMap((ramp * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (np.sqrt(ramp) * MAX_ALPHA).astype(np.uint8)  # near the floor already visible, not a faint haze
    bgra = np.ascontiguousarray(np.dstack([bgr, alpha]))  # ARGB32 is B, G, R, A in memory (little endian)
    h, w = grey.shape
    return QImage(bgra.data, w, h, 4 * w, QImage.Format.Format_ARGB32).copy()  # owns its pixels


def load_heat_map(image_path: str | None) -> np.ndarray | None:
    """The heat map archived beside ``image_path`` (None: no image, no heat map, or unreadable)."""
    if not image_path:
        return None
    path = heat_map_path(image_path)
    if not path.is_file():
        return None
    heat = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return heat if heat is not None and heat.size else None


class HeatMapLayer:
    """One picture's heat map, drawn over it on request (`paint`); converted to a QImage once.

    Args:
        enabled: Whether `paint` draws (the toggle's state).
    """

    def __init__(self, *, enabled: bool = False) -> None:
        self.enabled = enabled
        self.heat: np.ndarray | None = None
        self._image: QImage | None = None

    def set_heat(self, heat: np.ndarray | None) -> None:
        """The heat map of the picture shown now (None: it has none)."""
        self.heat = heat
        self._image = heat_to_qimage(heat) if heat is not None else None

    def load(self, image_path: str | Path | None) -> bool:
        """Take the heat map archived beside an image; returns whether there is one."""
        self.set_heat(load_heat_map(str(image_path) if image_path else None))
        return self.heat is not None

    @property
    def available(self) -> bool:
        return self._image is not None

    def paint(self, p: QPainter, target: QRectF) -> None:
        """Draw the heat map over ``target`` (the picture's rectangle) when enabled and present."""
        if not self.enabled or self._image is None:
            return
        p.save()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(target, self._image)
        p.restore()


class LiveHeatMaps:
    """Heat maps of live results: computed once per result shown, from the station's anomaly models.

    Args:
        source: A result's u8 heat map or None: `inspector.anomaly.station.StationAnomaly.heat_map` in
            the station's process, `gui.remote.RemoteHeatMaps.heat_map` (sent with the images) attached.
    """

    def __init__(self, source: Callable[[InspectionResult], np.ndarray | None] | None) -> None:
        self.source = source
        self.layer = HeatMapLayer()
        self._result: InspectionResult | None = None

    @property
    def enabled(self) -> bool:
        return self.layer.enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.layer.enabled = on

    def paint(self, p: QPainter, result: InspectionResult | None, target: QRectF) -> None:
        """Draw ``result``'s heat map over ``target`` (when enabled; nothing for a result without one)."""
        if not self.layer.enabled or self.source is None or result is None:
            return
        if result is not self._result or self.layer.heat is None:  # over the link a heat map may come later
            self._result = result
            self.layer.set_heat(self.source(result))
        self.layer.paint(p, target)
