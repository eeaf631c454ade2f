"""Image files for teaching and scoring: found in folders, read whole or refused in one line, letterboxed.

PNG, JPEG, BMP and TIFF, any size, Mono8 or colour (8 or 16 bit; 16-bit is scaled to 8). A file that
does not decode, or that decodes but ends early (OpenCV fills a truncated JPEG with grey and says so
only on stderr), is an `ImageError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.pipeline.preprocess import Letterbox, letterbox_into

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageError(ValueError):
    """An image file or folder that cannot be used (the message names it)."""


@dataclass(frozen=True)
class Roi:
    """The rectangle of a frame that is inspected, in frame pixels (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @staticmethod
    def parse(text: str) -> Roi:
        """``X0,Y0,X1,Y1`` -> `Roi` (ValueError naming the problem)."""
        try:
            x0, y0, x1, y1 = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"roi: {text!r} is not X0,Y0,X1,Y1 (four integers)") from None
        if x0 < 0 or y0 < 0 or x1 - x0 < 8 or y1 - y0 < 8:
            raise ValueError(f"roi: {text!r} must have x0, y0 >= 0 and be at least 8 px wide and high")
        return Roi(x0, y0, x1, y1)

    def text(self) -> str:
        return f"{self.x0},{self.y0},{self.x1},{self.y1}"


def find_images(paths: Iterable[Path]) -> list[Path]:
    """Image files of ``paths`` (files as given, folders searched recursively, sorted).

    Raises:
        ImageError: A path that does not exist, or a folder without images.
    """
    found: list[Path] = []
    for p in paths:
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise ImageError(f"{p}: no images (PNG, JPEG, BMP or TIFF) in this folder")
            found.extend(inside)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return found


def _complete(path: Path, data: bytes) -> bool:
    """Whether an encoded file has its end (decoders fill a cut-off image with grey and go on)."""
    if data.startswith(b"\x89PNG"):
        return b"IEND" in data[-32:]
    if data.startswith(b"\xff\xd8"):
        return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"
    if data.startswith(b"BM") and len(data) >= 6:
        return len(data) >= int.from_bytes(data[2:6], "little")
    return True


def read_image(path: Path) -> np.ndarray:
    """A u8 image, HxW (grey) or HxWx3 (BGR).

    Raises:
        ImageError: Unreadable, not an image, truncated, or empty.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not _complete(path, data):
        raise ImageError(f"{path}: truncated image file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0 or img.shape[0] < 2 or img.shape[1] < 2:
        raise ImageError(f"{path}: not a readable PNG, JPEG, BMP or TIFF image")
    if img.dtype == np.uint16:
        img = (np.asarray(img, np.uint16) >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: pixel type {img.dtype} is not supported (8 or 16 bit only)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return img


def crop(image: np.ndarray, roi: Roi | None, name: str = "image") -> np.ndarray:
    """The ROI of ``image`` (all of it for None). Raises ImageError when the ROI lies outside."""
    if roi is None:
        return image
    h, w = image.shape[:2]
    if roi.x1 > w or roi.y1 > h:
        raise ImageError(f"{name}: roi {roi.text()} reaches outside the {w}x{h} image")
    return image[roi.y0:roi.y1, roi.x0:roi.x1]


def letterboxed(images: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """A u8 BGR NHWC batch of ``images`` letterboxed as the station's worker does it (pad 114)."""
    out = np.empty((len(images), height, width, 3), np.uint8)
    for dst, img in zip(out, images):
        fmt = "Mono8" if img.ndim == 2 else "BGR8"
        letterbox_into(dst, img, fmt, Letterbox.fit(img.shape[1], img.shape[0], width, height))
    return out


def load_batch(paths: Sequence[Path], width: int, height: int, roi: Roi | None) -> np.ndarray:
    """Read, crop and letterbox ``paths`` into one u8 BGR NHWC batch."""
    return letterboxed([crop(read_image(p), roi, str(p)) for p in paths], width, height)
