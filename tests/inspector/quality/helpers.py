"""Small labelled datasets the quality tests make: rendered parts written as YOLO and as COCO."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from camera.renderer import DEFECT_CLASSES, RenderedFrame, render_part

#: Seeds whose renders the tests use: a mix of defect-free and defective parts.
SEEDS = tuple(range(1_100_000, 1_100_008))


def rendered(seeds: tuple[int, ...] = SEEDS, size: int = 320) -> list[RenderedFrame]:
    """The parts at ``seeds``, rendered at ``size`` x ``size`` (BGR)."""
    return [render_part(s, size, size, ok_share=0.4) for s in seeds]


def image_name(i: int, frame: RenderedFrame, parts: int = 0) -> str:
    """``P0001__cam0.png`` when ``parts`` groups images into parts, else ``img0003.png``."""
    return f"P{i // parts:04d}__cam{i % parts}.png" if parts else f"img{i:04d}.png"


def write_yolo_source(root: Path, frames: list[RenderedFrame], parts: int = 0) -> Path:
    """An Ultralytics-style export: images/, labels/ and classes.txt (as Label Studio writes it)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("".join(f"{n}\n" for n in DEFECT_CLASSES))
    for i, f in enumerate(frames):
        name = image_name(i, f, parts)
        cv2.imwrite(str(root / "images" / name), f.image)
        lines = [f"{b.class_id} {(b.x1 + b.x2) / 640:.6f} {(b.y1 + b.y2) / 640:.6f} {(b.x2 - b.x1) / 320:.6f} "
                 f"{(b.y2 - b.y1) / 320:.6f}" for b in f.truth.boxes]
        (root / "labels" / name).with_suffix(".txt").write_text("".join(f"{line}\n" for line in lines))
    return root


def coco_document(frames: list[RenderedFrame], parts: int = 0, names: tuple[str, ...] = DEFECT_CLASSES) -> dict:
    """A COCO file as CVAT exports it (category ids from 1, bbox [x, y, w, h] in pixels)."""
    images, annotations = [], []
    for i, f in enumerate(frames):
        images.append({"id": i + 1, "file_name": image_name(i, f, parts), "width": 320, "height": 320})
        for b in f.truth.boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": b.class_id + 1,
                                "bbox": [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1], "area": b.area, "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(names)]}


def write_coco_source(root: Path, frames: list[RenderedFrame], parts: int = 0, doc: dict | None = None) -> Path:
    """CVAT's layout: annotations/instances_default.json and images/."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(root / "images" / image_name(i, f, parts)), f.image)
    (root / "annotations" / "instances_default.json").write_text(json.dumps(doc or coco_document(frames, parts), indent=1))
    return root
