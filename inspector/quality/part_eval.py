"""Part-level evaluation: every face of held-out parts through the runtime path, one verdict per part.

On a line a part is NG when any of its cameras says NG, so a frame's false-reject rate
is multiplied by about the number of views, while an escape needs every face with a
defect to be missed. This renders ``parts`` held-out parts as a line's cameras see them
(`camera.renderer.render_face`: face k of part p, the defects on one or two faces), runs
every face through the same decode/NMS/rescale/verdict as the station and reports both
rates per part and per frame, and a threshold sweep per part to calibrate the line's
threshold on parts rather than frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camera.renderer import DEFAULT_OK_SHARE, RenderedFrame, render_face
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import load_card
from inspector.pipeline.verdict import VerdictRules
from inspector.quality.evaluation import card_rules, class_limits, detect_frames

#: Held-out line parts start here: apart from training (0..), held-out frames (1,000,000..),
#: the demo stations (2,000,000.. and line-demo's 3,000,000..).
LINE_EVAL_SEED_BASE = 3_500_000


@dataclass(frozen=True)
class PartScores:
    """Rendered line parts through the runtime path, kept as each class's best score per face.

    What any threshold rule is decided from: with no area or ROI rule, a face is NG when some class's
    best score on it reaches that class's threshold, and a part is NG when any of its faces is.

    Attributes:
        classes: The model's classes (the last axis).
        seed_base: The first part's seed (part ``p`` is seed ``seed_base + p``).
        face_scores: ``(parts, faces, classes)`` each class's best score on each face, 0 where none.
        face_defective: ``(parts, faces)`` whether the face truly shows a defect.
        busy_s: Seconds spent in detection (preprocess, inference, decode, NMS).
        precision: The precision the backend ran (``auto`` resolved where the backend says).
    """

    classes: tuple[str, ...]
    seed_base: int
    face_scores: np.ndarray
    face_defective: np.ndarray
    busy_s: float = 0.0
    precision: str = ""

    @property
    def scores(self) -> np.ndarray:
        """``(parts, classes)`` each class's best score over a part's faces."""
        return self.face_scores.max(axis=1)

    @property
    def defective(self) -> np.ndarray:
        """``(parts,)`` whether a part truly has a defect (on any face)."""
        return np.asarray(self.face_defective.any(axis=1), bool)


def score_parts(
    model: str | Path,
    *,
    parts: int,
    faces: int = 8,
    mono_faces: tuple[int, ...] = (3, 7),
    backend: str = "openvino",
    width: int = 320,
    height: int = 320,
    seed_base: int = LINE_EVAL_SEED_BASE,
    ok_share: float = DEFAULT_OK_SHARE,
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> PartScores:
    """Render ``parts`` line parts of ``faces`` views and detect on every face as the station does.

    Args:
        model: Model name or folder (its sha256 checked; with ``precision="int8"`` its INT8 IR's too).
        progress: Called with (parts done, parts) after each part.

    Returns:
        Each class's best score per face and the truth (`PartScores`).
    """
    card = load_card(model, int8=precision == "int8")
    be = create_backend(backend, card, max_batch=faces, precision=precision)
    nc = len(card.classes)
    face_scores = np.zeros((parts, faces, nc))
    face_defective = np.zeros((parts, faces), bool)
    busy = 0.0
    try:
        for p in range(parts):
            frames: list[RenderedFrame] = [
                render_face(seed_base + p, k, faces, width, height, mono=k in mono_faces, ok_share=ok_share)
                for k in range(faces)
            ]
            t0 = time.perf_counter()
            dets = detect_frames(be, card, frames, width, height)
            busy += time.perf_counter() - t0
            for k, (f, d) in enumerate(zip(frames, dets)):
                if len(d):  # each class's best: scatter the scores onto their classes
                    np.maximum.at(face_scores[p, k], d[:, 5].astype(int), d[:, 4])
                face_defective[p, k] = f.truth.defective
            if progress is not None:
                progress(p + 1, parts)
    finally:
        be.close()
    ran = str(getattr(be, "precision", precision))  # OpenVINO resolves auto; other backends run what was asked
    return PartScores(card.classes, seed_base, face_scores, face_defective, busy, ran)


def evaluate_parts(
    model: str | Path,
    *,
    parts: int = 500,
    faces: int = 8,
    mono_faces: tuple[int, ...] = (3, 7),
    threshold: float | None = None,
    class_thresholds: Mapping[str, float] | None = None,
    backend: str = "openvino",
    width: int = 320,
    height: int = 320,
    seed_base: int = LINE_EVAL_SEED_BASE,
    ok_share: float = DEFAULT_OK_SHARE,
    precision: str = "auto",
) -> dict[str, Any]:
    """Part and frame escape / false-reject rates over ``parts`` held-out parts of ``faces`` views.

    Judged at the card's rules (`evaluation.card_rules`): ``threshold`` replaces the card's threshold,
    ``class_thresholds`` the card's class thresholds per class.
    """
    card = load_card(model, verify=False)
    rules = card_rules(card, threshold, class_thresholds)
    s = score_parts(model, parts=parts, faces=faces, mono_faces=mono_faces, backend=backend, width=width,
                    height=height, seed_base=seed_base, ok_share=ok_share, precision=precision)
    limits = class_limits(rules, s.classes)
    face_ng = np.asarray((s.face_scores >= limits).any(axis=2), bool)
    judged = face_ng.any(axis=1)
    truth_ng = s.defective
    best_scores = s.scores.max(axis=1)
    n_def, n_ok = int(truth_ng.sum()), int((~truth_ng).sum())
    n_frames = parts * faces
    frame_def = int(s.face_defective.sum())
    sweep = []
    for t in np.round(np.arange(0.05, 0.91, 0.05), 2):  # one threshold for every class
        ng = best_scores >= t
        sweep.append({"threshold": float(t),
                      "part_escape_rate": float((~ng & truth_ng).sum() / max(1, n_def)),
                      "part_false_reject_rate": float((ng & ~truth_ng).sum() / max(1, n_ok))})
    return {
        "model": card.name,
        "backend": backend,
        "precision": precision,
        "threshold": rules.default_threshold,
        "class_thresholds": dict(rules.class_thresholds),
        "parts": parts,
        "faces": faces,
        "seeds": [seed_base, seed_base + parts - 1],
        "defective_parts": n_def,
        "ok_parts": n_ok,
        "part_escapes": int((~judged & truth_ng).sum()),
        "part_false_rejects": int((judged & ~truth_ng).sum()),
        "part_escape_rate": float((~judged & truth_ng).sum() / max(1, n_def)),
        "part_false_reject_rate": float((judged & ~truth_ng).sum() / max(1, n_ok)),
        "frame_escape_rate": int((~face_ng & s.face_defective).sum()) / max(1, frame_def),
        "frame_false_reject_rate": int((face_ng & ~s.face_defective).sum()) / max(1, n_frames - frame_def),
        "defective_frames": frame_def,
        "latency_ms_per_image": s.busy_s / max(1, n_frames) * 1e3,
        "part_threshold_sweep": sweep,
        "part_class_sweep": class_sweep(s.scores, truth_ng, card.classes, rules),
    }


def class_sweep(class_best: np.ndarray, truth_ng: np.ndarray, classes: list[str] | tuple[str, ...],
                rules: VerdictRules) -> dict[str, list[dict[str, Any]]]:
    """Per class, its threshold swept (0.05..0.90) with every other class at its rule: part escapes and false rejects.

    What per-class thresholds are chosen from, on validation parts (never the held-out sets): a
    part is NG when any class's best score over its faces reaches that class's threshold.
    """
    own = class_limits(rules, classes)
    n_def, n_ok = int(truth_ng.sum()), int((~truth_ng).sum())
    out: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(classes):
        rows = []
        for t in sorted({*np.round(np.arange(0.05, 0.91, 0.05), 2).tolist(), round(float(own[i]), 4)}):
            limits = own.copy()
            limits[i] = t
            ng = (class_best >= limits).any(axis=1)
            esc, fr = int((~ng & truth_ng).sum()), int((ng & ~truth_ng).sum())
            rows.append({"threshold": float(t), "part_escapes": esc, "part_false_rejects": fr,
                         "part_escape_rate": esc / max(1, n_def), "part_false_reject_rate": fr / max(1, n_ok)})
        out[name] = rows
    return out
