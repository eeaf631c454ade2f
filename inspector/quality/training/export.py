"""Export a trained model into the model repository: ONNX + card (+ TensorRT where installed)."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from camera.renderer import DEFECT_CLASSES
from inspector.pipeline.model_repo import dump_toml, sha256_file

log = logging.getLogger(__name__)


def write_card(
    folder: Path,
    *,
    name: str,
    classes: tuple[str, ...],
    input_size: tuple[int, int],
    file: str = "model.onnx",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    notes: str = "",
) -> Path:
    """Write ``card.toml`` for the ONNX file in ``folder`` (sha256 computed here)."""
    data: dict[str, Any] = {
        "name": name,
        "file": file,
        "sha256": sha256_file(folder / file),
        "classes": list(classes),
        "input_width": int(input_size[0]),
        "input_height": int(input_size[1]),
        "pad_value": 114,
        "created": dt.date.today().isoformat(),
    }
    if notes:
        data["notes"] = notes
    if training:
        data["training"] = training
    if metrics:
        data["metrics"] = metrics
    path = folder / "card.toml"
    path.write_text(dump_toml(data))
    return path


def run_summary(weights: Path) -> dict[str, Any]:
    """What an Ultralytics run folder says about the training (args.yaml, results.csv), if present."""
    import csv

    run_dir = Path(weights).resolve().parent.parent
    out: dict[str, Any] = {}
    args = run_dir / "args.yaml"
    if args.is_file():
        for line in args.read_text().splitlines():
            key, _, value = line.partition(": ")
            if key in ("imgsz", "batch", "device", "optimizer", "seed", "time"):
                out[key] = value.strip()
            elif key in ("model", "data"):  # machine paths say nothing to the reader: keep the name
                out[key] = Path(value.strip()).name
    results = run_dir / "results.csv"
    if results.is_file():
        rows = list(csv.DictReader(results.open()))
        if rows:
            last = {k.strip(): v for k, v in rows[-1].items()}
            out["epochs_completed"] = int(float(last["epoch"]))
            out["train_seconds"] = round(float(last.get("time", 0) or 0), 1)
            out["val_mAP50_ultralytics"] = round(float(last.get("metrics/mAP50(B)", 0) or 0), 4)
            out["val_mAP50_95_ultralytics"] = round(float(last.get("metrics/mAP50-95(B)", 0) or 0), 4)
    return out


def export_onnx(
    weights: Path,
    out_dir: Path,
    *,
    name: str,
    imgsz: int = 320,
    training: dict[str, Any] | None = None,
    opset: int = 17,
) -> Path:
    """Export Ultralytics ``.pt`` weights to ``out_dir/model.onnx`` with a card.

    Needs the ``train`` extra (the ``.pt`` is a pickle: only the toolchain opens it,
    never the runtime). The ONNX graph has a dynamic batch axis.
    """
    from ultralytics import YOLO

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights not found: {weights}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.pt"
        shutil.copy(weights, src)
        model = YOLO(str(src))
        exported = model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False, opset=opset, verbose=False)
        shutil.copy(exported, out_dir / "model.onnx")
        names = model.names
    classes = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(DEFECT_CLASSES)
    info = {**run_summary(weights), **(training or {})}
    write_card(out_dir, name=name, classes=classes, input_size=(imgsz, imgsz), training=info)
    log.info("exported %s -> %s", weights, out_dir / "model.onnx")
    return out_dir / "model.onnx"


def export_tensorrt(onnx_path: Path, *, max_batch: int = 8, fp16: bool = True) -> Path | None:
    """Build a TensorRT engine beside the ONNX file where TensorRT is installed; else None."""
    try:
        from inspector.pipeline.backends.tensorrt_build import build_engine
    except ImportError as exc:
        log.info("TensorRT engine not built: %s", exc)
        return None
    try:
        return build_engine(onnx_path, max_batch=max_batch, fp16=fp16)
    except Exception as exc:  # noqa: BLE001 - no GPU / no tensorrt: the ONNX file is still usable
        log.info("TensorRT engine not built: %s", exc)
        return None
