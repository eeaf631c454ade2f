"""What every product family shares: placement on the line, lighting and sensor, the anomaly's pixel mask.

A family draws one part in its own canonical frame (float32 BGR, 0..255), then, for an anomalous part,
draws the anomaly on a copy; the mask is where the two differ. Placement (a small shift and rotation),
lighting (gain, gradient) and the sensor (blur, noise) are applied afterwards to the image and, by the
same warp, to the mask, so every part of a family varies as a real line's parts do.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Largest placement error of a part under the camera: shift as a share of the frame side, rotation in degrees.
MAX_SHIFT = 0.025
MAX_ROTATION_DEG = 3.0
#: A pixel belongs to the anomaly's mask where the anomaly changed it by more than this (sum over BGR, 0..765).
MASK_DIFF = 24.0


@dataclass(frozen=True)
class ProductFrame:
    """One rendered part of a product family.

    Attributes:
        image: u8 frame, HxW (Mono8) or HxWx3 (BGR).
        mask: u8 HxW, 255 on the anomaly's pixels (all 0 for a good part).
        family: The product family's name.
        anomaly: The anomaly's kind, None for a good part.
        seed: The seed that decides every pixel.
    """

    image: np.ndarray
    mask: np.ndarray
    family: str
    anomaly: str | None
    seed: int

    @property
    def anomalous(self) -> bool:
        return self.anomaly is not None


def anomaly_mask(clean: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """u8 mask of the pixels an anomaly changed (small gaps closed, specks dropped)."""
    diff = np.abs(changed.astype(np.float32) - clean.astype(np.float32))
    if diff.ndim == 3:
        diff = diff.sum(axis=2)
    mask = (diff > MASK_DIFF).astype(np.uint8) * 255
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)


def margin(h: int, w: int) -> int:
    """Pixels drawn beyond each side of the frame, so that a shifted, rotated part fills it with scene."""
    side = max(h, w)
    return int(np.ceil(MAX_SHIFT * side + np.sin(np.radians(MAX_ROTATION_DEG)) * side)) + 2


def place(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The part as it lies under the camera: shifted and rotated a little, image and mask alike, then the
    ``pad`` drawn around the frame cropped away."""
    h, w = img.shape[:2]
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    dx, dy = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * (w - 2 * pad, h - 2 * pad)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    m[:, 2] += (dx - pad, dy - pad)
    size = (w - 2 * pad, h - 2 * pad)
    out = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = cv2.warpAffine(mask, m, size, flags=cv2.INTER_NEAREST, borderValue=0)
    return out, moved


def lighting_and_sensor(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lamp drift (gain), an uneven field (gradient), focus (blur) and sensor noise, to u8."""
    h, w = img.shape[:2]
    gain = rng.uniform(0.88, 1.12)
    gx, gy = rng.uniform(-0.12, 0.12, 2)
    xs = np.arange(w, dtype=np.float32)[None, :] / w - 0.5
    ys = np.arange(h, dtype=np.float32)[:, None] / h - 0.5
    img = img * (gain * (1.0 + gx * xs + gy * ys))[..., None]
    sigma = rng.uniform(0.0, 0.7)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(1.0, 3.0), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float, sx: float | None = None) -> np.ndarray:
    """Zero-mean, unit-std random field with features about ``scale`` px (``sx`` along x when anisotropic)."""
    sx = sx if sx is not None else scale
    # a wide blur is drawn at a coarser grid and resized: the same field for a fraction of the time
    f = max(1.0, min(scale, sx) / 3.0)
    gh, gw = max(2, round(h / f)), max(2, round(w / f))
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (gh, gw)).astype(np.float32), (0, 0), sigmaX=sx / f, sigmaY=scale / f)
    n = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) if (gh, gw) != (h, w) else coarse
    return np.asarray((n - n.mean()) / (n.std() + 1e-6), np.float32)


def blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float, rough: float = 0.35
         ) -> np.ndarray:
    """A soft irregular blob (float 0..1) of radius about ``r`` centred at ``(cx, cy)``."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(ys - cy, xs - cx)
    k = rng.integers(3, 7)
    phases = rng.uniform(0, 2 * np.pi, k)
    amps = rng.uniform(0, rough, k) / np.arange(1, k + 1)
    radius = r * (1.0 + sum(a * np.cos((i + 2) * ang + p) for i, (a, p) in enumerate(zip(amps, phases))))
    dist = np.hypot(xs - cx, ys - cy)
    return np.clip((radius - dist) / max(1.5, 0.15 * r), 0.0, 1.0)


def random_curve(rng: np.random.Generator, cx: float, cy: float, length: float, n: int = 12) -> np.ndarray:
    """Points (int32, Nx1x2) of a wandering curve of about ``length`` px starting near ``(cx, cy)``."""
    ang = rng.uniform(0, 2 * np.pi)
    pts = [(cx, cy)]
    step = length / n
    for _ in range(n):
        ang += rng.normal(0, 0.45)
        x, y = pts[-1]
        pts.append((x + step * np.cos(ang), y + step * np.sin(ang)))
    return np.round(np.array(pts)).astype(np.int32).reshape(-1, 1, 2)


def finish(rng: np.random.Generator, family: str, seed: int, clean: np.ndarray, changed: np.ndarray | None,
           anomaly: str | None, mono: bool, pad: int) -> ProductFrame:
    """Mask, placement, lighting and sensor: the frame as the camera delivers it (``clean`` was drawn with
    ``pad`` pixels of scene beyond each side)."""
    h, w = clean.shape[:2]
    img = changed if changed is not None else clean
    mask = anomaly_mask(clean, changed) if changed is not None else np.zeros((h, w), np.uint8)
    img, mask = place(rng, img, mask, pad)
    if anomaly is not None and not mask.any():  # an anomaly too faint to see (or outside) is none: draw again
        raise _Invisible()
    out = lighting_and_sensor(rng, img)
    if mono:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    return ProductFrame(out, mask, family, anomaly, seed)


class _Invisible(Exception):
    """The drawn anomaly changed no pixel enough to be seen."""
