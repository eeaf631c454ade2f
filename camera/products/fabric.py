"""Woven fabric: a plain weave of two yarn colours, every thread a little different.

Anomalies: a broken weft thread (a gap in the weave), a stain, a foreign fibre lying on the cloth,
a crease (a fold's highlight and shadow).
"""

from __future__ import annotations

import cv2
import numpy as np

from camera.products.common import blob, random_curve, smooth_noise

ANOMALIES: tuple[str, ...] = ("broken_thread", "stain", "foreign_fibre", "crease")


def draw_good(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One stretch of the cloth, float32 BGR."""
    s = min(h, w) / 320.0
    period = 9.0 * s * rng.uniform(0.97, 1.03)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    wave = 0.25 * period  # the yarns wander a little
    u = (xs + wave * smooth_noise(rng, h, w, 24 * s)) / period + rng.uniform(0, 1)
    v = (ys + wave * smooth_noise(rng, h, w, 24 * s)) / period + rng.uniform(0, 1)
    iu, iv = np.floor(u).astype(np.int32), np.floor(v).astype(np.int32)
    fu, fv = u - iu, v - iv
    n_threads = int(max(h, w) / period) + 8
    warp_tone = 1.0 + 0.07 * rng.normal(0, 1, n_threads + 4)
    weft_tone = 1.0 + 0.07 * rng.normal(0, 1, n_threads + 4)
    warp_on_top = (iu + iv) % 2 == 0
    # yarn cross-section (bright in its middle) times its curvature over the crossing yarn
    across_warp = np.sin(np.pi * fu) ** 0.6
    across_weft = np.sin(np.pi * fv) ** 0.6
    warp_shade = across_warp * (0.65 + 0.35 * np.sin(np.pi * fv)) * warp_tone[iu % len(warp_tone)]
    weft_shade = across_weft * (0.65 + 0.35 * np.sin(np.pi * fu)) * weft_tone[iv % len(weft_tone)]
    warp_colour = np.array([120, 70, 40], np.float32) * rng.uniform(0.95, 1.05, 3)  # indigo (BGR)
    weft_colour = np.array([200, 205, 210], np.float32) * rng.uniform(0.97, 1.03, 3)  # ecru
    img = np.where(warp_on_top[..., None], warp_shade[..., None] * warp_colour, weft_shade[..., None] * weft_colour)
    fuzz = 1.0 + 0.05 * smooth_noise(rng, h, w, 1.2 * s)  # hairiness of the yarn
    return (img * fuzz[..., None] + 20.0).astype(np.float32)


def draw_anomaly(rng: np.random.Generator, img: np.ndarray, kind: str) -> np.ndarray:
    """A copy of ``img`` with one anomaly of ``kind``."""
    h, w = img.shape[:2]
    s = min(h, w) / 320.0
    out = img.copy()
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    if kind == "broken_thread":
        length, thick = rng.uniform(25, 60) * s, rng.uniform(4, 6) * s
        horizontal = rng.random() < 0.5
        x0, y0 = int(cx - length / 2), int(cy - thick / 2)
        x1, y1 = int(cx + length / 2), int(cy + thick / 2)
        if not horizontal:
            x0, y0, x1, y1 = int(cx - thick / 2), int(cy - length / 2), int(cx + thick / 2), int(cy + length / 2)
        region = out[max(0, y0):y1, max(0, x0):x1]
        region *= 0.35  # the gap shows the shadow under the weave
        region += 15.0
    elif kind == "stain":
        alpha = blob(rng, h, w, cx, cy, rng.uniform(10, 22) * s)[..., None] * rng.uniform(0.45, 0.7)
        tint = np.array(rng.choice([[60, 110, 150], [40, 50, 60], [90, 140, 120]]), np.float32)
        out[:] = out * (1 - alpha) + (out * 0.45 + tint * 0.55) * alpha
    elif kind == "foreign_fibre":
        pts = random_curve(rng, cx, cy, rng.uniform(35, 80) * s)
        colour = tuple(float(c) for c in rng.choice([[25, 25, 30], [240, 240, 235], [30, 40, 170]]))
        cv2.polylines(out, [pts], False, colour, max(1, round(1.6 * s)), cv2.LINE_AA)
    elif kind == "crease":
        ang = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        d = (xs - cx) * np.sin(ang) - (ys - cy) * np.cos(ang)  # signed distance to the fold line
        along = (xs - cx) * np.cos(ang) + (ys - cy) * np.sin(ang)
        half = rng.uniform(30, 70) * s
        extent = np.clip((half - np.abs(along)) / (8 * s), 0, 1)
        width = rng.uniform(3, 5) * s
        shade = 1.0 + 0.55 * np.exp(-((d + width) / width) ** 2) - 0.5 * np.exp(-((d - width) / width) ** 2)
        out *= (1.0 + (shade - 1.0) * extent)[..., None]
    else:
        raise ValueError(f"fabric has no anomaly {kind!r}; it has {', '.join(ANOMALIES)}")
    return out
