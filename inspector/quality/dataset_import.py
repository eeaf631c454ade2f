"""Bring your own labels: a YOLO or COCO dataset imported into the station's dataset format.

The result is what ``inspector dataset synth`` writes (Ultralytics YOLO layout), with a
third split::

    data.yaml                 # path, train, val, test, names (the target classes)
    images/{train,val,test}/  labels/{train,val,test}/
    parts.csv                 # image,part: which part every image shows (eval reports per part)
    dataset.json              # the summary: images per split, boxes per class, image sizes

Classes map by name (case and surrounding blanks ignored) onto the target classes, the
model's or ``--classes``; a box of a class the target lacks is refused. The split is drawn
per part, so every image of one part lands in the same split: the parts are shuffled by the
seed, then filled into train, val and test by their share of images.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.quality.data_yaml import SPLITS, DatasetError, write_data_yaml
from inspector.quality.labels import LabelledImage, read_coco, read_yolo

FORMATS = ("yolo", "coco")


@dataclass(frozen=True)
class ImportSummary:
    """What `import_dataset` wrote: counts per split and class, the image sizes seen."""

    root: Path
    source: str
    format: str
    images: dict[str, int]
    parts: dict[str, int]
    boxes_per_class: dict[str, int]
    image_sizes: dict[str, int]
    seed: int
    split: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (what ``dataset.json`` holds)."""
        return {
            "generator": f"import {self.format}",
            "source": self.source,
            "images": self.images,
            "parts": self.parts,
            "boxes_per_class": self.boxes_per_class,
            "boxes": sum(self.boxes_per_class.values()),
            "image_sizes": self.image_sizes,
            "seed": self.seed,
            "split": list(self.split),
            "train_images": self.images.get("train", 0),
            "val_images": self.images.get("val", 0),
            "classes": list(self.boxes_per_class),
        }


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` as train, val, test shares.

    Raises:
        DatasetError: Not three numbers >= 0 that add up to 1.
    """
    try:
        shares = tuple(float(x) for x in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
        raise DatasetError(f"--split {text!r}: expected three shares TRAIN,VAL,TEST that add up to 1, e.g. 0.8,0.1,0.1")
    return shares[0], shares[1], shares[2]


def class_mapping(used: Sequence[str], target: Sequence[str], source: Path) -> dict[str, int]:
    """Each source class name used by a box -> its id among ``target`` (matched ignoring case and blanks).

    Raises:
        DatasetError: A used name that ``target`` lacks (one line, listing the target classes).
    """
    index = {t.strip().lower(): i for i, t in enumerate(target)}
    out = {}
    for name in used:
        key = name.strip().lower()
        if key not in index:
            raise DatasetError(f"{source}: class {name!r} is not one of the target classes ({', '.join(target)}); "
                               "rename it in the labels or name the classes with --classes")
        out[name] = index[key]
    return out


def assign_splits(images: Sequence[LabelledImage], shares: tuple[float, float, float], seed: int) -> list[str]:
    """The split of every image: parts shuffled by ``seed``, each part's images kept together."""
    parts = sorted({im.part_id for im in images})
    size = Counter(im.part_id for im in images)
    order = [parts[i] for i in np.random.default_rng(seed).permutation(len(parts))]
    total = len(images)
    bounds = (shares[0] * total, (shares[0] + shares[1]) * total)
    split_of: dict[str, str] = {}
    filled = 0
    for part in order:
        # a part goes where the middle of its images falls, so shares hold for parts of any size
        mid = filled + size[part] / 2
        split_of[part] = "train" if mid <= bounds[0] else "val" if mid <= bounds[1] else "test"
        filled += size[part]
    return [split_of[im.part_id] for im in images]


def import_dataset(
    fmt: str,
    src: Path,
    out: Path,
    classes: Sequence[str],
    *,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> ImportSummary:
    """Read a YOLO or COCO dataset and write it as a station dataset under ``out``.

    Args:
        fmt: ``yolo`` or ``coco``.
        src: The source file or folder (see `inspector.quality.labels`).
        out: The dataset folder to write (must be empty or new).
        classes: The target classes in order (the model's, or the user's ``--classes``).
        split: Train, val and test shares of the images.
        seed: Draws the split (the same seed gives the same split).

    Raises:
        DatasetError: A broken label file, an unknown class, a non-empty ``out`` (one line each).
    """
    if fmt not in FORMATS:
        raise DatasetError(f"--format {fmt!r}: choose yolo or coco")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"--out {out}: exists and is not an empty folder (an import never mixes into a dataset)")
    images = read_yolo(Path(src), tuple(classes)) if fmt == "yolo" else read_coco(Path(src))
    mapping = class_mapping(sorted({b.class_name for im in images for b in im.boxes}), classes, Path(src))
    splits = assign_splits(images, split, seed)
    for s in SPLITS:
        (out / "images" / s).mkdir(parents=True, exist_ok=True)
        (out / "labels" / s).mkdir(parents=True, exist_ok=True)
    per_class: Counter[str] = Counter({c: 0 for c in classes})
    taken: set[str] = set()
    rows = []
    for im, s in zip(images, splits):
        name = _unique_name(im.path, taken)
        shutil.copyfile(im.path, out / "images" / s / name)
        lines = []
        for b in im.boxes:
            x1, x2 = (min(max(v, 0.0), im.width) for v in (b.x1, b.x2))
            y1, y2 = (min(max(v, 0.0), im.height) for v in (b.y1, b.y2))
            if x2 <= x1 or y2 <= y1:
                raise DatasetError(f"{im.path}: a {b.class_name} box lies outside the image ({im.width} x {im.height})")
            lines.append(f"{mapping[b.class_name]} {(x1 + x2) / 2 / im.width:.6f} {(y1 + y2) / 2 / im.height:.6f} "
                         f"{(x2 - x1) / im.width:.6f} {(y2 - y1) / im.height:.6f}")
            per_class[classes[mapping[b.class_name]]] += 1
        (out / "labels" / s / name).with_suffix(".txt").write_text("".join(f"{line}\n" for line in lines))
        rows.append((f"images/{s}/{name}", im.part_id))
    with open(out / "parts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "part"])
        w.writerows(rows)
    write_data_yaml(out, tuple(classes), {s: f"images/{s}" for s in SPLITS})
    summary = ImportSummary(
        root=out,
        source=str(src),
        format=fmt,
        images={s: splits.count(s) for s in SPLITS},
        parts={s: len({im.part_id for im, t in zip(images, splits) if t == s}) for s in SPLITS},
        boxes_per_class=dict(per_class),
        image_sizes=dict(sorted(Counter(f"{im.width}x{im.height}" for im in images).items())),
        seed=seed,
        split=split,
    )
    (out / "dataset.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


def _unique_name(path: Path, taken: set[str]) -> str:
    """The image's file name, with ``-2``, ``-3``... before the suffix where another image had it."""
    name, n = path.name, 1
    while name.lower() in taken:
        n += 1
        name = f"{path.stem}-{n}{path.suffix}"
    taken.add(name.lower())
    return name
