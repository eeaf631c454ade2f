"""``inspector dataset import``: YOLO and COCO labels into a split station dataset, broken files refused in one line."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from camera.renderer import DEFECT_CLASSES
from inspector.cli import app
from inspector.quality.data_yaml import read_data_yaml
from tests.inspector.quality.helpers import coco_document, rendered, write_coco_source, write_yolo_source


def _run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, args)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def _labels(root: Path) -> dict[str, list[list[float]]]:
    """Every imported image's label rows, by image file name."""
    out = {}
    for f in sorted(root.glob("labels/*/*.txt")):
        out[f.stem] = [[float(v) for v in line.split()] for line in f.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def frames():  # type: ignore[no-untyped-def]
    return rendered()


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_import_writes_the_true_boxes_a_split_and_a_summary(tmp_path: Path, frames, fmt: str) -> None:  # type: ignore[no-untyped-def]
    src = (write_yolo_source if fmt == "yolo" else write_coco_source)(tmp_path / "src", frames)
    out = tmp_path / "ds"
    code, text = _run(["dataset", "import", "--format", fmt, str(src), "--out", str(out), "--split", "0.5,0.25,0.25",
                       "--json", str(tmp_path / "summary.json")])
    assert code == 0, text
    data = read_data_yaml(out / "data.yaml")
    assert data.names == DEFECT_CLASSES
    split_images = {s: data.images(s) for s in ("train", "val", "test")}
    assert [len(v) for v in split_images.values()] == [4, 2, 2]
    labels = _labels(out)
    for i, f in enumerate(frames):
        rows = labels[f"img{i:04d}"]
        truth = [[b.class_id, (b.x1 + b.x2) / 640, (b.y1 + b.y2) / 640, (b.x2 - b.x1) / 320, (b.y2 - b.y1) / 320]
                 for b in f.truth.boxes]
        assert np.allclose(np.array(rows).reshape(-1, 5), np.array(truth).reshape(-1, 5), atol=2e-6)
    per_class = Counter(DEFECT_CLASSES[b.class_id] for f in frames for b in f.truth.boxes)
    summary = json.loads((out / "dataset.json").read_text())
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["images"] == {"train": 4, "val": 2, "test": 2}
    assert summary["boxes_per_class"] == {c: per_class.get(c, 0) for c in DEFECT_CLASSES}
    assert summary["image_sizes"] == {"320x320": 8}
    assert f"boxes per class: {DEFECT_CLASSES[0]} {per_class.get(DEFECT_CLASSES[0], 0)}" in text


def test_the_split_is_drawn_by_seed_and_keeps_a_parts_images_together(tmp_path: Path, frames) -> None:  # type: ignore[no-untyped-def]
    src = write_coco_source(tmp_path / "src", frames, parts=2)  # 4 parts of 2 images each
    splits = []
    for seed in range(4):
        out = tmp_path / f"ds{seed}"
        code, text = _run(["dataset", "import", "--format", "coco", str(src), "--out", str(out), "--seed", str(seed)])
        assert code == 0, text
        with open(out / "parts.csv") as f:
            rows = list(csv.DictReader(f))
        by_part: dict[str, set[str]] = {}
        for r in rows:
            by_part.setdefault(r["part"], set()).add(r["image"].split("/")[1])
        assert sorted(by_part) == ["P0000", "P0001", "P0002", "P0003"]
        assert all(len(s) == 1 for s in by_part.values()), by_part  # a part never straddles two splits
        splits.append({p: s.pop() for p, s in by_part.items()})
    again = tmp_path / "again"
    assert _run(["dataset", "import", "--format", "coco", str(src), "--out", str(again), "--seed", "0"])[0] == 0
    assert sorted(p.name for p in again.glob("images/*/*")) == sorted(p.name for p in (tmp_path / "ds0").glob("images/*/*"))
    assert len({tuple(sorted(s.items())) for s in splits}) > 1  # another seed, another split


def test_classes_map_by_name_and_an_unknown_one_is_refused(tmp_path: Path, frames) -> None:  # type: ignore[no-untyped-def]
    doc = coco_document(frames, names=tuple(n.upper() for n in reversed(DEFECT_CLASSES)))
    src = write_coco_source(tmp_path / "src", frames, doc=doc)
    out = tmp_path / "ds"
    code, text = _run(["dataset", "import", "--format", "coco", str(src), "--out", str(out)])
    assert code == 0, text
    # COCO category k+1 was named after class 3-k: the import must follow the names, not the ids
    for i, f in enumerate(frames):
        got = [int(r[0]) for r in _labels(out)[f"img{i:04d}"]]
        assert got == [3 - b.class_id for b in f.truth.boxes]
    code, text = _run(["dataset", "import", "--format", "coco", str(src), "--out", str(tmp_path / "ds2"),
                       "--classes", "crack,dent"])
    used = sorted({DEFECT_CLASSES[3 - b.class_id].upper() for f in frames for b in f.truth.boxes} - {"CRACK", "DENT"})
    assert code == 2 and len(text.strip().splitlines()) == 1
    assert f"class '{used[0]}' is not one of the target classes (crack, dent)" in text


def test_classes_order_names_the_dataset(tmp_path: Path, frames) -> None:  # type: ignore[no-untyped-def]
    src = write_yolo_source(tmp_path / "src", frames)
    order = "contamination,crack,dent,scratch,bubble"
    code, text = _run(["dataset", "import", "--format", "yolo", str(src), "--out", str(tmp_path / "ds"),
                       "--classes", order])
    assert code == 0, text
    assert read_data_yaml(tmp_path / "ds" / "data.yaml").names == tuple(order.split(","))
    i = next(k for k, f in enumerate(frames) if f.truth.boxes)
    f = frames[i]
    got = [int(r[0]) for r in _labels(tmp_path / "ds")[f"img{i:04d}"]]
    assert got == [order.split(",").index(DEFECT_CLASSES[b.class_id]) for b in f.truth.boxes]


@pytest.mark.parametrize(
    "line, expect",
    [
        ("1 0.5 0.5 0.1", ":2: expected 5 fields (class cx cy w h), got 4"),
        ("7 0.5 0.5 0.1 0.1", ":2: class 7 is out of range (0..3: scratch, dent, crack, contamination)"),
        ("0 1.2 0.5 0.1 0.1", ":2: cx = 1.2 is outside 0..1"),
        ("0 0.5 0.5 0.1 -0.1", ":2: h = -0.1 is outside 0..1"),
        ("x 0.5 0.5 0.1 0.1", ":2: class 'x' is not an integer"),
    ],
)
def test_a_broken_yolo_line_is_one_line_naming_file_and_line(tmp_path: Path, frames, line: str, expect: str) -> None:  # type: ignore[no-untyped-def]
    src = write_yolo_source(tmp_path / "src", frames[:3])
    bad = src / "labels" / "img0001.txt"
    bad.write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    code, text = _run(["dataset", "import", "--format", "yolo", str(src), "--out", str(tmp_path / "ds")])
    assert code == 2
    assert text.strip().splitlines() == [text.strip()] and f"{bad}{expect}" in text
    assert not (tmp_path / "ds" / "data.yaml").exists()


@pytest.mark.parametrize(
    "change, expect",
    [
        (lambda d: d["annotations"][0].update(image_id=99), "annotations[0] (id 1): image_id 99 is not in images"),
        (lambda d: d["annotations"][0].update(category_id=42), "annotations[0] (id 1): category_id 42 is not in categories"),
        (lambda d: d["annotations"][0]["bbox"].__setitem__(2, -5.0),
         "annotations[0] (id 1): bbox width and height must be positive, got -5 x"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0] (id 1): bbox must be 4 numbers"),
        (lambda d: d["images"][0].update(file_name="missing.png"), "image 'missing.png' not found"),
    ],
)
def test_a_broken_coco_file_is_one_line_naming_file_and_entry(tmp_path: Path, frames, change, expect: str) -> None:  # type: ignore[no-untyped-def]
    doc = coco_document(frames)
    assert doc["annotations"], "the seeds must render at least one defect"
    change(doc)
    src = write_coco_source(tmp_path / "src", frames, doc=doc)
    code, text = _run(["dataset", "import", "--format", "coco", str(src), "--out", str(tmp_path / "ds")])
    assert code == 2
    assert text.strip().splitlines() == [text.strip()]
    assert f"{src / 'annotations' / 'instances_default.json'}: {expect}" in text


def test_coco_json_syntax_error_names_the_line(tmp_path: Path, frames) -> None:  # type: ignore[no-untyped-def]
    src = write_coco_source(tmp_path / "src", frames[:2])
    f = src / "annotations" / "instances_default.json"
    f.write_text('{\n "images": [],\n "annotations": [,]\n}\n')
    code, text = _run(["dataset", "import", "--format", "coco", str(src), "--out", str(tmp_path / "ds")])
    assert code == 2 and f"{f}:3: not valid JSON" in text


@pytest.mark.parametrize("split", ["0.8,0.1", "0.8,0.3,0.1", "a,b,c"])
def test_a_bad_split_is_refused(tmp_path: Path, frames, split: str) -> None:  # type: ignore[no-untyped-def]
    src = write_yolo_source(tmp_path / "src", frames[:2])
    code, text = _run(["dataset", "import", "--format", "yolo", str(src), "--out", str(tmp_path / "ds"), "--split", split])
    assert code == 2 and f"--split {split!r}: expected three shares" in text


def test_import_never_writes_into_a_dataset_that_exists(tmp_path: Path, frames) -> None:  # type: ignore[no-untyped-def]
    src = write_yolo_source(tmp_path / "src", frames[:2])
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("mine")
    code, text = _run(["dataset", "import", "--format", "yolo", str(src), "--out", str(tmp_path / "ds")])
    assert code == 2 and "exists and is not an empty folder" in text
    assert (tmp_path / "ds" / "keep.txt").read_text() == "mine"
