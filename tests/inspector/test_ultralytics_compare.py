"""The bench's Ultralytics INT8 comparison: Ultralytics' own INT8 recipe applied to our ONNX file."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.bench.ultralytics_compare import _int8_openvino_dir
from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card
from inspector.quality.quantize import head_prefix


def test_the_recipe_keeps_the_detect_head_and_every_sigmoid_in_floating_point(tmp_path: Path) -> None:
    pytest.importorskip("nncf", reason="needs the quantize extra (nncf)", exc_type=ImportError)
    import openvino as ov

    card = load_card(DEFAULT_MODEL)
    d = _int8_openvino_dir(card, tmp_path, calibration=4)
    model = ov.Core().read_model(str(d / "model.xml"))
    assert (d / "metadata.yaml").read_text().strip()  # Ultralytics reads the classes and image size from it
    head = head_prefix(ov.convert_model(str(card.path)))
    assert head  # /model.23
    ops = model.get_ordered_ops()
    fq = [op for op in ops if op.get_type_name() == "FakeQuantize"]
    assert len(fq) > 20  # the backbone and neck are quantized
    for op in ops:
        if op.get_type_name() == "Convolution" and op.get_friendly_name().startswith(head + "/"):
            fed_by = {op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())}
            assert "FakeQuantize" not in fed_by, op.get_friendly_name()
        if op.get_type_name() == "Sigmoid":
            assert op.input_value(0).get_node().get_type_name() != "FakeQuantize", op.get_friendly_name()
    # and somewhere outside the head a convolution does take quantized inputs
    assert any(op.get_type_name() == "Convolution" and not op.get_friendly_name().startswith(head + "/")
               and op.input_value(0).get_node().get_type_name() == "FakeQuantize" for op in ops)
