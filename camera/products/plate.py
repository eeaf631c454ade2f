"""A machined plate: brushed steel with a 3x3 pattern of drilled, chamfered holes, seen from above.

Anomalies: a missing hole, an undersized hole, a corrosion spot, a swarf curl (a chip left on the plate),
a chipped edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from camera.products.common import blob, random_curve, smooth_noise

ANOMALIES: tuple[str, ...] = ("missing_hole", "small_hole", "corrosion", "swarf", "chipped_edge")

#: Hole centres as shares of the frame (the plate's drawing), and the hole radius at 320 px.
HOLES = [(x, y) for y in (0.27, 0.5, 0.73) for x in (0.27, 0.5, 0.73)]
HOLE_R = 17.0
#: The plate's edges as shares of the frame (the background shows around it).
PLATE = (0.08, 0.08, 0.92, 0.92)


def _hole(img: np.ndarray, cx: float, cy: float, r: float, s: float) -> None:
    h, w = img.shape[:2]
    m = int(r + 4 * s) + 2  # only the hole's neighbourhood changes
    bx0, by0 = max(0, int(cx) - m), max(0, int(cy) - m)
    bx1, by1 = min(w, int(cx) + m + 1), min(h, int(cy) + m + 1)
    img = img[by0:by1, bx0:bx1]
    ys, xs = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
    d = np.hypot(xs - cx, ys - cy)
    chamfer = np.clip((r + 2.5 * s - d) / (1.0 * s), 0, 1) * np.clip((d - r) / (1.0 * s) + 1, 0, 1)
    bore = np.clip((r - d) / (1.0 * s), 0, 1)
    # the bore is dark, lit from the upper left at its far wall; the chamfer ring is bright
    wall = 35.0 + 40.0 * np.clip(((xs - cx) + (ys - cy)) / max(r, 1.0), 0, 1)
    img[:] = img * (1 - chamfer[..., None]) + 235.0 * chamfer[..., None]
    img[:] = img * (1 - bore[..., None]) + wall[..., None] * bore[..., None]


def draw_good(rng: np.random.Generator, h: int, w: int, holes: list[tuple[float, float, float]] | None = None
              ) -> np.ndarray:
    """The plate on a dark fixture, float32 BGR (``holes``: centre and radius in pixels, else the drawing's)."""
    s = min(h, w) / 320.0
    img = np.full((h, w, 3), 30.0, np.float32) + 6.0 * smooth_noise(rng, h, w, 3 * s)[..., None]
    x0, y0, x1, y1 = (int(PLATE[0] * w), int(PLATE[1] * h), int(PLATE[2] * w), int(PLATE[3] * h))
    brushed = 150.0 + 12.0 * smooth_noise(rng, y1 - y0, x1 - x0, 0.6 * s, sx=25 * s)
    brushed += 6.0 * smooth_noise(rng, y1 - y0, x1 - x0, 40 * s)  # the finish varies across a plate
    steel = np.array([1.0, 0.98, 0.95], np.float32) * rng.uniform(0.97, 1.03)
    img[y0:y1, x0:x1] = brushed[..., None] * steel
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (205, 205, 200), max(1, int(2 * s)))  # the bevel catches light
    for cx, cy, r in holes if holes is not None else hole_positions(h, w):
        _hole(img, cx, cy, r, s)
    return img


def hole_positions(h: int, w: int) -> list[tuple[float, float, float]]:
    s = min(h, w) / 320.0
    return [(x * w, y * h, HOLE_R * s) for x, y in HOLES]


def draw_anomalous(rng: np.random.Generator, h: int, w: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A good plate and the same plate with one anomaly of ``kind`` (same texture, same light)."""
    s = min(h, w) / 320.0
    holes = hole_positions(h, w)
    state = rng.bit_generator.state
    clean = draw_good(rng, h, w, holes)
    if kind in ("missing_hole", "small_hole"):
        k = int(rng.integers(len(holes)))
        changed_holes = list(holes)
        if kind == "missing_hole":
            del changed_holes[k]
        else:
            cx, cy, r = holes[k]
            changed_holes[k] = (cx, cy, r * rng.uniform(0.55, 0.72))
        after = rng.bit_generator.state
        rng.bit_generator.state = state  # the same plate, drilled differently
        changed = draw_good(rng, h, w, changed_holes)
        rng.bit_generator.state = after
        return clean, changed
    out = clean.copy()
    x0, y0, x1, y1 = (PLATE[0] * w, PLATE[1] * h, PLATE[2] * w, PLATE[3] * h)
    cx, cy = rng.uniform(x0 + 20 * s, x1 - 20 * s), rng.uniform(y0 + 20 * s, y1 - 20 * s)
    if kind == "corrosion":
        alpha = blob(rng, h, w, cx, cy, rng.uniform(8, 16) * s, rough=0.6)
        alpha *= np.clip(0.6 + 0.5 * smooth_noise(rng, h, w, 2 * s), 0, 1) * rng.uniform(0.6, 0.85)
        rust = np.array([40, 75, 130], np.float32)
        out[:] = out * (1 - alpha[..., None]) + rust * alpha[..., None]
    elif kind == "swarf":
        pts = random_curve(rng, cx, cy, rng.uniform(30, 60) * s, n=16)
        cv2.polylines(out, [pts + 1], False, (45, 45, 45), max(2, round(2.5 * s)), cv2.LINE_AA)  # its shadow
        cv2.polylines(out, [pts], False, (245, 240, 235), max(1, round(1.8 * s)), cv2.LINE_AA)
    elif kind == "chipped_edge":
        side = int(rng.integers(4))
        t = rng.uniform(0.2, 0.8)
        size = rng.uniform(8, 16) * s
        ex = {0: x0 + t * (x1 - x0), 1: x1, 2: x0 + t * (x1 - x0), 3: x0}[side]
        ey = {0: y0, 1: y0 + t * (y1 - y0), 2: y1, 3: y0 + t * (y1 - y0)}[side]
        pts = np.array([(ex + size * np.cos(a), ey + size * np.sin(a)) for a in rng.uniform(0, 2 * np.pi, 5)])
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        cv2.fillConvexPoly(out, hull, (32, 32, 32), cv2.LINE_AA)
    else:
        raise ValueError(f"plate has no anomaly {kind!r}; it has {', '.join(ANOMALIES)}")
    return clean, out
