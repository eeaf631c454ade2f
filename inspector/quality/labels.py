"""Labels made elsewhere, read into one typed form: YOLO (Ultralytics txt) and COCO JSON.

Both readers return `LabelledImage` rows (boxes in pixels, class by name, the part id where
the source carries one) and refuse a broken label file with one line naming the file and
the line (YOLO) or the entry (COCO: ``annotations[3] (id 17)``; JSON syntax errors by line).

Where a source comes from:

* YOLO: a ``data.yaml`` (its splits' images; names from it), or a folder with ``images/`` and
  ``labels/`` (any depth, Ultralytics' ``images`` -> ``labels`` rule; names from
  ``classes.txt`` (Label Studio) or ``obj.names`` (CVAT) beside them, else the target
  classes in order). An image without a label file is a defect-free image, as in Ultralytics.
* COCO: a ``.json`` file, or a folder holding one (CVAT: ``annotations/instances_default.json``;
  Label Studio: ``result.json``). Images are looked up beside the file, in ``images/`` beside it,
  and in ``images/`` one folder up.

Part ids: a COCO image's ``part_id`` field, else the file name: the text before the first
``__`` of its stem (``P0042__cam3.png`` is part ``P0042``); a file without ``__`` is a part of its own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from inspector.quality.data_yaml import IMAGE_SUFFIXES, SPLITS, DatasetError, label_path, read_data_yaml

#: Separates the part id from the rest of an image's file name (``P0042__cam3.png``).
PART_SEPARATOR = "__"


@dataclass(frozen=True)
class LabelBox:
    """One labelled defect: its class name and xyxy box in image pixels."""

    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class LabelledImage:
    """An image file with its boxes (none: a defect-free image) and the part it shows."""

    path: Path
    width: int
    height: int
    boxes: tuple[LabelBox, ...]
    part_id: str


def part_from_name(path: Path) -> str:
    """The part id a file name carries (text before ``__``), else the stem itself."""
    stem = Path(path).stem
    head, sep, _rest = stem.partition(PART_SEPARATOR)
    return head if sep and head else stem


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file.

    Raises:
        DatasetError: The file cannot be read as an image.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: not an image OpenCV can read")
    return int(img.shape[1]), int(img.shape[0])


# ------------------------------------------------------------------------------------------ YOLO
def read_yolo(src: Path, default_names: tuple[str, ...]) -> list[LabelledImage]:
    """Read a YOLO dataset (a ``data.yaml``, a folder with one, or a folder with ``images/`` and ``labels/``).

    Args:
        src: The source.
        default_names: Class names by id where the source names none.

    Raises:
        DatasetError: One line naming the file (and line) that is broken.
    """
    src = Path(src)
    yaml = src if src.is_file() and src.suffix in (".yaml", ".yml") else src / "data.yaml"
    if yaml.is_file():
        data = read_data_yaml(yaml)
        names = data.names
        images = [img for split in SPLITS if split in data.splits for img in data.images(split)]
    elif src.is_dir() and (src / "images").is_dir():
        names = _names_file(src) or default_names
        images = sorted(f for f in (src / "images").rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    else:
        raise DatasetError(f"{src}: not a YOLO dataset (no data.yaml, no images/ folder)")
    if not images:
        raise DatasetError(f"{src}: holds no images")
    seen: set[Path] = set()
    out = []
    for img in images:
        if img.resolve() in seen:
            continue
        seen.add(img.resolve())
        if not img.is_file():
            raise DatasetError(f"{img}: image not found")
        w, h = image_size(img)
        boxes = read_yolo_labels(label_path(img), names, w, h)
        out.append(LabelledImage(img, w, h, boxes, part_from_name(img)))
    return out


def _names_file(src: Path) -> tuple[str, ...]:
    for name in ("classes.txt", "obj.names"):
        for folder in (src, src / "labels"):
            f = folder / name
            if f.is_file():
                return tuple(line.strip() for line in f.read_text().splitlines() if line.strip())
    return ()


def read_yolo_labels(path: Path, names: tuple[str, ...], width: int, height: int) -> tuple[LabelBox, ...]:
    """The boxes of one YOLO label file (``class cx cy w h``, normalised); a missing file: none.

    Raises:
        DatasetError: ``FILE:LINE: what is wrong`` for a line with other than 5 fields, a class id
            out of range, or a coordinate that is not a number in 0..1 (or a zero width or height).
    """
    if not path.is_file():
        return ()
    boxes = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetError(f"{path}:{no}: expected 5 fields (class cx cy w h), got {len(fields)}")
        try:
            cls = int(fields[0])
        except ValueError:
            raise DatasetError(f"{path}:{no}: class {fields[0]!r} is not an integer") from None
        if not 0 <= cls < len(names):
            raise DatasetError(f"{path}:{no}: class {cls} is out of range (0..{len(names) - 1}: {', '.join(names)})")
        try:
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DatasetError(f"{path}:{no}: coordinates must be numbers, got {' '.join(fields[1:])!r}") from None
        for label, text, v in zip(("cx", "cy", "w", "h"), fields[1:], (cx, cy, w, h)):
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise DatasetError(f"{path}:{no}: {label} = {text} is outside 0..1 (YOLO coordinates are normalised)")
        if w <= 0 or h <= 0:
            raise DatasetError(f"{path}:{no}: the box has zero width or height")
        boxes.append(LabelBox(names[cls], max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height),
                              min(float(width), (cx + w / 2) * width), min(float(height), (cy + h / 2) * height)))
    return tuple(boxes)


# ------------------------------------------------------------------------------------------ COCO
def read_coco(src: Path) -> list[LabelledImage]:
    """Read a COCO detection file (``images``, ``annotations`` with ``bbox`` ``[x, y, w, h]`` in pixels, ``categories``).

    Raises:
        DatasetError: One line naming the file and the entry (or line, for a JSON syntax error).
    """
    path = _coco_file(Path(src))
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: expected a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DatasetError(f"{path}: {key}: missing or not a list")
    categories = {}
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise DatasetError(f"{path}: categories[{i}]: needs an id and a name")
        categories[c["id"]] = c["name"]
    images: dict[Any, dict[str, Any]] = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{path}: images[{i}]: needs an id and a file_name")
        images[im["id"]] = im
    boxes: dict[Any, list[LabelBox]] = {k: [] for k in images}
    for i, a in enumerate(doc["annotations"]):
        boxes[_coco_image_of(path, i, a, images)].append(_coco_box(path, i, a, categories))
    out = []
    for image_id, im in images.items():
        file = _find_image(path, im["file_name"])
        w, h = image_size(file)
        part = im.get("part_id")
        out.append(LabelledImage(file, w, h, tuple(boxes[image_id]),
                                 str(part) if part not in (None, "") else part_from_name(file)))
    if not out:
        raise DatasetError(f"{path}: holds no images")
    return out


def _coco_file(src: Path) -> Path:
    if src.is_file():
        return src
    for candidate in (src / "annotations" / "instances_default.json", src / "result.json"):
        if candidate.is_file():
            return candidate
    found = sorted(src.glob("*.json")) + sorted(src.glob("annotations/*.json")) if src.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"{src}: no COCO .json file found")
    raise DatasetError(f"{src}: several .json files ({', '.join(f.name for f in found)}): name the one to import")


def _where(i: int, a: object) -> str:
    return f"annotations[{i}]" + (f" (id {a['id']})" if isinstance(a, dict) and "id" in a else "")


def _coco_image_of(path: Path, i: int, a: Any, images: dict[Any, dict[str, Any]]) -> Any:
    if not isinstance(a, dict):
        raise DatasetError(f"{path}: {_where(i, a)}: not an object")
    if a.get("image_id") not in images:
        raise DatasetError(f"{path}: {_where(i, a)}: image_id {a.get('image_id')!r} is not in images")
    return a["image_id"]


def _coco_box(path: Path, i: int, a: dict[str, Any], categories: dict[Any, str]) -> LabelBox:
    if a.get("category_id") not in categories:
        raise DatasetError(f"{path}: {_where(i, a)}: category_id {a.get('category_id')!r} is not in categories")
    bbox = a.get("bbox")
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise DatasetError(f"{path}: {_where(i, a)}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise DatasetError(f"{path}: {_where(i, a)}: bbox width and height must be positive, got {w:g} x {h:g}")
    if x < 0 or y < 0:
        raise DatasetError(f"{path}: {_where(i, a)}: bbox starts outside the image at ({x:g}, {y:g})")
    return LabelBox(categories[a["category_id"]], x, y, x + w, y + h)


def _find_image(coco: Path, file_name: str) -> Path:
    name = Path(file_name)
    if name.is_absolute() or ".." in name.parts:
        raise DatasetError(f"{coco}: image file_name {file_name!r} must be a relative path inside the dataset")
    for base in (coco.parent, coco.parent / "images", coco.parent.parent / "images", coco.parent.parent):
        for candidate in (base / name, base / name.name):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"{coco}: image {file_name!r} not found beside it or in images/")
