"""Model evaluation on held-out seeds, through the runtime pipeline (not Ultralytics).

Frames come from the renderer at seeds ``HELD_OUT_SEED_BASE + i`` (never used for
training), with the line's own share of OK parts, a quarter of them Mono8. Boxes
are decoded, NMS'd and rescaled exactly as the station does; AP is computed with
101-point interpolation (COCO / Ultralytics convention).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camera.renderer import DEFAULT_OK_SHARE, RenderedFrame, render_part
from inspector.pipeline.backends import Backend, BatchItem, create_backend
from inspector.pipeline.model_repo import ModelCard, ModelError, dump_toml, load_card, resolve_model_dir, sha256_file
from inspector.pipeline.postprocess import decode_yolo, iou_matrix, nms, to_frame_pixels
from inspector.pipeline.preprocess import Letterbox
from inspector.pipeline.verdict import VerdictRules
from inspector.quality.dataset import HELD_OUT_SEED_BASE

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: The verdict threshold of a card without metrics.threshold (`inspector eval`, the gate).
UNCALIBRATED_THRESHOLD = 0.25


def card_rules(card: ModelCard, threshold: float | None = None,
               class_thresholds: Mapping[str, float] | None = None) -> VerdictRules:
    """The rules a model is evaluated at: its card's threshold and class thresholds (what a station camera
    without its own ``default_threshold`` uses), ``threshold`` replacing the card's threshold and
    ``class_thresholds`` the card's per class.

    Raises:
        ModelError: ``class_thresholds`` names a class the model lacks.
    """
    unknown = sorted(set(class_thresholds or {}) - set(card.classes))
    if unknown:
        raise ModelError(f"class thresholds: {', '.join(unknown)} is not a class of {card.name} "
                         f"({', '.join(card.classes)})")
    if threshold is None:
        threshold = card.threshold if card.threshold is not None else UNCALIBRATED_THRESHOLD
    return VerdictRules(threshold, {**card.class_thresholds, **(class_thresholds or {})})


def class_limits(rules: VerdictRules, classes: Sequence[str]) -> np.ndarray:
    """Each class's threshold under ``rules``, in the model's class order."""
    return np.array([rules.threshold_for(c) for c in classes])


def judged_ng(dets: np.ndarray, limits: np.ndarray) -> bool:
    """Whether ``(N, 6)`` detections hold one at its class's threshold (``limits``, one per class)."""
    return bool(len(dets) and (dets[:, 4] >= limits[dets[:, 5].astype(int)]).any())


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, 101-point interpolation."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def match_at_thresholds(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """For ``(N, 6)`` predictions and ``(M, 5)`` ground truth (cls, x1..y2): ``(N, 10)`` TP flags.

    Greedy by score per IoU threshold, same class only.
    """
    tp = np.zeros((len(pred), len(IOU_THRESHOLDS)), bool)
    if len(pred) == 0 or len(gt) == 0:
        return tp
    ious = iou_matrix(pred[:, :4], gt[:, 1:5])
    same = pred[:, 5:6] == gt[None, :, 0]
    ious = np.where(same, ious, 0.0)
    order = np.argsort(-pred[:, 4])
    for k, thr in enumerate(IOU_THRESHOLDS):
        used = np.zeros(len(gt), bool)
        for i in order:
            cand = np.where(~used & (ious[i] >= thr))[0]
            if cand.size:
                j = cand[np.argmax(ious[i, cand])]
                used[j] = True
                tp[i, k] = True
    return tp


def ap_table(preds: list[np.ndarray], tps: list[np.ndarray], n_gt: np.ndarray) -> np.ndarray:
    """AP per class and IoU threshold, ``(nc, 10)``, from every image's predictions and their TP flags.

    Args:
        preds: Per image, ``(N, 6)`` ``x1 y1 x2 y2 score class`` (frame pixels).
        tps: Per image, ``(N, 10)`` TP flags from `match_at_thresholds`.
        n_gt: Ground-truth boxes per class over all images.

    A class without ground truth has AP 0 here and is left out of the means by the caller
    (``n_gt > 0``); a class with ground truth but no prediction has AP 0 and counts.
    """
    nc = len(n_gt)
    pred = np.concatenate(preds, 0) if preds else np.zeros((0, 6), np.float32)
    tp = np.concatenate(tps, 0) if tps else np.zeros((0, len(IOU_THRESHOLDS)), bool)
    ap = np.zeros((nc, len(IOU_THRESHOLDS)))
    for c in range(nc):
        sel = pred[:, 5] == c
        if n_gt[c] == 0 or not sel.any():
            continue  # no ground truth: not counted; no predictions: AP 0
        order = np.argsort(-pred[sel, 4], kind="stable")
        t = tp[sel][order]
        ctp = np.cumsum(t, 0)
        cfp = np.cumsum(~t, 0)
        for k in range(len(IOU_THRESHOLDS)):
            rec = ctp[:, k] / n_gt[c]
            prec = ctp[:, k] / np.maximum(ctp[:, k] + cfp[:, k], 1)
            ap[c, k] = average_precision(rec, prec)
    return ap


def detect_frames(be: Backend, card: ModelCard, frames: list[RenderedFrame], width: int, height: int) -> list[np.ndarray]:
    """Run one batch of rendered frames through the runtime path; ``(N, 6)`` detections per frame in frame pixels."""
    box = Letterbox.fit(width, height, card.input_width, card.input_height)
    items = [BatchItem(f.image, "Mono8" if f.image.ndim == 2 else "BGR8", box) for f in frames]
    out = be.infer(items)
    return [to_frame_pixels(nms(decode_yolo(r, 0.001), 0.6), box, None, width, height) for r in out.raw]


def evaluate(
    model: str | Path,
    *,
    count: int = 1000,
    backend: str = "openvino",
    width: int = 320,
    height: int = 320,
    threshold: float | None = None,
    class_thresholds: Mapping[str, float] | None = None,
    batch: int = 8,
    seed_base: int = HELD_OUT_SEED_BASE,
    ok_share: float = DEFAULT_OK_SHARE,
    precision: str = "auto",
) -> dict[str, Any]:
    """Evaluate a model from the repository on ``count`` held-out frames.

    Returns:
        mAP50, mAP50_95, per-class AP50, escape and false-reject rates per frame at the card's rules
        (`card_rules`: ``threshold`` and ``class_thresholds`` replace the card's), latency per image
        (preprocess + inference + postprocess) and the seeds used.
    """
    card = load_card(model)
    rules = card_rules(card, threshold, class_thresholds)
    limits = class_limits(rules, card.classes)
    be = create_backend(backend, card, max_batch=batch, precision=precision)
    names = card.classes
    nc = len(names)
    all_pred: list[np.ndarray] = []
    all_tp: list[np.ndarray] = []
    n_gt = np.zeros(nc, int)
    defective = ok = escapes = false_rejects = 0
    busy = 0.0
    frame_max: list[tuple[float, bool]] = []  # best score per frame, defective or not
    for start in range(0, count, batch):
        frames = [
            render_part(seed_base + i, width, height, mono=(i % 4 == 3), ok_share=ok_share)
            for i in range(start, min(count, start + batch))
        ]
        t0 = time.perf_counter()
        dets = detect_frames(be, card, frames, width, height)
        busy += time.perf_counter() - t0
        for f, d in zip(frames, dets):
            gt = np.array([[b.class_id, b.x1, b.y1, b.x2, b.y2] for b in f.truth.boxes], np.float32).reshape(-1, 5)
            for c in gt[:, 0].astype(int):
                n_gt[c] += 1
            all_pred.append(d)
            all_tp.append(match_at_thresholds(d, gt))
            ng = judged_ng(d, limits)
            frame_max.append((float(d[:, 4].max()) if len(d) else 0.0, f.truth.defective))
            if f.truth.defective:
                defective += 1
                escapes += int(not ng)
            else:
                ok += 1
                false_rejects += int(ng)
    be.close()
    ap = ap_table(all_pred, all_tp, n_gt)
    present = n_gt > 0
    sweep = threshold_sweep(frame_max)
    return {
        "model": card.name,
        "sha256": card.sha256,
        "backend": backend,
        "precision": precision,
        "frames": count,
        "frame_size": [width, height],
        "seeds": [seed_base, seed_base + count - 1],
        "ok_share": ok_share,
        "threshold": rules.default_threshold,
        "class_thresholds": dict(rules.class_thresholds),
        "mAP50": float(ap[present, 0].mean()) if present.any() else 0.0,
        "mAP50_95": float(ap[present].mean()) if present.any() else 0.0,
        "per_class_AP50": {names[c]: float(ap[c, 0]) for c in range(nc)},
        "per_class_instances": {names[c]: int(n_gt[c]) for c in range(nc)},
        "defective_parts": defective,
        "ok_parts": ok,
        "escapes": escapes,
        "false_rejects": false_rejects,
        "escape_rate": escapes / defective if defective else 0.0,
        "false_reject_rate": false_rejects / ok if ok else 0.0,
        "latency_ms_per_image": busy / count * 1e3,
        "threshold_sweep": sweep,
    }


def threshold_sweep(frame_max: list[tuple[float, bool]]) -> list[dict[str, float]]:
    """Escape and false-reject rates for a range of verdict thresholds (one score per frame)."""
    scores = np.array([s for s, _ in frame_max])
    defective = np.array([d for _, d in frame_max], bool)
    out = []
    for t in np.round(np.arange(0.05, 0.91, 0.05), 2):
        ng = scores >= t
        out.append(
            {
                "threshold": float(t),
                "escape_rate": float((~ng & defective).sum() / max(1, defective.sum())),
                "false_reject_rate": float((ng & ~defective).sum() / max(1, (~defective).sum())),
            }
        )
    return out


def update_card_metrics(model: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write evaluation metrics into the model's card (keeps the other fields, and the class thresholds the
    metrics were taken at: the card's own).

    Raises:
        ModelError: The metrics were taken at other class thresholds than the card's.
    """
    import tomllib

    folder = resolve_model_dir(model)
    path = folder / "card.toml"
    data = tomllib.loads(path.read_text())
    old = data.get("metrics", {})
    calibration = {k: old[k] for k in ("class_thresholds", "class_threshold_calibration") if k in old}
    if dict(metrics.get("class_thresholds", {})) != dict(calibration.get("class_thresholds", {})):
        raise ModelError(f"model: {path}: the metrics were taken at class thresholds "
                         f"{dict(metrics.get('class_thresholds', {}))}, not the card's; evaluate at the card's rules")
    data["metrics"] = {
        "mAP50": round(metrics["mAP50"], 4),
        "mAP50_95": round(metrics["mAP50_95"], 4),
        "escape_rate": round(metrics["escape_rate"], 5),
        "false_reject_rate": round(metrics["false_reject_rate"], 5),
        "threshold": metrics["threshold"],
        "latency_ms_per_image": round(metrics["latency_ms_per_image"], 3),
        "backend": metrics["backend"],
        "eval_frames": metrics["frames"],
        "eval_seeds": metrics["seeds"],
        "per_class_AP50": {k: round(v, 4) for k, v in metrics["per_class_AP50"].items()},
        **calibration,
    }
    data["sha256"] = sha256_file(folder / data["file"])
    path.write_text(dump_toml(data))
    return path
