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
from pathlib import Path
from typing import Any

import numpy as np

from camera.renderer import DEFAULT_OK_SHARE, RenderedFrame, render_face
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import load_card
from inspector.pipeline.results import detections_from_array
from inspector.pipeline.verdict import VerdictRules
from inspector.quality.evaluation import detect_frames

#: Held-out line parts start here: apart from training (0..), held-out frames (1,000,000..),
#: the demo stations (2,000,000.. and line-demo's 3,000,000..).
LINE_EVAL_SEED_BASE = 3_500_000


def evaluate_parts(
    model: str | Path,
    *,
    parts: int = 500,
    faces: int = 8,
    mono_faces: tuple[int, ...] = (3, 7),
    threshold: float = 0.35,
    class_thresholds: dict[str, float] | None = None,
    backend: str = "openvino",
    width: int = 320,
    height: int = 320,
    seed_base: int = LINE_EVAL_SEED_BASE,
    ok_share: float = DEFAULT_OK_SHARE,
    precision: str = "auto",
) -> dict[str, Any]:
    """Part and frame escape / false-reject rates over ``parts`` held-out parts of ``faces`` views."""
    card = load_card(model)
    be = create_backend(backend, card, max_batch=faces, precision=precision)
    rules = VerdictRules(threshold, dict(class_thresholds or {}))
    part_rows: list[tuple[bool, bool, float]] = []  # truth NG, judged NG, best score over its faces
    class_best: list[np.ndarray] = []  # per part, each class's best score over its faces
    frame_def = frame_escapes = frame_false = 0
    busy = 0.0
    try:
        for p in range(parts):
            seed = seed_base + p
            frames: list[RenderedFrame] = [
                render_face(seed, k, faces, width, height, mono=k in mono_faces, ok_share=ok_share)
                for k in range(faces)
            ]
            t0 = time.perf_counter()
            dets = detect_frames(be, card, frames, width, height)
            busy += time.perf_counter() - t0
            any_ng = False
            best = 0.0
            per_class = np.zeros(len(card.classes))
            for f, d in zip(frames, dets):
                verdict, _rule, _counted, _rej = rules.decide(detections_from_array(d, card.classes))
                ng = verdict.value == "NG"
                any_ng |= ng
                best = max(best, float(d[:, 4].max()) if len(d) else 0.0)
                for c in range(len(card.classes)):
                    scores = d[d[:, 5].astype(int) == c, 4] if len(d) else d[:0, 4]
                    per_class[c] = max(per_class[c], float(scores.max()) if len(scores) else 0.0)
                if f.truth.defective:
                    frame_def += 1
                    frame_escapes += not ng
                else:
                    frame_false += ng
            truth = any(f.truth.defective for f in frames)
            part_rows.append((truth, any_ng, best))
            class_best.append(per_class)
    finally:
        be.close()
    truth_ng = np.array([r[0] for r in part_rows], bool)
    judged = np.array([r[1] for r in part_rows], bool)
    best_scores = np.array([r[2] for r in part_rows])
    n_def, n_ok = int(truth_ng.sum()), int((~truth_ng).sum())
    n_frames = parts * faces
    sweep = []
    for t in np.round(np.arange(0.05, 0.91, 0.05), 2):  # one threshold for every class
        ng = best_scores >= t
        sweep.append({"threshold": float(t),
                      "part_escape_rate": float((~ng & truth_ng).sum() / max(1, n_def)),
                      "part_false_reject_rate": float((ng & ~truth_ng).sum() / max(1, n_ok))})
    return {
        "model": card.name,
        "backend": backend,
        "threshold": threshold,
        "class_thresholds": dict(class_thresholds or {}),
        "parts": parts,
        "faces": faces,
        "seeds": [seed_base, seed_base + parts - 1],
        "defective_parts": n_def,
        "ok_parts": n_ok,
        "part_escapes": int((~judged & truth_ng).sum()),
        "part_false_rejects": int((judged & ~truth_ng).sum()),
        "part_escape_rate": float((~judged & truth_ng).sum() / max(1, n_def)),
        "part_false_reject_rate": float((judged & ~truth_ng).sum() / max(1, n_ok)),
        "frame_escape_rate": frame_escapes / max(1, frame_def),
        "frame_false_reject_rate": frame_false / max(1, n_frames - frame_def),
        "defective_frames": frame_def,
        "latency_ms_per_image": busy / max(1, n_frames) * 1e3,
        "part_threshold_sweep": sweep,
        "part_class_sweep": class_sweep(np.array(class_best).reshape(-1, len(card.classes)), truth_ng, card.classes,
                                        rules),
    }


def class_sweep(class_best: np.ndarray, truth_ng: np.ndarray, classes: list[str] | tuple[str, ...],
                rules: VerdictRules) -> dict[str, list[dict[str, Any]]]:
    """Per class, its threshold swept (0.05..0.90) with every other class at its rule: part escapes and false rejects.

    What per-class thresholds are chosen from, on validation parts (never the held-out sets): a
    part is NG when any class's best score over its faces reaches that class's threshold.
    """
    own = np.array([rules.threshold_for(c) for c in classes])
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
