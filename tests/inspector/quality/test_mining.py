from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from camera.renderer import GroundTruth, GroundTruthBox, render_part
from inspector.cli import app
from inspector.quality.dataset import HELD_OUT_SEED_BASE, export_dataset, yolo_label_lines
from inspector.quality.mining import hardness, mine_hard_examples

DEFECT = GroundTruth(seed=1, part_kind="pcb", boxes=(GroundTruthBox(0, 100, 100, 140, 120),))
OK = GroundTruth(seed=2, part_kind="pcb", boxes=())


def dets(*rows: tuple[float, ...]) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 6)


@pytest.mark.parametrize(
    ("truth", "found", "expected"),
    [
        (OK, dets(), (False, False)),  # nothing seen on an OK part
        (OK, dets((10, 10, 30, 30, 0.05, 0)), (False, False)),  # below negative_score
        (OK, dets((10, 10, 30, 30, 0.15, 0)), (True, False)),  # a false call
        (DEFECT, dets((100, 100, 140, 120, 0.9, 0)), (False, False)),  # found, right class
        (DEFECT, dets((100, 100, 140, 120, 0.2, 0)), (False, True)),  # found, but unsure
        (DEFECT, dets((100, 100, 140, 120, 0.9, 1)), (False, True)),  # wrong class
        (DEFECT, dets((100, 100, 140, 120, 0.9, 0), (200, 200, 220, 220, 0.5, 2)), (True, False)),  # plus a false call
        (DEFECT, dets((200, 200, 220, 220, 0.5, 0)), (True, True)),  # looked in the wrong place
    ],
)
def test_hardness(truth: GroundTruth, found: np.ndarray, expected: tuple[bool, bool]) -> None:
    assert hardness(found, truth, negative_score=0.1, positive_score=0.35) == expected


def test_mining_keeps_exactly_the_hard_frames_with_their_truth(tmp_path: Path) -> None:
    base = export_dataset(tmp_path / "base", 4, seed=0)
    # a positive score above any the model gives: every defective frame counts as missed, no OK frame does
    s = mine_hard_examples("defect-yolo11p-320", tmp_path / "hard", seed=500, count=24, base_data=base.root / "data.yaml",
                           negative_score=0.999, positive_score=0.9999, ok_share=0.5)
    defective = [seed for seed in range(500, 524) if render_part(seed, ok_share=0.5, mono=seed % 4 == 3).truth.defective]
    assert 0 < len(defective) < 24
    assert list(s.kept_seeds) == defective and s.hard_positives == len(defective) and s.hard_negatives == 0
    root = tmp_path / "hard"
    for seed in defective:
        frame = render_part(seed, ok_share=0.5, mono=seed % 4 == 3)
        label = (root / "labels" / "train" / f"{seed:07d}.txt").read_text().splitlines()
        assert label == yolo_label_lines(frame.truth, 320, 320)
        assert (root / "images" / "train" / f"{seed:07d}.png").is_file()
    assert len(list((root / "images" / "train").iterdir())) == len(defective)
    y = (root / "data.yaml").read_text()
    assert f"train: [{(base.root / 'images' / 'train').resolve()}, {(root / 'images' / 'train').resolve()}]" in y
    assert f"val: {(base.root / 'images' / 'val').resolve()}" in y
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["kept_seeds"] == defective and meta["scanned"] == 24


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--seed", str(HELD_OUT_SEED_BASE - 3), "--count", "5"], "seed: mined seeds must lie in"),
        (["--negative-score", "1.5", "--count", "5"], "negative_score: 1.5 is not between 0 and 1"),
        (["--base", "missing/data.yaml", "--count", "5"], "base_data: cannot read missing/data.yaml"),
        (["--model", "no-such-model", "--count", "5"], "no-such-model"),
        (["--defective-faces-only", "--count", "5"], "defective_faces_only: needs faces"),
    ],
)
def test_mine_cli_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], msg: str) -> None:
    res = CliRunner().invoke(app, ["dataset", "mine", "--out", str(tmp_path / "m"), *args])
    assert res.exit_code == 2
    assert msg in res.output and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_mining_line_faces_keeps_the_hard_faces_of_each_part(tmp_path: Path) -> None:
    from camera.renderer import face_seed, render_face

    s = mine_hard_examples("defect-yolo11p-320", tmp_path / "faces", seed=900, count=3, faces=8,
                           negative_score=0.999, positive_score=0.9999, ok_share=0.3)
    defective = [face_seed(p, k) for p in range(900, 903) for k in range(8)
                 if render_face(p, k, 8, ok_share=0.3).truth.defective]
    assert defective and list(s.kept_seeds) == defective and s.scanned == 3
    k = defective[0] % 64
    face = render_face(defective[0] // 64, k, 8, ok_share=0.3, mono=k in (3, 7))
    label = (tmp_path / "faces" / "labels" / "train" / f"{defective[0]:07d}.txt").read_text().splitlines()
    assert label == yolo_label_lines(face.truth, 320, 320)
    with pytest.raises(ValueError, match=r"part seeds \(a face's seed is part \* 64 \+ face, below 1000000\) must lie in 0..15624"):
        mine_hard_examples("defect-yolo11p-320", tmp_path / "x", seed=15620, count=10, faces=8)


def test_mining_only_the_defective_faces_scans_no_face_without_a_defect(tmp_path: Path) -> None:
    from camera.renderer import defective_faces, face_seed, render_face

    # every face with a defect counts as hard (found only from 0.9999): the kept faces are the defective ones scanned
    s = mine_hard_examples("defect-yolo11p-320", tmp_path / "pos", seed=900, count=6, faces=8,
                           negative_score=0.999, positive_score=0.9999, ok_share=0.3, defective_faces_only=True)
    expected = [face_seed(p, k) for p in range(900, 906) for k in sorted(defective_faces(p, 8, 0.3))
                if render_face(p, k, 8, ok_share=0.3).truth.defective]
    assert json.loads((tmp_path / "pos" / "dataset.json").read_text())["scanned_faces"] == sum(
        len(defective_faces(p, 8, 0.3)) for p in range(900, 906))
    assert expected and list(s.kept_seeds) == expected and s.scanned == 6
    assert json.loads((tmp_path / "pos" / "dataset.json").read_text())["defective_faces_only"] is True
    with pytest.raises(ValueError, match="defective_faces_only: needs faces"):
        mine_hard_examples("defect-yolo11p-320", tmp_path / "x", seed=900, count=2, defective_faces_only=True)
