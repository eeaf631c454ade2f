"""Product families for good-only (anomaly) inspection, unlike the synthetic line's parts and defects.

Each family is a textured or printed product whose good parts vary (texture, placement, light) and whose
anomalies are none of the line's four defect classes, each with a pixel mask:

- ``fabric``: woven cloth; broken thread, stain, foreign fibre, crease.
- ``plate``: machined plate with a hole pattern; missing hole, undersized hole, corrosion, swarf, chipped edge.
- ``label``: printed label; smeared print, missing print, colour shift, ink splash, wrinkle.
- ``wood``: sawn board's grain; knot, crack, resin pocket, scratch.

Every frame is a pure function of ``(family, seed, width, height, mono, anomalous)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from camera.products import fabric, label, plate, wood
from camera.products.common import ProductFrame, _Invisible, finish, margin

__all__ = ["FAMILIES", "ProductFrame", "anomaly_kinds", "render_product", "write_family"]

_Pair = tuple[np.ndarray, np.ndarray]


def _fabric_pair(rng: np.random.Generator, h: int, w: int, kind: str) -> _Pair:
    clean = fabric.draw_good(rng, h, w)
    return clean, fabric.draw_anomaly(rng, clean, kind)


_GOOD: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "fabric": fabric.draw_good,
    "plate": lambda rng, h, w: plate.draw_good(rng, h, w),
    "label": lambda rng, h, w: label.draw_good(rng, h, w),
    "wood": lambda rng, h, w: wood.draw_good(rng, h, w),
}
_ANOMALOUS: dict[str, Callable[[np.random.Generator, int, int, str], _Pair]] = {
    "fabric": _fabric_pair,
    "plate": plate.draw_anomalous,
    "label": label.draw_anomalous,
    "wood": wood.draw_anomalous,
}
_KINDS: dict[str, tuple[str, ...]] = {"fabric": fabric.ANOMALIES, "plate": plate.ANOMALIES, "label": label.ANOMALIES,
                                     "wood": wood.ANOMALIES}

#: The product families, by name.
FAMILIES: tuple[str, ...] = tuple(_GOOD)


def anomaly_kinds(family: str) -> tuple[str, ...]:
    """The anomalies ``family`` can show."""
    if family not in _KINDS:
        raise ValueError(f"product family {family!r} is unknown; choose one of {', '.join(FAMILIES)}")
    return _KINDS[family]


def render_product(family: str, seed: int, width: int = 320, height: int = 320, *, mono: bool = False,
                   anomalous: bool = False, kind: str | None = None) -> ProductFrame:
    """Render one part of ``family``.

    Args:
        family: One of `FAMILIES`.
        seed: Decides every pixel (texture, placement, light, and the anomaly's kind, place and size).
        width: Frame width in pixels.
        height: Frame height in pixels.
        mono: A Mono8 frame instead of BGR.
        anomalous: Draw one anomaly (its pixels in the frame's mask).
        kind: Force the anomaly's kind (None: drawn from the seed).

    Returns:
        The frame, its mask and what it shows.
    """
    kinds = anomaly_kinds(family)
    if kind is not None and kind not in kinds:
        raise ValueError(f"{family} has no anomaly {kind!r}; it has {', '.join(kinds)}")
    rng = np.random.default_rng([seed, 77, FAMILIES.index(family)])
    pad = margin(height, width)
    h, w = height + 2 * pad, width + 2 * pad
    if not anomalous:
        return finish(rng, family, seed, _GOOD[family](rng, h, w), None, None, mono, pad)
    for _attempt in range(8):
        k = kind if kind is not None else kinds[int(rng.integers(len(kinds)))]
        clean, changed = _ANOMALOUS[family](rng, h, w, k)
        try:
            return finish(rng, family, seed, clean, changed, k, mono, pad)
        except _Invisible:
            continue
    raise RuntimeError(f"{family} seed {seed}: no visible anomaly in 8 draws")  # pragma: no cover - never seen


def write_family(family: str, out: Path, good: int, bad: int, *, seed: int = 0, width: int = 320,
                 height: int = 320, mono: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Write ``good`` good and ``bad`` anomalous parts of ``family`` as PNG files.

    ``out/good/<seed>.png``, ``out/bad/<seed>_<kind>.png`` and its mask ``out/masks/<seed>_<kind>.png``
    (same name as the image). Good parts use seeds ``seed..seed+good-1``, bad ones the next ``bad`` seeds.

    Returns:
        Files written per folder.
    """
    for sub in ("good", "bad", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    total = good + bad
    for i in range(total):
        s = seed + i
        frame = render_product(family, s, width, height, mono=mono, anomalous=i >= good)
        if frame.anomaly is None:
            _write(out / "good" / f"{s:06d}.png", frame.image)
        else:
            name = f"{s:06d}_{frame.anomaly}.png"
            _write(out / "bad" / name, frame.image)
            _write(out / "masks" / name, frame.mask)
        if progress is not None:
            progress(i + 1, total)
    return {"good": good, "bad": bad, "masks": bad}


def _write(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
