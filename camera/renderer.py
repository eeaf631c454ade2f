"""Synthetic production line: parts on a conveyor with labelled surface defects.

The same renderer feeds the `SimulatedLineCamera` and the training/evaluation
datasets, so what the model learns is what the demo station shows. Every frame is
a pure function of ``(seed, width, height, mono)``: the same seed always gives the
same pixels and the same boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: Defect classes, index = class id in datasets and models.
DEFECT_CLASSES: tuple[str, ...] = ("scratch", "dent", "crack", "contamination")

#: Part / surface kinds the line produces.
PART_KINDS: tuple[str, ...] = ("brushed_metal", "pcb", "moulded_plastic")

#: Share of parts that leave the renderer without any defect (a line is mostly OK).
DEFAULT_OK_SHARE = 0.6

#: Smallest defect box side the renderer produces, in frame pixels at 320 px.
MIN_DEFECT_PX = 8


@dataclass(frozen=True)
class GroundTruthBox:
    """One labelled defect: class id and xyxy box in frame pixels."""

    class_id: int
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


@dataclass(frozen=True)
class GroundTruth:
    """What a simulated frame really shows: part kind and its defects."""

    seed: int
    part_kind: str
    boxes: tuple[GroundTruthBox, ...] = field(default_factory=tuple)

    @property
    def defective(self) -> bool:
        return len(self.boxes) > 0


@dataclass(frozen=True)
class RenderedFrame:
    """A rendered frame (u8, HxW mono or HxWx3 BGR) with its ground truth."""

    image: np.ndarray
    truth: GroundTruth


def render_part(
    seed: int,
    width: int = 320,
    height: int = 320,
    *,
    mono: bool = False,
    ok_share: float = DEFAULT_OK_SHARE,
    max_defects: int = 3,
    kind: str | None = None,
) -> RenderedFrame:
    """Render one part on the conveyor.

    Args:
        seed: Determines everything about the frame.
        width: Frame width in pixels.
        height: Frame height in pixels.
        mono: Return a single-channel frame (Mono8 camera) instead of BGR.
        ok_share: Probability that the part has no defect.
        max_defects: Upper bound on defects per defective part.
        kind: Force the part kind (the faces of one part on a line); None: drawn from the seed.

    Returns:
        The frame and its ground truth boxes (frame pixels, xyxy).
    """
    rng = np.random.default_rng(seed)
    scale = min(width, height) / 320.0
    img = _conveyor(rng, width, height)
    drawn = PART_KINDS[int(rng.integers(len(PART_KINDS)))]  # drawn even when forced: same scene otherwise
    kind = kind if kind is not None else drawn
    part_mask, _quad = _place_part(rng, img, kind, width, height)
    boxes: list[GroundTruthBox] = []
    n_defects = 0 if rng.random() < ok_share else int(rng.integers(1, max_defects + 1))
    occupied = np.zeros((height, width), np.uint8)
    for _ in range(n_defects):
        for _attempt in range(8):
            cls = int(rng.integers(len(DEFECT_CLASSES)))
            box = _DRAWERS[cls](rng, img, part_mask, occupied, scale, kind)
            if box is not None:
                boxes.append(GroundTruthBox(cls, *box))
                break
    img = _lighting_and_sensor(rng, img)
    if mono:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return RenderedFrame(img, GroundTruth(seed=seed, part_kind=kind, boxes=tuple(boxes)))


def defective_faces(part_seed: int, faces: int, ok_share: float = DEFAULT_OK_SHARE) -> frozenset[int]:
    """Which faces of part ``part_seed`` carry defects (empty for an OK part).

    A part is OK with probability ``ok_share``; a defective part has its defects on one
    face, sometimes two, as a real part would: a scratch is seen by the camera facing it.
    Every camera of a line computes the same answer for the same part.
    """
    rng = np.random.default_rng([part_seed, 40100])
    if faces < 1 or rng.random() < ok_share:
        return frozenset()
    n = min(faces, 1 + int(rng.random() < 0.3))
    return frozenset(int(f) for f in rng.choice(faces, size=n, replace=False))


def face_seed(part_seed: int, face: int) -> int:
    """The render seed of face ``face`` of part ``part_seed`` (distinct for every face and part)."""
    return part_seed * 64 + face


def render_face(
    part_seed: int,
    face: int,
    faces: int,
    width: int = 320,
    height: int = 320,
    *,
    mono: bool = False,
    ok_share: float = DEFAULT_OK_SHARE,
) -> RenderedFrame:
    """Face ``face`` (of ``faces``) of part ``part_seed``, as the camera facing it sees it.

    The part's truth is the union of its faces' truths: it is defective when any face is.
    """
    defective = face in defective_faces(part_seed, faces, ok_share)
    kind = PART_KINDS[int(np.random.default_rng([part_seed, 7]).integers(len(PART_KINDS)))]  # one part, one kind
    return render_part(face_seed(part_seed, face), width, height, mono=mono, ok_share=0.0 if defective else 1.0,
                       kind=kind)


# --------------------------------------------------------------------------- scene


def _conveyor(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = rng.uniform(35, 60)
    img = np.full((h, w, 3), base, np.float32)
    # belt ribs across the travel direction, phase varies with belt position
    period = rng.uniform(14, 24)
    phase = rng.uniform(0, period)
    xs = (np.arange(w, dtype=np.float32) + phase) % period
    ribs = np.where(xs < 2.5, 10.0, 0.0).astype(np.float32)
    img += ribs[None, :, None]
    img += rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    return img


def _place_part(
    rng: np.random.Generator, img: np.ndarray, kind: str, w: int, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the part with pose jitter; return its mask and corner quad."""
    pw = w * rng.uniform(0.70, 0.84)
    ph = h * rng.uniform(0.66, 0.80)
    cx = w / 2 + rng.uniform(-0.04, 0.04) * w
    cy = h / 2 + rng.uniform(-0.04, 0.04) * h
    angle = rng.uniform(-6, 6)
    rect = ((cx, cy), (pw, ph), angle)
    quad = cv2.boxPoints(rect).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, quad.astype(np.int32), 255)

    tex = _surface(rng, kind, math.ceil(pw) + 4, math.ceil(ph) + 4)
    # map the texture onto the rotated rectangle
    src = np.array(
        [[0, tex.shape[0] - 1], [0, 0], [tex.shape[1] - 1, 0], [tex.shape[1] - 1, tex.shape[0] - 1]],
        np.float32,
    )
    m = cv2.getPerspectiveTransform(src, quad)
    warped = cv2.warpPerspective(tex, m, (w, h), flags=cv2.INTER_LINEAR)
    sel = mask > 0
    img[sel] = warped[sel]
    # a thin darker rim so the part edge is crisp
    cv2.polylines(img, [quad.astype(np.int32)], True, (25, 25, 25), 1, cv2.LINE_AA)
    inner = cv2.erode(mask, np.ones((9, 9), np.uint8))
    return inner, quad


def _surface(rng: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
    if kind == "brushed_metal":
        level = rng.uniform(140, 185)
        column = rng.normal(0, 1, (h, 1)).astype(np.float32)
        streak = cv2.GaussianBlur(np.repeat(column, w, 1), (0, 0), sigmaX=25, sigmaY=0.6)
        metal: np.ndarray = np.full((h, w, 3), level, np.float32) + 14 * streak[..., None]
        metal[..., 0] += 4  # slight blue cast
        return metal
    if kind == "pcb":
        tex = np.empty((h, w, 3), np.float32)
        tex[...] = (rng.uniform(40, 60), rng.uniform(95, 125), rng.uniform(35, 55))
        trace = (rng.uniform(70, 90), rng.uniform(150, 175), rng.uniform(90, 115))
        for _ in range(int(rng.integers(4, 9))):
            y = int(rng.integers(4, max(5, h - 4)))
            x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
            cv2.line(tex, (x0, y), (x1, y), trace, 2)
            x = int(rng.integers(4, max(5, w - 4)))
            y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
            cv2.line(tex, (x, y0), (x, y1), trace, 2)
        pad = (rng.uniform(150, 175), rng.uniform(175, 200), rng.uniform(190, 215))
        for _ in range(int(rng.integers(3, 8))):
            x, y = int(rng.integers(6, max(7, w - 14))), int(rng.integers(6, max(7, h - 14)))
            s = int(rng.integers(5, 9))
            cv2.rectangle(tex, (x, y), (x + s, y + s), pad, -1)
        return tex
    # moulded plastic
    colour = np.array([rng.uniform(60, 200), rng.uniform(60, 200), rng.uniform(60, 200)], np.float32)
    colour *= 150.0 / max(1.0, float(colour.mean()))
    tex = np.empty((h, w, 3), np.float32)
    tex[...] = colour
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3)
    tex += 6 * grain[..., None]
    return tex


def _lighting_and_sensor(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    gain = rng.uniform(0.85, 1.15)  # lamp drift between frames
    gx, gy = rng.uniform(-0.18, 0.18, 2)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    grad = 1.0 + gx * (xs / w - 0.5) + gy * (ys / h - 0.5)
    img = img * (gain * grad)[..., None]
    sigma = rng.uniform(0.0, 0.8)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(1.5, 4.0), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- defects

Box = tuple[float, float, float, float]


def _pick_anchor(
    rng: np.random.Generator, part_mask: np.ndarray, occupied: np.ndarray, margin: int
) -> tuple[int, int] | None:
    h, w = part_mask.shape
    for _ in range(20):
        x = int(rng.integers(margin, max(margin + 1, w - margin)))
        y = int(rng.integers(margin, max(margin + 1, h - margin)))
        if part_mask[y, x] and not occupied[max(0, y - margin) : y + margin, max(0, x - margin) : x + margin].any():
            return x, y
    return None


def _commit(
    img: np.ndarray, layer: np.ndarray, alpha: np.ndarray, part_mask: np.ndarray, occupied: np.ndarray
) -> Box | None:
    """Blend a defect layer into the image, clipped to the part; return its exact box."""
    a = alpha * (part_mask > 0)
    ys, xs = np.nonzero(a > 0.25)
    if len(xs) == 0:
        return None
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    if min(x2 - x1, y2 - y1) < 3:
        return None
    # blend only where the defect has any weight (identical to a full-frame blend)
    ay, ax = np.nonzero(a)
    r = (slice(ay.min(), ay.max() + 1), slice(ax.min(), ax.max() + 1))
    ar = a[r][..., None]
    img[r] = img[r] * (1 - ar) + layer[r] * ar
    h, w = part_mask.shape
    pad = 1
    x1, y1 = max(0, x1 - pad), max(0, y1 - pad)
    x2, y2 = min(w, x2 + pad), min(h, y2 + pad)
    occupied[y1:y2, x1:x2] = 1
    return float(x1), float(y1), float(x2), float(y2)


def _size(rng: np.random.Generator, scale: float, lo: float, hi: float) -> float:
    # log-uniform: as many small defects as large ones
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) * scale


def _draw_scratch(
    rng: np.random.Generator, img: np.ndarray, part_mask: np.ndarray, occupied: np.ndarray, scale: float, kind: str
) -> Box | None:
    length = _size(rng, scale, 10, 90)
    anchor = _pick_anchor(rng, part_mask, occupied, int(length / 2) + 2)
    if anchor is None:
        return None
    # scratches never run along the board's axes, where PCB traces do
    angle = rng.uniform(15, 75) + 90 * int(rng.integers(4))
    dx, dy = math.cos(math.radians(angle)) * length / 2, math.sin(math.radians(angle)) * length / 2
    alpha = np.zeros(part_mask.shape, np.float32)
    p0 = (int(anchor[0] - dx), int(anchor[1] - dy))
    p1 = (int(anchor[0] + dx), int(anchor[1] + dy))
    bend = (int(anchor[0] + rng.uniform(-2, 2)), int(anchor[1] + rng.uniform(-2, 2)))
    thick = 1 if length < 40 * scale else 2
    cv2.line(alpha, p0, bend, 1.0, thick, cv2.LINE_AA)
    cv2.line(alpha, bend, p1, 1.0, thick, cv2.LINE_AA)
    layer = np.full(img.shape, rng.uniform(235, 255), np.float32)
    return _commit(img, layer, np.clip(alpha * 1.2, 0, 1), part_mask, occupied)


def _draw_dent(
    rng: np.random.Generator, img: np.ndarray, part_mask: np.ndarray, occupied: np.ndarray, scale: float, kind: str
) -> Box | None:
    r = _size(rng, scale, 4.5, 22)
    anchor = _pick_anchor(rng, part_mask, occupied, int(r) + 3)
    if anchor is None:
        return None
    h, w = part_mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ex = rng.uniform(0.8, 1.25)
    d = np.sqrt(((xx - anchor[0]) / ex) ** 2 + ((yy - anchor[1]) * ex) ** 2) / r
    alpha = np.clip(1.3 - d, 0, 1).astype(np.float32)
    alpha[d > 1.0] = 0
    # dark bowl with a bright rim on the lit side
    shade = np.clip(1.0 - d, 0, 1)
    lit = ((xx - anchor[0]) + (yy - anchor[1])) / (r * 1.4)
    tone = 40 + 50 * (1 - shade) + 80 * np.clip(lit, 0, 1) * (d > 0.55)
    layer = np.repeat(tone[..., None], 3, 2).astype(np.float32)
    return _commit(img, layer, alpha, part_mask, occupied)


def _draw_crack(
    rng: np.random.Generator, img: np.ndarray, part_mask: np.ndarray, occupied: np.ndarray, scale: float, kind: str
) -> Box | None:
    length = _size(rng, scale, 12, 80)
    anchor = _pick_anchor(rng, part_mask, occupied, int(length / 2) + 2)
    if anchor is None:
        return None
    alpha = np.zeros(part_mask.shape, np.float32)
    heading = rng.uniform(0, 2 * math.pi)
    steps = max(4, int(length / (4 * scale)))
    step = length / steps
    x, y = anchor[0] - math.cos(heading) * length / 2, anchor[1] - math.sin(heading) * length / 2
    pts = [(x, y)]
    for _ in range(steps):
        heading += rng.uniform(-0.7, 0.7)
        x += math.cos(heading) * step
        y += math.sin(heading) * step
        pts.append((x, y))
    poly = np.array(pts, np.int32)
    cv2.polylines(alpha, [poly], False, 1.0, 2 if length > 30 * scale else 1, cv2.LINE_AA)
    # a branch from the middle
    if length > 25 * scale:
        mx, my = pts[len(pts) // 2]
        bh = heading + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2)
        bl = length * rng.uniform(0.2, 0.4)
        cv2.line(alpha, (int(mx), int(my)), (int(mx + math.cos(bh) * bl), int(my + math.sin(bh) * bl)), 1.0, 1, cv2.LINE_AA)
    layer = np.full(img.shape, rng.uniform(5, 25), np.float32)
    return _commit(img, layer, np.clip(alpha * 1.3, 0, 1), part_mask, occupied)


def _draw_contamination(
    rng: np.random.Generator, img: np.ndarray, part_mask: np.ndarray, occupied: np.ndarray, scale: float, kind: str
) -> Box | None:
    size = _size(rng, scale, 8, 42)
    anchor = _pick_anchor(rng, part_mask, occupied, int(size / 2) + 3)
    if anchor is None:
        return None
    alpha: np.ndarray = np.zeros(part_mask.shape, np.float32)
    for _ in range(int(rng.integers(3, 7))):
        ox, oy = rng.normal(0, size / 5, 2)
        ax = max(1, int(rng.uniform(0.15, 0.35) * size))
        ay = max(1, int(rng.uniform(0.15, 0.35) * size))
        cv2.ellipse(alpha, (int(anchor[0] + ox), int(anchor[1] + oy)), (ax, ay), rng.uniform(0, 180), 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.8)
    h, w = part_mask.shape
    mottling = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    colour = np.array([rng.uniform(10, 40), rng.uniform(40, 80), rng.uniform(70, 110)], np.float32)  # oily brown
    # Oil darkens whatever it lands on. Tie the stain's luminance to the surface under it
    # so it also shows on a Mono8 camera (a fixed brown is as bright as a green PCB in grey).
    under = (alpha > 0.25) & (part_mask > 0)
    surface_luma = float(_luma(img[under]).mean()) if under.any() else 100.0
    target = surface_luma * rng.uniform(0.3, 0.55)
    tint = colour / max(1.0, float(_luma(colour[None, :])[0]))
    layer = tint[None, None, :] * (target + 0.3 * target * mottling[..., None])
    return _commit(img, layer, np.clip(alpha * 0.95, 0, 1), part_mask, occupied)


def _luma(bgr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luminance of BGR pixels (the weights OpenCV uses for BGR2GRAY)."""
    return bgr[..., 0] * 0.114 + bgr[..., 1] * 0.587 + bgr[..., 2] * 0.299


_DRAWERS = (_draw_scratch, _draw_dent, _draw_crack, _draw_contamination)
