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


def test_under_an_emulated_isa_without_bf16_ultralytics_compiles_at_f32(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX2-only CPU the plugin's default is f32; under the emulation it would stay bf16 and the graph
    would not compile, so Ultralytics' compile is given that CPU's default (and nothing else changes)."""
    import openvino as ov

    from inspector.bench.ultralytics_compare import _lesser_cpus_default

    card = load_card(DEFAULT_MODEL)
    original = ov.Core.compile_model
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with _lesser_cpus_default():
        compiled = ov.Core().compile_model(ov.convert_model(str(card.path)), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert ov.Core.compile_model is original
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    with _lesser_cpus_default():
        assert ov.Core.compile_model is original


def test_a_failing_ultralytics_is_a_line_in_the_bench_results(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.bench import pipeline, run_bench
    from inspector.bench import ultralytics_compare as uc

    monkeypatch.setattr(pipeline, "run_pipeline_bench", lambda **_kw: {"pipeline_fps": {"8": 400.0},
                                                                        "pure_backend_fps_by_batch": {"1": 300.0}})
    monkeypatch.setattr(pipeline, "bench_frames", lambda *_a: [])
    monkeypatch.setattr(uc, "ultralytics_available", lambda: None)

    def boom(*_a: object, **_kw: object) -> None:
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nPooling")

    monkeypatch.setattr(uc, "run_ultralytics", boom)
    res = run_bench(model=DEFAULT_MODEL, backend="openvino", cameras=[8], db=False)
    assert res["ultralytics"] is None
    want = "Ultralytics predict failed: RuntimeError: Exception from src/inference/src/cpp/core.cpp:117:"
    assert res["ultralytics_note"] == want
