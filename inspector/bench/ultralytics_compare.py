"""Ultralytics ``YOLO(...).predict`` on the same model file and frames (train extra only).

The same ONNX file is converted to OpenVINO IR (what our station runs) with the
ONNX file's own Ultralytics metadata beside it, so Ultralytics runs the same runtime
on the same weights with its own pre- and postprocessing.
"""

from __future__ import annotations

import ast
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.pipeline.model_repo import load_card

log = logging.getLogger(__name__)


def ultralytics_available() -> str | None:
    """None if Ultralytics can be imported, else the reason."""
    try:
        import ultralytics  # noqa: F401
    except ImportError as exc:
        return f"ultralytics is not installed ({exc}); install the train extra to compare"
    return None


def _openvino_dir(onnx_path: Path, out: Path) -> Path:
    import onnxruntime as ort
    import openvino as ov
    import yaml

    d = out / "model_openvino_model"
    d.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(d / "model.xml"))
    meta_raw = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    meta: dict[str, Any] = {}
    for k, v in meta_raw.items():
        try:
            meta[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            meta[k] = v
    (d / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return d


def run_ultralytics(model: str, frames: list[np.ndarray], seconds: float = 10.0) -> dict[str, Any]:
    """Frames per second of Ultralytics predict, batch 1 and batch 8, on OpenVINO.

    Frames are given as 3-channel BGR (what Ultralytics expects from OpenCV).
    """
    from ultralytics import YOLO

    card = load_card(model)
    bgr = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f for f in frames]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = _openvino_dir(card.path, Path(tmp))
        yolo = YOLO(str(d), task="detect")
        kw: dict[str, Any] = dict(imgsz=card.input_width, device="cpu", verbose=False, conf=0.25)
        yolo.predict(bgr[0], **kw)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            yolo.predict(bgr[n % len(bgr)], **kw)
            n += 1
        out["fps_batch1"] = n / (time.perf_counter() - t0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            start = (n * 8) % len(bgr)
            yolo.predict((bgr * 2)[start : start + 8], **kw)
            n += 1
        out["fps_batch8"] = n * 8 / (time.perf_counter() - t0)
    out["fps"] = max(out["fps_batch1"], out["fps_batch8"])
    out["runtime"] = "openvino (same ONNX file converted to IR)"
    return out
