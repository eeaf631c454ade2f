"""Dataset export in Ultralytics YOLO format from the synthetic line.

Layout written under ``out``::

    data.yaml                 # path, train, val, names
    images/train/000123.png   labels/train/000123.txt
    images/val/...            labels/val/...

Training seeds are ``seed .. seed+count-1``; the validation split takes the last
``val_fraction`` of them. Evaluation uses `HELD_OUT_SEED_BASE` and up, which no
training run ever sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2

from camera.renderer import DEFECT_CLASSES, GroundTruth, RenderedFrame, render_part

#: Seeds from here on are reserved for evaluation (never in a training set).
HELD_OUT_SEED_BASE = 1_000_000
#: Seeds from here on are used by the simulated cameras of the demo stations.
STATION_SEED_BASE = 2_000_000


@dataclass(frozen=True)
class DatasetSummary:
    """What `export_dataset` wrote."""

    root: Path
    train_images: int
    val_images: int
    boxes: int
    seed_range: tuple[int, int]


def yolo_label_lines(truth: GroundTruth, width: int, height: int) -> list[str]:
    """Ground truth as YOLO label lines: ``class cx cy w h`` normalised to 0..1."""
    lines = []
    for b in truth.boxes:
        cx = (b.x1 + b.x2) / 2 / width
        cy = (b.y1 + b.y2) / 2 / height
        w = (b.x2 - b.x1) / width
        h = (b.y2 - b.y1) / height
        lines.append(f"{b.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def make_split_dirs(out: Path) -> None:
    """``images/{train,val}`` and ``labels/{train,val}`` under ``out``."""
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)


def is_mono(seed: int, mono_share: float) -> bool:
    """Whether a dataset renders ``seed`` as a Mono8 frame (every ``1/mono_share``-th seed)."""
    every = round(1 / mono_share) if mono_share > 0 else 0
    return every > 0 and seed % every == every - 1


def write_sample(out: Path, split: str, frame: RenderedFrame, image_format: str = "png") -> int:
    """Write one frame (Mono8 as 3-channel grey) and its label file; return its box count."""
    img = frame.image if frame.image.ndim == 3 else cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    name = f"{frame.truth.seed:07d}"
    cv2.imwrite(str(out / "images" / split / f"{name}.{image_format}"), img)
    lines = yolo_label_lines(frame.truth, w, h)
    (out / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def write_data_yaml(out: Path, train: str | list[str], val: str) -> Path:
    """Ultralytics ``data.yaml``: ``train`` may list several image folders (absolute or under ``out``)."""
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(DEFECT_CLASSES))
    train_s = train if isinstance(train, str) else "[" + ", ".join(train) + "]"
    path = out / "data.yaml"
    path.write_text(f"path: {out.resolve()}\ntrain: {train_s}\nval: {val}\nnames:\n{names}\n")
    return path


def export_dataset(
    out: Path,
    count: int,
    seed: int = 0,
    *,
    width: int = 320,
    height: int = 320,
    val_fraction: float = 0.1,
    mono_share: float = 0.25,
    ok_share: float = 0.35,
    image_format: str = "png",
) -> DatasetSummary:
    """Render ``count`` frames and write them as a YOLO dataset.

    Args:
        out: Output folder (created).
        count: Number of frames.
        seed: First seed; frames use ``seed .. seed+count-1``.
        width: Frame width.
        height: Frame height.
        val_fraction: Share of frames in the validation split.
        mono_share: Share of frames rendered as Mono8 (saved as 3-channel grey).
        ok_share: Share of defect-free frames. Lower than the line's own share so
            that each image teaches more defects; the OK frames keep false calls down.
        image_format: ``png`` or ``jpg``.

    Raises:
        ValueError: On a count below 1 or seeds that reach into the held-out range.
    """
    if count < 1:
        raise ValueError("count: must be at least 1")
    if seed < 0 or seed + count > HELD_OUT_SEED_BASE:
        raise ValueError(f"seed: training seeds must lie in 0..{HELD_OUT_SEED_BASE - 1} (held-out range above)")
    if image_format not in ("png", "jpg"):
        raise ValueError("image_format: must be png or jpg")
    out = Path(out)
    n_val = max(1, round(count * val_fraction)) if count > 1 else 0
    n_train = count - n_val
    boxes = 0
    make_split_dirs(out)
    for i in range(count):
        s = seed + i
        frame = render_part(s, width, height, mono=is_mono(s, mono_share), ok_share=ok_share)
        boxes += write_sample(out, "train" if i < n_train else "val", frame, image_format)
    write_data_yaml(out, "images/train", "images/val")
    summary = DatasetSummary(out, n_train, n_val, boxes, (seed, seed + count - 1))
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "generator": "camera.renderer",
                "seed_first": seed,
                "seed_last": seed + count - 1,
                "width": width,
                "height": height,
                "train_images": n_train,
                "val_images": n_val,
                "boxes": boxes,
                "classes": list(DEFECT_CLASSES),
            },
            indent=2,
        )
    )
    return summary
