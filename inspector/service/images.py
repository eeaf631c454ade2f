"""Display images for the control link: a frame downscaled to `protocol.display_size`, as JPEG (or PNG)."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.service.protocol import display_size

JPEG_QUALITY = 75

_TO_BGR = {
    "RGB8": cv2.COLOR_RGB2BGR, "RGBa8": cv2.COLOR_RGBA2BGR, "BGRa8": cv2.COLOR_BGRA2BGR,
    "BayerRG8": cv2.COLOR_BayerRG2BGR, "BayerGR8": cv2.COLOR_BayerGR2BGR, "BayerGB8": cv2.COLOR_BayerGB2BGR,
    "BayerBG8": cv2.COLOR_BayerBG2BGR,
}


def encode_display_jpeg(image: np.ndarray, pixel_format: str, *, lossless: bool = False) -> bytes:
    """A frame as a JPEG at `protocol.display_size` (grey stays grey; Bayer is demosaiced).

    With ``lossless`` a PNG of the same pixels instead (good parts collected for teaching over the link:
    a model taught from JPEG's artefacts would score the camera's own frames against them).

    Raises:
        ValueError: A frame of a shape that is not an image.
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"cannot show a frame of shape {image.shape}")
    h, w = image.shape[:2]
    size = display_size(w, h)
    code = _TO_BGR.get(pixel_format)
    if code is not None and pixel_format.startswith("Bayer"):
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
        code = None
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size != (w, h) else np.ascontiguousarray(image)
    if code is not None:
        small = cv2.cvtColor(small, code)
    if lossless:
        ok, buf = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("image encoding failed")
    return bytes(buf)
