"""INT8 by NNCF: the IR, its sha256s in the card, loading it with precision int8, and the refusals."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from camera.renderer import render_part
from inspector.config import ModelConfig
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import DEFAULT_MODEL, INT8_XML, ModelError, dump_toml, load_card, sha256_file
from inspector.quality.evaluation import detect_frames
from inspector.quality.quantize import _iou, calibration_seeds


def copy_model(dst: Path) -> Path:
    """The shipped model's ONNX and card, without its INT8 model (the card's [int8] table taken out)."""
    src = load_card(DEFAULT_MODEL, verify=False).folder
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "model.onnx", dst / "model.onnx")
    data = tomllib.loads((src / "card.toml").read_text())
    data.pop("int8", None)
    (dst / "card.toml").write_text(dump_toml(data))
    return dst


def edit_card(folder: Path, **int8: object) -> None:
    path = folder / "card.toml"
    data = tomllib.loads(path.read_text())
    data.setdefault("int8", {}).update(int8)
    path.write_text(dump_toml(data))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("nncf", reason="needs the quantize extra (nncf)", exc_type=ImportError)
    from inspector.quality.quantize import quantize_model

    folder = copy_model(tmp_path_factory.mktemp("int8") / "m")
    quantize_model(folder, calibration=16, eval_frames=16)
    return folder


def test_quantize_writes_an_ir_whose_sha256s_are_in_the_card(quantized: Path) -> None:
    table = tomllib.loads((quantized / "card.toml").read_text())["int8"]
    assert table["file"] == INT8_XML
    assert table["sha256"] == sha256_file(quantized / INT8_XML)
    assert table["bin_sha256"] == sha256_file((quantized / INT8_XML).with_suffix(".bin"))
    assert table["calibration_seeds"] == [0, 15] and table["preset"] == "mixed"
    assert table["activation_ranges"] == "minmax"  # the default: NNCF's clipping estimator moved box edges
    assert set(table["gate"]) >= {"passed", "escape_max", "false_reject_max", "box_recall_min"}
    assert 0.0 <= table["metrics"]["box_recall_iou90"] <= 1.0
    card = load_card(quantized, int8=True)
    assert card.int8 is not None and card.int8_gate_passed is table["gate"]["passed"]


def test_int8_detections_are_close_to_fp32_on_held_out_frames(quantized: Path) -> None:
    card = load_card(quantized, int8=True)
    f32 = create_backend("openvino", card, max_batch=4, precision="f32")
    i8 = create_backend("openvino", card, max_batch=4, precision="int8")
    frames = [render_part(1_000_000 + i, 320, 320, mono=(i == 3), ok_share=0.0) for i in range(4)]
    matched = total = 0
    for a, b in zip(detect_frames(f32, card, frames, 320, 320), detect_frames(i8, card, frames, 320, 320)):
        a, b = a[a[:, 4] >= 0.25], b[b[:, 4] >= 0.15]
        for row in a:
            total += 1
            same = b[b[:, 5] == row[5]]
            matched += int(len(same) > 0 and float(_iou(row[:4], same[:, :4]).max()) >= 0.7)
    assert total > 0
    assert matched >= 0.8 * total, f"{matched} of {total} FP32 boxes found again"


def test_int8_ir_that_does_not_match_its_card_is_refused_in_one_line(quantized: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(quantized, folder)
    bin_path = (folder / INT8_XML).with_suffix(".bin")
    data = bytearray(bin_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    load_card(folder)  # the FP32 model is still usable
    with pytest.raises(ModelError) as exc:
        load_card(folder, int8=True)
    assert "does not match its card" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ModelError, match="int8.bin_sha256"):
        create_backend("openvino", load_card(folder), max_batch=1, precision="int8")


def test_card_whose_int8_sha256_does_not_match_is_refused(tmp_path: Path) -> None:
    folder = copy_model(tmp_path / "m")
    (folder / INT8_XML).write_text("<net/>")
    (folder / INT8_XML).with_suffix(".bin").write_bytes(b"")
    edit_card(folder, file=INT8_XML, sha256="0" * 64, bin_sha256=sha256_file(folder / "model_int8.bin"))
    with pytest.raises(ModelError) as exc:
        load_card(folder, int8=True)
    msg = str(exc.value)
    assert str(folder / INT8_XML) in msg and "int8.sha256" in msg and "\n" not in msg


def test_precision_int8_without_an_int8_model_is_one_line(tmp_path: Path) -> None:
    folder = copy_model(tmp_path / "m")
    card = load_card(folder)
    assert card.int8 is None and not card.int8_gate_passed
    with pytest.raises(ModelError) as exc:
        create_backend("openvino", card, max_batch=1, precision="int8")
    msg = str(exc.value)
    assert str(folder) in msg and "no INT8 model" in msg and "inspector quantize" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "int8, field",
    [
        ({"file": "../elsewhere.xml", "sha256": "a" * 64, "bin_sha256": "a" * 64}, "int8.file"),
        ({"file": "model_int8.bin", "sha256": "a" * 64, "bin_sha256": "a" * 64}, "int8.file"),
        ({"file": INT8_XML, "sha256": "nope", "bin_sha256": "a" * 64}, "int8.sha256"),
        ({"file": INT8_XML, "sha256": "a" * 64}, "int8.bin_sha256"),
        ({"file": INT8_XML, "sha256": "a" * 64, "bin_sha256": "a" * 64, "metrics": {"escape_rate": 2.0}},
         "int8.metrics.escape_rate"),
    ],
)
def test_bad_int8_tables_are_refused_naming_the_field(tmp_path: Path, int8: dict, field: str) -> None:
    folder = copy_model(tmp_path / "m")
    edit_card(folder, **int8)
    with pytest.raises(ModelError, match=field.replace(".", r"\.")):
        load_card(folder)


def test_calibration_uses_training_seeds_only() -> None:
    assert calibration_seeds(300) == range(300)
    for count, first in [(1, 999_999 + 1), (2, 999_999), (0, 0)]:
        with pytest.raises(ValueError, match="training seeds"):
            calibration_seeds(count, first)


def test_station_config_accepts_int8() -> None:
    assert ModelConfig(precision="int8").precision == "int8"


def test_quantize_without_nncf_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from inspector.quality.quantize import QuantizeUnavailable, quantize_model

    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(QuantizeUnavailable, match=r"pip install -e '\.\[quantize\]'"):
        quantize_model(copy_model(tmp_path / "m"), calibration=1, eval_frames=8)


@pytest.mark.parametrize("kw, field", [({"ranges": "quantile"}, "ranges"), ({"preset": "fast"}, "preset"),
                                       ({"accuracy_target": 1.5}, "accuracy_target")])
def test_bad_quantize_options_name_the_option(tmp_path: Path, kw: dict, field: str) -> None:
    pytest.importorskip("nncf", reason="needs the quantize extra (nncf)", exc_type=ImportError)
    from inspector.quality.quantize import quantize_model

    with pytest.raises(ValueError, match=f"^{field}: "):
        quantize_model(copy_model(tmp_path / "m"), calibration=1, eval_frames=8, **kw)


class FakeCore:
    """Stands in for ``ov.Core`` where only the device's default precision matters."""

    def __init__(self, default: object) -> None:
        self.default = default

    def get_property(self, device: str, key: str) -> object:
        assert key == "INFERENCE_PRECISION_HINT"
        return self.default


def test_auto_picks_int8_only_when_the_gate_passed_and_the_device_computes_in_f32(quantized: Path,
                                                                                  tmp_path: Path) -> None:
    import openvino as ov

    from inspector.pipeline.backends.openvino_backend import auto_picks_int8, auto_precision

    folder = tmp_path / "m"
    shutil.copytree(quantized, folder)
    for passed, default, picks in [(True, ov.Type.f32, True), (True, ov.Type.bf16, False),
                                   (False, ov.Type.f32, False)]:
        edit_card(folder, gate={"passed": passed})
        assert auto_picks_int8(FakeCore(default), "CPU", load_card(folder)) is picks
    assert not auto_picks_int8(FakeCore(ov.Type.f32), "CPU", load_card(copy_model(tmp_path / "plain")))
    # the gate the real quantization recorded decides for this machine
    card = load_card(quantized)
    be = create_backend("openvino", card, max_batch=1, precision="auto")
    expected = "int8" if auto_picks_int8(ov.Core(), "CPU", card) else auto_precision("CPU", card)  # the device's own
    assert be.precision == expected


def test_the_shipped_int8_model_matches_its_card_and_auto_keeps_off_it_while_its_gate_fails() -> None:
    card = load_card(DEFAULT_MODEL, int8=True)  # both IR files' sha256 checked against the card
    gate = card.int8["gate"]
    assert card.int8_gate_passed is bool(gate["passed"])
    m = card.int8["metrics"]
    passes = (m["escape_rate"] <= gate["escape_max"] and m["false_reject_rate"] <= gate["false_reject_max"]
              and m["box_recall_iou90"] >= gate["box_recall_min"])
    assert passes is card.int8_gate_passed  # the recorded verdict is the one its own figures give
    if not card.int8_gate_passed:
        assert create_backend("openvino", card, max_batch=1, precision="auto").precision != "int8"
    i8 = create_backend("openvino", card, max_batch=2, precision="int8")  # chosen explicitly, it runs
    assert i8.infer_preprocessed(np.full((2, 320, 320, 3), 114, np.uint8)).shape[0] == 2


def test_box_recall_counts_the_fp32_boxes_a_candidate_finds_again_at_iou_09() -> None:
    from inspector.quality.quantize import BoxRecall

    def model_with_box(shift: float, cls: int = 1):
        def run(batch: np.ndarray):
            raw = np.zeros((1, 8, 16), np.float32)  # (1, 4 + 4 classes, candidates)
            if int(batch.reshape(-1)[0]) == 255:  # a frame with a defect: one 20x20 box
                raw[0, :4, 0] = [110 + shift, 110, 20, 20]
                raw[0, 4 + cls, 0] = 0.9
            return [raw]
        return run

    frames = [np.full((1, 4, 4, 3), v, np.uint8) for v in (255, 0, 255)]  # two defects, one clean frame
    recall = BoxRecall(model_with_box(0.0), frames, threshold=0.25)
    assert recall.total == 2
    assert recall(model_with_box(0.0), frames) == 1.0
    assert recall(model_with_box(1.0), frames) == 1.0  # IoU 0.905: found again
    assert recall(model_with_box(3.0), frames) == 0.0  # IoU 0.74: moved too far
    assert recall(model_with_box(0.0, cls=2), frames) == 0.0  # same place, another class
    assert recall(model_with_box(0.0), frames[1:2]) == 1.0  # no FP32 box: nothing to miss


def test_the_scope_kept_in_f32_is_the_box_branch_the_dfl_and_the_first_two_layers() -> None:
    pytest.importorskip("nncf", reason="needs the quantize extra (nncf)", exc_type=ImportError)
    import re

    import openvino as ov

    from inspector.pipeline.backends.openvino_backend import runtime_model
    from inspector.quality.quantize import ignored_scope_for

    graph = runtime_model(ov.Core(), load_card(DEFAULT_MODEL, verify=False), fused=True)
    scope = ignored_scope_for(graph)
    convs = [op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "Convolution"]
    kept = {n for n in convs if any(re.search(p, n) for p in scope.patterns)}
    box_branch = {n for n in convs if n.startswith("/model.23/cv2.")}
    assert len(box_branch) == 9  # three scales, three convolutions each
    assert box_branch <= kept
    assert not any(n.startswith("/model.23/cv3.") for n in kept)  # the class branch is INT8
    assert {n.split("/")[1] for n in kept} == {"model.0", "model.1", "model.23"}
    assert any("/dfl/" in n for n in kept)
    assert "Sigmoid" in scope.types
    # the card records the scope its IR was made with
    card = load_card(DEFAULT_MODEL, verify=False)
    assert card.int8["not_quantized"] == ", ".join([*scope.patterns, *scope.types])
