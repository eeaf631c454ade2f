"""``inspector eval --data``: a COCO and a YOLO import evaluated through the runtime path, checked against
figures computed by hand from detections the test scripts (AP by the 101-point rule, escapes, false rejects)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspector.cli import app
from inspector.pipeline.backends.base import BatchItem, BatchOutput, SynchronousBackend
from tests.inspector.quality.helpers import coco_document, rendered, write_coco_source, write_yolo_source

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"
SCRATCH, DENT, CRACK, CONTAMINATION = range(4)

#: What the scripted model "sees" in each rendered image (frame pixels xyxy, class, score). The true boxes
#: (camera.renderer, seeds 1100000..1100007) are in the comments; "exact" detections repeat them.
DETECTIONS: dict[int, list[tuple[float, float, float, float, int, float]]] = {
    0: [(20, 20, 40, 40, SCRATCH, 0.6)],                      # OK image: a false call above the threshold
    1: [(127, 41, 138, 55, CRACK, 0.9),                       # crack, exact
        (184, 198, 209, 218, CONTAMINATION, 0.8),             # contamination, exact
        (241, 123, 261, 138, CONTAMINATION, 0.7),             # contamination, exact
        (10, 280, 30, 300, CONTAMINATION, 0.75)],             # nothing there: a false positive
    2: [(58, 98, 87, 124, CONTAMINATION, 0.45)],              # true (53, 98, 82, 124), 5 px off: IoU 24/34 = 0.706;
                                                              # its dent and crack are missed: an escape at 0.5
    3: [(58, 100, 79, 135, CRACK, 0.95)],                     # crack, exact
    4: [(119, 192, 172, 234, CRACK, 0.55)],                   # crack, exact
    5: [(150, 150, 170, 170, SCRATCH, 0.3)],                  # OK image, a false call below the threshold
    6: [(209, 246, 225, 266, SCRATCH, 0.9), (36, 41, 63, 70, SCRATCH, 0.85), (201, 33, 224, 48, DENT, 0.7)],
    7: [(221, 121, 235, 143, SCRATCH, 0.8), (83, 93, 133, 149, SCRATCH, 0.75), (237, 179, 260, 212, DENT, 0.65)],
}

# By hand, 101-point interpolation: AP = 0.01 * (sum of the precision envelope at recall 0, 0.01 .. 1 minus half
# its two ends); the envelope falls to 0 at recall 1 (the appended end point), linearly after the last recall < 1.
# scratch: 4 true, 4 found before any false positive: envelope 1 up to 0.99, 0 at 1.0
AP_SCRATCH = 0.01 * (100 - 0.5)
# dent: 3 true, 2 found (0.7, 0.65), no false positive: 1 up to 2/3 (67 points), then 3(1 - r) down to 0 at 1
AP_DENT = 0.01 * (67 + 3 * sum(k / 100 for k in range(34)) - 0.5)
# crack: 4 true, 3 found (0.95, 0.9, 0.55): 1 up to 0.75 (76 points), then 4(1 - r)
AP_CRACK = 0.01 * (76 + 4 * sum(k / 100 for k in range(25)) - 0.5)
# contamination, 3 true, ranked TP 0.8, FP 0.75, TP 0.7, then the 5 px-off box 0.45:
#  IoU 0.50..0.70 (5 thresholds) it is a TP: precision 1, 1/2, 2/3, 3/4 -> envelope 1 up to 1/3, 3/4 after
AP_CONT_LOW = 0.01 * (34 + 66 * 0.75 - 0.5)
#  IoU 0.75..0.95 (5 thresholds) it is an FP: 1 up to 1/3, 2/3 up to 2/3, then 1.5(1 - r) from 0.5
AP_CONT_HIGH = 0.01 * (34 + 33 * 2 / 3 + 1.5 * sum(k / 100 for k in range(34)) - 0.5)
AP50 = {"scratch": AP_SCRATCH, "dent": AP_DENT, "crack": AP_CRACK, "contamination": AP_CONT_LOW}
AP50_95 = {**AP50, "contamination": (AP_CONT_LOW + AP_CONT_HIGH) / 2}


class ScriptedImages(SynchronousBackend):
    """Answers each image with the raw YOLO output of its `DETECTIONS` (found by the image's pixels)."""

    name = "scripted"
    device = "CPU"

    def __init__(self, by_digest: dict[str, list[tuple[float, float, float, float, int, float]]]) -> None:
        self.by_digest = by_digest
        self.seen = 0

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:
        raw = np.zeros((len(items), 8, 8), np.float32)
        for i, it in enumerate(items):
            b = it.box
            sx, sy = b.new_w / it.image.shape[1], b.new_h / it.image.shape[0]
            for k, (x1, y1, x2, y2, cls, score) in enumerate(self.by_digest[_digest(it.image)]):
                x1, x2 = x1 * sx + b.pad_x, x2 * sx + b.pad_x
                y1, y2 = y1 * sy + b.pad_y, y2 * sy + b.pad_y
                raw[i, :4, k] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
                raw[i, 4 + cls, k] = score
            self.seen += 1
        return BatchOutput(raw, 0.0, 0.0)

    def close(self) -> None:
        pass


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def frames():  # type: ignore[no-untyped-def]
    return rendered()


@pytest.fixture
def scripted(frames, monkeypatch: pytest.MonkeyPatch) -> ScriptedImages:  # type: ignore[no-untyped-def]
    be = ScriptedImages({_digest(f.image): DETECTIONS[i] for i, f in enumerate(frames)})
    monkeypatch.setattr("inspector.quality.dataset_eval.create_backend", lambda *a, **k: be)
    return be


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    return folder


def _run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, args)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def _import(tmp_path: Path, fmt: str, src: Path) -> Path:
    out = tmp_path / f"ds-{fmt}"
    code, text = _run(["dataset", "import", "--format", fmt, str(src), "--out", str(out), "--split", "0,0,1"])
    assert code == 0, text
    return out / "data.yaml"


def _eval(model: Path, data: Path, json_out: Path, *extra: str) -> tuple[str, dict]:
    code, text = _run(["eval", "--model", str(model), "--data", str(data), "--threshold", "0.5",
                       "--json", str(json_out), *extra])
    assert code == 0, text
    return text, json.loads(json_out.read_text())


def _check_frame_metrics(m: dict) -> None:
    assert m["images"] == 8 and m["defective_images"] == 6 and m["ok_images"] == 2
    assert m["per_class_AP50"] == pytest.approx(AP50, abs=1e-9)
    assert m["per_class_AP50_95"] == pytest.approx(AP50_95, abs=1e-9)
    assert m["mAP50"] == pytest.approx(sum(AP50.values()) / 4, abs=1e-9)
    assert m["mAP50_95"] == pytest.approx(sum(AP50_95.values()) / 4, abs=1e-9)
    assert m["per_class_instances"] == {"scratch": 4, "dent": 3, "crack": 4, "contamination": 3}
    # at 0.5: image 2 (best 0.45) escapes, image 0 (0.6) is falsely rejected, image 5 (0.3) passes
    assert (m["escapes"], m["escape_rate"]) == (1, pytest.approx(1 / 6))
    assert (m["false_rejects"], m["false_reject_rate"]) == (1, pytest.approx(1 / 2))
    sweep = {r["threshold"]: r for r in m["threshold_sweep"]}
    assert sweep[0.65] == {"threshold": 0.65, "escape_rate": pytest.approx(2 / 6), "false_reject_rate": 0.0}
    assert sweep[0.3] == {"threshold": 0.3, "escape_rate": 0.0, "false_reject_rate": 1.0}
    # at 0.85: images 2 (0.45), 4 (0.55) and 7 (0.8) escape; 1 and 6 (0.9) and 3 (0.95) do not
    assert sweep[0.85] == {"threshold": 0.85, "escape_rate": pytest.approx(3 / 6), "false_reject_rate": 0.0}


def test_eval_of_a_coco_import_gives_the_hand_figures_per_image_and_per_part(
        tmp_path: Path, frames, scripted: ScriptedImages, model: Path) -> None:  # type: ignore[no-untyped-def]
    doc = coco_document(frames)
    for im, part in zip(doc["images"], ["A", "B", "B", "C", "C", "A", "D", "D"]):
        im["part_id"] = part  # part A: the two OK images; B holds the escape and a found defect
    data = _import(tmp_path, "coco", write_coco_source(tmp_path / "coco", frames, doc=doc))
    text, m = _eval(model, data, tmp_path / "m.json")
    assert scripted.seen == 8
    _check_frame_metrics(m)
    assert m["escaped_images"] == ["images/test/img0002.png"]
    assert m["false_rejected_images"] == ["images/test/img0000.png"]
    # per part: B's escape is caught by its other image; A (both OK) is rejected for image 0's false call
    assert m["parts"] == 4 and (m["defective_parts"], m["ok_parts"]) == (3, 1)
    assert (m["part_escapes"], m["part_false_rejects"]) == (0, 1)
    assert m["false_rejected_parts"] == ["A"]
    assert "parts: escape rate 0.00% (0 of 3 defective), false-reject rate 100.00% (1 of 1 OK)" in text
    assert "images: escape rate 16.67% (1 of 6 defective)" in text and "escape: images/test/img0002.png" in text


def test_eval_of_a_yolo_import_gives_the_same_figures(tmp_path: Path, frames, scripted: ScriptedImages,  # type: ignore[no-untyped-def]
                                                      model: Path) -> None:
    data = _import(tmp_path, "yolo", write_yolo_source(tmp_path / "yolo", frames))
    _text, m = _eval(model, data, tmp_path / "m.json")
    _check_frame_metrics(m)
    # no part ids in the names: every image is its own part
    assert m["parts"] == 8 and (m["part_escapes"], m["part_false_rejects"]) == (1, 1)


def test_without_part_ids_there_are_no_part_figures(tmp_path: Path, frames, scripted: ScriptedImages,  # type: ignore[no-untyped-def]
                                                    model: Path) -> None:
    data = _import(tmp_path, "yolo", write_yolo_source(tmp_path / "yolo", frames))
    (data.parent / "parts.csv").unlink()
    _text, m = _eval(model, data, tmp_path / "m.json")
    _check_frame_metrics(m)
    assert "parts" not in m and "part_escapes" not in m


def test_eval_data_refuses_in_one_line(tmp_path: Path, frames, scripted: ScriptedImages, model: Path) -> None:  # type: ignore[no-untyped-def]
    data = _import(tmp_path, "yolo", write_yolo_source(tmp_path / "yolo", frames[:2]))
    code, text = _run(["eval", "--model", str(model), "--data", str(data), "--faces", "8"])
    assert code == 2 and "--faces: not with --data" in text
    (data.parent / "data.yaml").write_text(f"path: {data.parent}\ntrain: images/train\nnames:\n  0: scratch\n")
    code, text = _run(["eval", "--model", str(model), "--data", str(data)])
    assert code == 2 and len(text.strip().splitlines()) == 2  # the "evaluating" line, then the refusal
    assert "has no 'test' split (it has: train)" in text
    code, text = _run(["eval", "--model", str(model), "--data", str(tmp_path / "nope.yaml")])
    assert code == 2 and "nope.yaml: cannot read" in text


def test_a_dataset_class_the_model_lacks_is_refused(tmp_path: Path, frames, scripted: ScriptedImages,  # type: ignore[no-untyped-def]
                                                   model: Path) -> None:
    src = write_yolo_source(tmp_path / "yolo", frames[1:2])  # frame 1 shows a crack
    (src / "classes.txt").write_text("scratch\ndent\nbubble\ncontamination\n")  # which the labels call bubble
    code, text = _run(["dataset", "import", "--format", "yolo", str(src), "--out", str(tmp_path / "ds"),
                       "--split", "0,0,1", "--classes", "scratch,dent,bubble,contamination"])
    assert code == 0, text
    code, text = _run(["eval", "--model", str(model), "--data", str(tmp_path / "ds" / "data.yaml")])
    assert code == 2 and "class 'bubble' is not a class of the model defect-yolo11p-320" in text


def test_the_shipped_model_through_onnxruntime_finds_the_rendered_defects(tmp_path: Path, model: Path) -> None:
    """The real runtime path (letterbox, ONNX, decode, NMS, label reading) on a rendered dataset: a wiring fault
    (boxes in the wrong pixels, classes by the wrong id) would put mAP50 near 0, not near the card's 0.98."""
    code, text = _run(["dataset", "synth", "--out", str(tmp_path / "ds"), "--count", "24", "--val-fraction", "0.5",
                       "--width", "384", "--height", "288"])
    assert code == 0, text
    code, text = _run(["eval", "--model", str(model), "--data", str(tmp_path / "ds" / "data.yaml"), "--split", "val",
                       "--backend", "onnxruntime", "--json", str(tmp_path / "m.json")])
    assert code == 0, text
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["images"] == 12 and m["defective_images"] > 0
    assert m["mAP50"] > 0.8 and m["escapes"] == 0, text
