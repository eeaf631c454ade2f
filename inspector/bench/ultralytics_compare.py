"""Ultralytics ``YOLO(...).predict`` on the same model file and frames (train extra only).

The same ONNX file is converted to OpenVINO IR (what our station runs) with the
ONNX file's own Ultralytics metadata beside it, so Ultralytics runs the same runtime
on the same weights with its own pre- and postprocessing.

For INT8 the IR is quantized the way Ultralytics' own ``export(format="openvino", int8=True)``
does it (NNCF, MIXED preset, every calibration frame, the whole Detect head and every Sigmoid
left in floating point), from the same ONNX file and on our calibration frames (training seeds,
through the same letterbox, RGB in 0..1 as its transform gives them): the ``.pt`` weights its
exporter starts from are not shipped. Ultralytics compiles with ``PERFORMANCE_HINT: LATENCY``
and nothing else, so both IRs run their floating-point parts at the device's default precision
(bf16 on AMX CPUs), as ours does with ``precision = "auto"``; the precision it ran is recorded.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.pipeline.model_repo import ModelCard, load_card

log = logging.getLogger(__name__)


def ultralytics_available() -> str | None:
    """None if Ultralytics can be imported, else the reason."""
    try:
        import ultralytics  # noqa: F401
    except ImportError as exc:
        return f"ultralytics is not installed ({exc}); install the train extra to compare"
    return None


def _openvino_dir(onnx_path: Path, out: Path, model: Any = None) -> Path:
    """A folder Ultralytics loads: ``model`` (default: the ONNX file converted, weights stored as fp16) as
    ``model.xml`` beside the ONNX file's own metadata."""
    import onnxruntime as ort
    import openvino as ov
    import yaml

    d = out / "model_openvino_model"
    d.mkdir(parents=True, exist_ok=True)
    if model is None:
        ov.save_model(ov.convert_model(str(onnx_path)), str(d / "model.xml"))
    else:
        ov.save_model(model, str(d / "model.xml"), compress_to_fp16=False)
    meta_raw = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    meta: dict[str, Any] = {}
    for k, v in meta_raw.items():
        try:
            meta[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            meta[k] = v
    (d / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return d


def _int8_openvino_dir(card: ModelCard, out: Path, calibration: int) -> Path:
    """Ultralytics' INT8 recipe (see the module) applied to the card's ONNX file."""
    import nncf
    import openvino as ov

    from inspector.quality.quantize import calibration_batches, calibration_seeds, head_prefix

    model = ov.convert_model(str(card.path))
    head = head_prefix(model)
    keep = [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Sigmoid" or (head and op.get_friendly_name().startswith(head + "/"))]
    frames = [np.ascontiguousarray(b[..., ::-1].transpose(0, 3, 1, 2), np.float32) / 255.0
              for b in calibration_batches(card, calibration_seeds(calibration))]
    nncf.set_log_level(logging.WARNING)  # not a line per operation it leaves alone in the bench's output
    quantized = nncf.quantize(model, nncf.Dataset(frames), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(frames), ignored_scope=nncf.IgnoredScope(names=keep, validate=False))
    return _openvino_dir(card.path, out, quantized)


def int8_unavailable() -> str | None:
    """None if NNCF (the quantize extra) can be imported, else why the INT8 comparison is skipped."""
    try:
        import nncf  # noqa: F401
    except ImportError as exc:
        return f"nncf is not installed ({exc}); install the quantize extra to compare at INT8"
    return None


def run_ultralytics(model: str, frames: list[np.ndarray], seconds: float = 10.0, *, int8: bool = False,
                    calibration: int = 300) -> dict[str, Any]:
    """Frames per second of Ultralytics predict, batch 1 and batch 8, on OpenVINO (``int8``: its INT8 recipe,
    calibrated on ``calibration`` training frames).

    Frames are given as 3-channel BGR (what Ultralytics expects from OpenCV).
    """
    from ultralytics import YOLO

    card = load_card(model)
    bgr = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f for f in frames]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, _lesser_cpus_default():
        t_export = time.perf_counter()
        d = _int8_openvino_dir(card, Path(tmp), calibration) if int8 else _openvino_dir(card.path, Path(tmp))
        out["export_s"] = time.perf_counter() - t_export
        yolo = YOLO(str(d), task="detect")
        kw: dict[str, Any] = {"imgsz": card.input_width, "device": "cpu", "verbose": False, "conf": 0.25}
        yolo.predict(bgr[0], **kw)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            yolo.predict(bgr[n % len(bgr)], **kw)
            n += 1
        out["fps_batch1"] = n / (time.perf_counter() - t0)
        # untimed: the first batch of 8 may compile that shape (Ultralytics runs INT8 IRs on AMX CPUs static)
        yolo.predict(bgr[:8], **kw)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            start = (n * 8) % len(bgr)
            yolo.predict((bgr * 2)[start : start + 8], **kw)
            n += 1
        out["fps_batch8"] = n * 8 / (time.perf_counter() - t0)
        out["precision_ran"] = _precision_ran(yolo)
    out["fps"] = max(out["fps_batch1"], out["fps_batch8"])
    out["runtime"] = ("openvino, Ultralytics' INT8 recipe on the same ONNX file" if int8
                      else "openvino (same ONNX file converted to IR)")
    return out


@contextlib.contextmanager
def _lesser_cpus_default() -> Iterator[None]:
    """Under an emulated ISA without bf16 (`isa.default_is_f32`), Ultralytics' compile asks for f32, as that
    CPU's default would be: the plugin keeps this CPU's bf16 default, and then the graph does not compile
    (our backend does the same, `openvino_backend._emulated_f32_default`). Elsewhere nothing changes."""
    from inspector.pipeline.backends import isa

    if not isa.default_is_f32():
        yield
        return
    import openvino as ov

    original = ov.Core.compile_model

    def compile_model(self: Any, model: Any, device_name: str | None = None, config: dict[str, Any] | None = None,
                      **kw: Any) -> Any:
        if device_name in (None, "CPU", "AUTO"):
            config = {"INFERENCE_PRECISION_HINT": "f32", **(config or {})}
        return original(self, model, device_name, config, **kw)

    ov.Core.compile_model = compile_model  # type: ignore[method-assign]
    try:
        yield
    finally:
        ov.Core.compile_model = original  # type: ignore[method-assign]


def _precision_ran(yolo: Any) -> str:
    """The floating-point precision Ultralytics' compiled model runs at ("?" where its internals moved)."""
    backend = getattr(yolo.predictor, "model", None)
    from inspector.pipeline.backends.openvino_backend import precision_name

    for holder in (backend, getattr(backend, "backend", None)):
        compiled = getattr(holder, "ov_compiled_model", None)
        if compiled is not None:
            return precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return "?"
