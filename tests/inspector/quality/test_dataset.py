from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from camera.renderer import render_part
from inspector.quality.dataset import HELD_OUT_SEED_BASE, export_dataset, yolo_label_lines


def test_export_writes_a_yolo_dataset(tmp_path: Path) -> None:
    s = export_dataset(tmp_path / "ds", 20, seed=5, val_fraction=0.2)
    root = tmp_path / "ds"
    assert (s.train_images, s.val_images) == (16, 4)
    y = (root / "data.yaml").read_text()
    assert "train: images/train" in y and "val: images/val" in y and "0: scratch" in y and "3: contamination" in y
    imgs = sorted((root / "images" / "train").glob("*.png"))
    assert len(imgs) == 16
    n_boxes = 0
    for img in imgs:
        label = root / "labels" / "train" / (img.stem + ".txt")
        assert label.exists()  # an empty file for a defect-free part (a negative)
        frame = render_part(int(img.stem), 320, 320, ok_share=0.35)
        lines = [l for l in label.read_text().splitlines() if l]
        assert lines == yolo_label_lines(frame.truth, 320, 320)
        for line in lines:
            cls, cx, cy, w, h = line.split()
            assert 0 <= int(cls) < 4 and all(0 < float(v) <= 1 for v in (cx, cy, w, h))
        n_boxes += len(lines)
        assert cv2.imread(str(img)).shape == (320, 320, 3)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["seed_first"] == 5 and meta["seed_last"] == 24


def test_label_round_trip() -> None:
    f = render_part(7, 640, 480, ok_share=0.0)
    for line, b in zip(yolo_label_lines(f.truth, 640, 480), f.truth.boxes):
        _, cx, cy, w, h = map(float, line.split())
        assert (cx - w / 2) * 640 == pytest.approx(b.x1, abs=0.01)
        assert (cy + h / 2) * 480 == pytest.approx(b.y2, abs=0.01)


@pytest.mark.parametrize(("count", "seed", "msg"), [(0, 0, "count"), (10, HELD_OUT_SEED_BASE - 5, "held-out"), (5, -1, "seed")])
def test_export_refuses_bad_ranges(tmp_path: Path, count: int, seed: int, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        export_dataset(tmp_path, count, seed)
