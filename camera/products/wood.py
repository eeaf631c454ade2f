"""Sawn wood: a board's grain, fine fibres along it and growth-ring bands that wander slowly across, every
board a little different in tone, ring pitch and figure.

Anomalies: a knot (a dark, ringed oval the grain swells around), a crack (a thin dark split along the grain),
a resin pocket (an amber streak along the grain), a scratch (a bright scored line across the grain).
"""

from __future__ import annotations

import cv2
import numpy as np

from camera.products.common import smooth_noise

ANOMALIES: tuple[str, ...] = ("knot", "crack", "resin_pocket", "scratch")


def draw_good(rng: np.random.Generator, h: int, w: int, bend: np.ndarray | None = None) -> np.ndarray:
    """One board, float32 BGR; ``bend`` (h, w) px shifts the grain across (a knot's swelling)."""
    s = min(h, w) / 320.0
    ys = np.mgrid[0:h, 0:w][0].astype(np.float32)
    pitch = rng.uniform(14, 22) * s  # growth-ring band width
    wander = 0.9 * pitch * smooth_noise(rng, h, w, 40 * s, 160 * s)  # the figure: bands bend slowly along the board
    v = ys + wander + (bend if bend is not None else 0.0)
    bands = 0.5 + 0.5 * np.sin(2 * np.pi * v / pitch + rng.uniform(0, 2 * np.pi))
    late = np.clip((bands - 0.55) / 0.45, 0, 1) ** 1.5  # latewood: the darker, narrower part of each ring
    fibres = smooth_noise(rng, h, w, 0.8 * s, 12 * s)  # fine streaks along the grain
    tone = 1.0 - 0.32 * late + 0.05 * fibres + 0.03 * smooth_noise(rng, h, w, 25 * s)
    colour = np.array([95, 150, 200], np.float32) * rng.uniform(0.92, 1.08) * rng.uniform(0.96, 1.04, 3)  # pine
    return (tone[..., None] * colour).astype(np.float32)


def draw_anomalous(rng: np.random.Generator, h: int, w: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(the board, the same board with one anomaly of ``kind``)."""
    s = min(h, w) / 320.0
    before = rng.bit_generator.state
    clean = draw_good(rng, h, w)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "knot":
        rx, ry = rng.uniform(10, 22) * s, rng.uniform(7, 14) * s
        d = np.hypot((xs - cx) / rx, (ys - cy) / ry)
        bend = 2.0 * ry * np.exp(-0.5 * d ** 2) * np.tanh((ys - cy) / ry)  # the rings swell around the knot
        after = rng.bit_generator.state
        rng.bit_generator.state = before  # the same board again, its grain bent
        out = draw_good(rng, h, w, bend.astype(np.float32))
        rng.bit_generator.state = after
        rings = 0.5 + 0.5 * np.cos(d * 9.0)
        core = np.clip(1.2 - d, 0, 1)
        return clean, out * (1.0 - core * (0.40 + 0.20 * rings))[..., None]
    out = clean.copy()
    line = np.zeros((h, w), np.uint8)
    if kind == "crack":
        length = rng.uniform(30, 80) * s
        px = np.arange(int(cx - length / 2), int(cx + length / 2))
        py = cy + np.cumsum(rng.normal(0, 0.35, len(px)))  # along the grain, a little ragged
        pts = np.stack([px, py], axis=1).round().astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(line, [pts], False, 255, max(1, round(rng.uniform(1.2, 2.5) * s)), cv2.LINE_AA)
        out *= (1.0 - 0.7 * line.astype(np.float32) / 255.0)[..., None]
    elif kind == "resin_pocket":
        rx, ry = rng.uniform(12, 28) * s, rng.uniform(3, 6) * s  # long along the grain
        rough = 0.25 * smooth_noise(rng, h, w, 4 * s)
        alpha = np.clip((1.0 + rough - np.hypot((xs - cx) / rx, (ys - cy) / ry)) / 0.3, 0, 1)
        a = (alpha * rng.uniform(0.6, 0.85))[..., None]
        amber = np.array([40, 120, 190], np.float32)
        out = out * (1 - a) + (out * 0.3 + amber * 0.7) * a
    elif kind == "scratch":
        ang = rng.uniform(np.radians(50), np.radians(130))  # across the grain
        half = rng.uniform(15, 35) * s
        dx, dy = np.cos(ang) * half, np.sin(ang) * half
        cv2.line(line, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 255, max(1, round(1.5 * s)),
                 cv2.LINE_AA)
        m = (line.astype(np.float32) / 255.0)[..., None]
        out = out * (1 - m) + np.minimum(out * 1.45 + 25.0, 255.0) * m
    else:
        raise ValueError(f"wood has no anomaly {kind!r}; it has {', '.join(ANOMALIES)}")
    return clean, out
