"""Evaluate a model on one's own labelled images, through the runtime path.

Each image of a dataset split (``data.yaml``, Ultralytics layout) is letterboxed, inferred,
decoded, NMS'd and mapped back to image pixels as the station does (`evaluation.detect_frames`'s
steps, one letterbox per image since sizes may differ), and judged by the station's
`VerdictRules` at the card's rules (its threshold and class thresholds, `evaluation.card_rules`). Reported:

* mAP50, mAP50-95 and AP50 per class (COCO / Ultralytics 101-point rule, `evaluation.ap_table`);
* escapes and false rejects per image: an image is NG when it has a labelled box; an escape is
  an NG image judged OK, a false reject an OK image judged NG; the images of each, by name;
* a threshold sweep (one threshold for every class, on each image's best score);
* the same per part where the data names parts: ``parts.csv`` beside ``data.yaml`` (columns
  ``image,part``, image paths relative to that folder; `inspector dataset import` writes it),
  else the file names, where they carry a part id (``P0042__cam3.png``: text before ``__``).
  A part is NG when any of its images is; it is judged NG when any of its images is.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.pipeline.backends import Backend, BatchItem, create_backend
from inspector.pipeline.model_repo import ModelCard, load_card
from inspector.pipeline.postprocess import decode_yolo, nms, to_frame_pixels
from inspector.pipeline.preprocess import Letterbox
from inspector.pipeline.results import detections_from_array
from inspector.quality.data_yaml import DatasetError, DataYaml, label_path, read_data_yaml
from inspector.quality.evaluation import IOU_THRESHOLDS, ap_table, card_rules, match_at_thresholds, threshold_sweep
from inspector.quality.labels import PART_SEPARATOR, part_from_name, read_yolo_labels

#: What the station decodes at for evaluation: every candidate counts towards AP (as Ultralytics val)
EVAL_CONF = 0.001
EVAL_NMS_IOU = 0.6


def load_image(path: Path) -> tuple[np.ndarray, str]:
    """An image file as the station's cameras deliver it: Mono8 (2-D) or BGR8.

    Raises:
        DatasetError: Unreadable, or not 8 bits per channel.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: not an image OpenCV can read")
    if img.dtype != np.uint8:
        raise DatasetError(f"{path}: {img.dtype} pixels; the station inspects 8-bit images (Mono8, BGR8)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img), "Mono8" if img.ndim == 2 else "BGR8"


def part_ids(data: DataYaml, images: Sequence[Path]) -> list[str] | None:
    """Each image's part from ``parts.csv`` beside the data.yaml, else from its file name; None where neither names parts.

    Raises:
        DatasetError: ``parts.csv`` lacks the image or part column, or an image of the split.
    """
    csv_path = data.file.parent / "parts.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"image", "part"} <= set(reader.fieldnames or ()):
                raise DatasetError(f"{csv_path}: needs the columns image and part")
            by_image = {(data.file.parent / row["image"]).resolve(): row["part"] for row in reader}
        out = []
        for img in images:
            part = by_image.get(img.resolve())
            if part is None:
                raise DatasetError(f"{csv_path}: has no row for {img}")
            out.append(part)
        return out
    if any(PART_SEPARATOR in img.stem for img in images):
        return [part_from_name(img) for img in images]
    return None


def _class_map(data: DataYaml, card: ModelCard) -> dict[int, int]:
    """Dataset class id -> model class id, by name; -1 where the model lacks the class (refused when used)."""
    index = {c.strip().lower(): i for i, c in enumerate(card.classes)}
    return {i: index.get(n.strip().lower(), -1) for i, n in enumerate(data.names)}


def _truth(path: Path, data: DataYaml, card: ModelCard, mapping: dict[int, int], w: int, h: int) -> np.ndarray:
    """``(M, 5)`` ``class x1 y1 x2 y2`` in image pixels, classes as the model numbers them."""
    rows = []
    for b in read_yolo_labels(label_path(path), data.names, w, h):
        cls = mapping[data.names.index(b.class_name)]
        if cls < 0:
            raise DatasetError(f"{label_path(path)}: class {b.class_name!r} is not a class of the model "
                               f"{card.name} ({', '.join(card.classes)})")
        rows.append([cls, b.x1, b.y1, b.x2, b.y2])
    return np.array(rows, np.float32).reshape(-1, 5)


def detect_images(be: Backend, card: ModelCard, images: Sequence[tuple[np.ndarray, str]]) -> list[np.ndarray]:
    """One batch of images (any sizes) through the runtime path; ``(N, 6)`` detections per image in its pixels."""
    boxes = [Letterbox.fit(img.shape[1], img.shape[0], card.input_width, card.input_height) for img, _ in images]
    out = be.infer([BatchItem(img, fmt, box) for (img, fmt), box in zip(images, boxes)])
    return [to_frame_pixels(nms(decode_yolo(r, EVAL_CONF), EVAL_NMS_IOU), box, None, img.shape[1], img.shape[0])
            for r, box, (img, _) in zip(out.raw, boxes, images)]


def evaluate_on_data(
    card: ModelCard,
    be: Backend,
    data_yaml: Path,
    *,
    split: str = "test",
    threshold: float | None = None,
    class_thresholds: Mapping[str, float] | None = None,
    batch: int = 8,
) -> dict[str, Any]:
    """Evaluate with an open backend on the images of ``split`` (see the module docstring for what is reported),
    judged at the card's rules, ``threshold`` and ``class_thresholds`` replacing the card's (`card_rules`).

    Raises:
        DatasetError: The data.yaml, a label file, an image or parts.csv is broken, or the split is empty.
    """
    data = read_data_yaml(data_yaml)
    paths = data.images(split)
    if not paths:
        raise DatasetError(f"{data.file}: the {split} split holds no images")
    parts = part_ids(data, paths)
    mapping = _class_map(data, card)
    rules = card_rules(card, threshold, class_thresholds)
    nc = len(card.classes)
    n_gt = np.zeros(nc, int)
    preds: list[np.ndarray] = []
    tps: list[np.ndarray] = []
    truth_ng: list[bool] = []
    judged_ng: list[bool] = []
    best: list[float] = []
    busy = 0.0
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        images = [load_image(p) for p in chunk]
        t0 = time.perf_counter()
        dets = detect_images(be, card, images)
        busy += time.perf_counter() - t0
        for p, (img, _fmt), d in zip(chunk, images, dets):
            gt = _truth(p, data, card, mapping, img.shape[1], img.shape[0])
            np.add.at(n_gt, gt[:, 0].astype(int), 1)
            preds.append(d)
            tps.append(match_at_thresholds(d, gt))
            truth_ng.append(len(gt) > 0)
            judged_ng.append(rules.decide(detections_from_array(d, card.classes))[0].value == "NG")
            best.append(float(d[:, 4].max()) if len(d) else 0.0)
    ap = ap_table(preds, tps, n_gt)
    present = n_gt > 0
    names = [str(p.relative_to(data.file.parent)) if p.is_relative_to(data.file.parent) else str(p) for p in paths]
    out: dict[str, Any] = {
        "model": card.name,
        "sha256": card.sha256,
        "data": str(data.file),
        "split": split,
        "threshold": rules.default_threshold,
        "class_thresholds": dict(rules.class_thresholds),
        "images": len(paths),
        "mAP50": float(ap[present, 0].mean()) if present.any() else 0.0,
        "mAP50_95": float(ap[present].mean()) if present.any() else 0.0,
        "per_class_AP50": {card.classes[c]: float(ap[c, 0]) for c in range(nc) if present[c]},
        "per_class_AP50_95": {card.classes[c]: float(ap[c].mean()) for c in range(nc) if present[c]},
        "per_class_instances": {card.classes[c]: int(n_gt[c]) for c in range(nc)},
        "iou_thresholds": [round(float(t), 2) for t in IOU_THRESHOLDS],
        **_rates("", truth_ng, judged_ng, names),
        "latency_ms_per_image": busy / len(paths) * 1e3,
        "threshold_sweep": threshold_sweep(list(zip(best, truth_ng))),
    }
    if parts is not None:
        out.update(_per_part(parts, truth_ng, judged_ng, best))
    return out


def _rates(prefix: str, truth: Sequence[bool], judged: Sequence[bool], names: Sequence[str]) -> dict[str, Any]:
    t = np.array(truth, bool)
    j = np.array(judged, bool)
    unit = prefix.rstrip("_") or "image"
    escaped = [n for n, a, b in zip(names, t, j) if a and not b]
    rejected = [n for n, a, b in zip(names, t, j) if b and not a]
    return {
        f"defective_{unit}s": int(t.sum()),
        f"ok_{unit}s": int((~t).sum()),
        f"{prefix}escapes": len(escaped),
        f"{prefix}false_rejects": len(rejected),
        f"{prefix}escape_rate": len(escaped) / max(1, int(t.sum())),
        f"{prefix}false_reject_rate": len(rejected) / max(1, int((~t).sum())),
        f"escaped_{unit}s": escaped,
        f"false_rejected_{unit}s": rejected,
    }


def _per_part(parts: Sequence[str], truth: Sequence[bool], judged: Sequence[bool], best: Sequence[float]) -> dict[str, Any]:
    order = sorted(set(parts))
    t = {p: False for p in order}
    j = {p: False for p in order}
    b = {p: 0.0 for p in order}
    for p, a, c, s in zip(parts, truth, judged, best):
        t[p] |= a
        j[p] |= c
        b[p] = max(b[p], s)
    out = _rates("part_", [t[p] for p in order], [j[p] for p in order], order)
    out["parts"] = len(order)
    out["part_threshold_sweep"] = [
        {"threshold": r["threshold"], "part_escape_rate": r["escape_rate"], "part_false_reject_rate": r["false_reject_rate"]}
        for r in threshold_sweep([(b[p], t[p]) for p in order])
    ]
    return out


def evaluate_dataset(
    model: str | Path,
    data_yaml: Path,
    *,
    split: str = "test",
    threshold: float | None = None,
    class_thresholds: Mapping[str, float] | None = None,
    backend: str = "openvino",
    precision: str = "auto",
    batch: int = 8,
) -> dict[str, Any]:
    """Load the model (sha256 checked), evaluate it on ``split`` of ``data_yaml`` and close it.

    Raises:
        ModelError, BackendUnavailable: The model cannot be loaded.
        DatasetError: See `evaluate_on_data`.
    """
    card = load_card(model, int8=precision == "int8")
    card_rules(card, threshold, class_thresholds)  # a class the model lacks is refused before it compiles
    read_data_yaml(data_yaml).images(split)  # a bad dataset is refused before the model compiles
    be = create_backend(backend, card, max_batch=batch, precision=precision)
    try:
        m = evaluate_on_data(card, be, data_yaml, split=split, threshold=threshold, class_thresholds=class_thresholds,
                             batch=batch)
    finally:
        be.close()
    m.update(backend=backend, precision=precision)
    return m
