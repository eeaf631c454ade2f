"""A printed label on a dark-blue container: a red logo, a title, lines of small print and a barcode.

Every good label carries the same print; parts differ in paper shade, ink density, where the label
sits and the light. Anomalies: smeared print, missing print, a colour shift of the logo's ink,
an ink splash, a wrinkle.
"""

from __future__ import annotations

import cv2
import numpy as np

from camera.products.common import blob, smooth_noise

ANOMALIES: tuple[str, ...] = ("smeared_print", "missing_print", "colour_shift", "ink_splash", "wrinkle")

#: The label's edges as shares of the frame.
LABEL = (0.1, 0.14, 0.9, 0.86)
TEXT_LINES = ("LOT 24-117  BEST BEFORE 03/2028", "NET 250 ml  KEEP COOL AND DRY", "MADE IN EU  REF 0042-7731")
#: The barcode's bar widths (a fixed pattern, the same on every label).
BARS = np.random.default_rng(4242).integers(1, 4, 40)


def _print(h: int, w: int, s: float, logo_bgr: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The print as ink coverage (float 0..1) and ink colour per pixel, in label coordinates."""
    cover = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    x0, y0 = int(LABEL[0] * w), int(LABEL[1] * h)
    # logo: a filled red disc with a white triangle
    lc = (x0 + int(38 * s), y0 + int(36 * s))
    logo = np.zeros((h, w), np.uint8)
    cv2.circle(logo, lc, int(22 * s), 255, -1, cv2.LINE_AA)
    tri = np.array([(lc[0], lc[1] - 13 * s), (lc[0] - 12 * s, lc[1] + 9 * s), (lc[0] + 12 * s, lc[1] + 9 * s)])
    cv2.fillConvexPoly(logo, np.round(tri).astype(np.int32), 0, cv2.LINE_AA)
    a = logo.astype(np.float32) / 255.0
    cover = np.maximum(cover, a)
    colour[a > 0] = logo_bgr
    ink = np.zeros((h, w), np.uint8)
    cv2.putText(ink, "INSPECTOR", (x0 + int(72 * s), y0 + int(46 * s)), cv2.FONT_HERSHEY_DUPLEX, 1.05 * s, 255,
                max(1, round(2 * s)), cv2.LINE_AA)
    for i, line in enumerate(TEXT_LINES):
        cv2.putText(ink, line, (x0 + int(14 * s), y0 + int((88 + 19 * i) * s)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.42 * s, 255, 1, cv2.LINE_AA)
    bx, by = x0 + int(20 * s), y0 + int(150 * s)
    for k, bar in enumerate(BARS):
        if k % 2 == 0:
            cv2.rectangle(ink, (bx, by), (bx + int(bar * 1.5 * s) - 1, by + int(42 * s)), 255, -1)
        bx += int(bar * 1.5 * s) + int(1.5 * s)
    b = ink.astype(np.float32) / 255.0
    colour[b > 0] = (25, 20, 20)
    return np.maximum(cover, b), colour


def draw_good(rng: np.random.Generator, h: int, w: int, logo_bgr: tuple[float, float, float] = (40, 40, 200),
              erase: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The container and its label, float32 BGR (``erase``: a print region left blank, x0 y0 x1 y1)."""
    s = min(h, w) / 320.0
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.array([90, 45, 20], np.float32) * rng.uniform(0.95, 1.05)  # the container's blue
    img += 5.0 * smooth_noise(rng, h, w, 4 * s)[..., None]
    x0, y0, x1, y1 = (int(LABEL[0] * w), int(LABEL[1] * h), int(LABEL[2] * w), int(LABEL[3] * h))
    paper = np.array([228, 238, 242], np.float32) * rng.uniform(0.96, 1.02)
    grain = 1.0 + 0.02 * smooth_noise(rng, y1 - y0, x1 - x0, 1.0 * s)
    img[y0:y1, x0:x1] = paper * grain[..., None]
    cover, colour = _print(h, w, s, logo_bgr)
    if erase is not None:
        ex0, ey0, ex1, ey1 = erase
        cover[ey0:ey1, ex0:ex1] = 0.0
    cover *= rng.uniform(0.85, 1.0)  # ink density varies from print to print
    img[:] = img * (1 - cover[..., None]) + colour * cover[..., None]
    return img


def draw_anomalous(rng: np.random.Generator, h: int, w: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A good label and the same label with one anomaly of ``kind``."""
    s = min(h, w) / 320.0
    state = rng.bit_generator.state
    clean = draw_good(rng, h, w)
    after = rng.bit_generator.state

    def again(**kw: object) -> np.ndarray:
        rng.bit_generator.state = state  # the same label, printed differently
        out = draw_good(rng, h, w, **kw)  # type: ignore[arg-type]
        rng.bit_generator.state = after
        return out

    x0, y0 = LABEL[0] * w, LABEL[1] * h
    if kind == "missing_print":
        region = [
            (x0 + 14 * s, y0 + (74 + 19 * int(rng.integers(3))) * s, rng.uniform(40, 110) * s, 18 * s),  # text
            (x0 + 20 * s, y0 + 150 * s, rng.uniform(25, 60) * s, 42 * s),  # barcode
            (x0 + 72 * s, y0 + 22 * s, rng.uniform(30, 70) * s, 28 * s),  # title
        ][int(rng.integers(3))]
        ex, ey, ew, eh = region
        ex += rng.uniform(0, 40) * s
        return clean, again(erase=(int(ex), int(ey), int(ex + ew), int(ey + eh)))
    if kind == "colour_shift":
        shifted = tuple(float(c) for c in rng.choice([[40, 140, 220], [150, 60, 160], [60, 60, 90]]))
        return clean, again(logo_bgr=shifted)
    out = clean.copy()
    if kind == "smeared_print":
        ex, ey = int(x0 + rng.uniform(10, 150) * s), int(y0 + rng.uniform(70, 150) * s)
        ew, eh = int(rng.uniform(30, 60) * s), int(rng.uniform(14, 24) * s)
        k = int(rng.uniform(9, 15) * s) | 1
        line = np.zeros((k, k), np.float32)
        line[k // 2, :] = 1.0 / k
        turned = cv2.warpAffine(line, cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(-30, 30), 1.0),
                                (k, k))
        kernel = np.asarray(turned / turned.sum(), np.float32)
        smeared = cv2.filter2D(out, -1, kernel)
        alpha = blob(rng, h, w, ex + ew / 2, ey + eh / 2, max(ew, eh) / 2, rough=0.3)[..., None]
        out[:] = out * (1 - alpha) + smeared * alpha
    elif kind == "ink_splash":
        cx, cy = x0 + rng.uniform(0.1, 0.9) * (LABEL[2] - LABEL[0]) * w, y0 + rng.uniform(0.1, 0.9) * (
            LABEL[3] - LABEL[1]) * h
        alpha = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            alpha = np.maximum(alpha, blob(rng, h, w, cx + rng.normal(0, 6 * s), cy + rng.normal(0, 6 * s),
                                           rng.uniform(2.5, 6) * s, rough=0.5))
        out[:] = out * (1 - alpha[..., None]) + np.array([30, 25, 25], np.float32) * alpha[..., None]
    elif kind == "wrinkle":
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = x0 + rng.uniform(40, 220) * s, y0 + rng.uniform(40, 180) * s
        ang = rng.uniform(0, np.pi)
        d = (xs - cx) * np.sin(ang) - (ys - cy) * np.cos(ang)
        along = (xs - cx) * np.cos(ang) + (ys - cy) * np.sin(ang)
        extent = np.clip((rng.uniform(20, 45) * s - np.abs(along)) / (6 * s), 0, 1)
        width = rng.uniform(2, 3.5) * s
        shade = 1.0 + 0.3 * np.exp(-((d + width) / width) ** 2) - 0.45 * np.exp(-((d - width) / width) ** 2)
        inside = np.zeros((h, w), np.float32)
        inside[int(LABEL[1] * h):int(LABEL[3] * h), int(LABEL[0] * w):int(LABEL[2] * w)] = 1.0
        out *= (1.0 + (shade - 1.0) * extent * inside)[..., None]
    else:
        raise ValueError(f"label has no anomaly {kind!r}; it has {', '.join(ANOMALIES)}")
    return clean, out
