from __future__ import annotations

import builtins
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from camera.renderer import DEFECT_CLASSES
from inspector.pipeline.model_repo import load_card
from inspector.quality.training.export import write_card
from inspector.quality.training.train import TrainingUnavailable, train

HAVE_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None


def test_card_round_trip(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not really onnx, but the card only hashes it")
    write_card(tmp_path, name="m", classes=DEFECT_CLASSES, input_size=(320, 256),
               training={"seed_first": 0, "seed_last": 99, "epochs": 3}, metrics={"mAP50": 0.5})
    card = load_card(tmp_path)
    assert card.name == "m" and card.classes == DEFECT_CLASSES
    assert (card.input_width, card.input_height) == (320, 256)
    assert card.extra["training"]["seed_last"] == 99 and card.extra["metrics"]["mAP50"] == 0.5


def test_train_without_the_extra_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data.yaml"
    data.write_text("train: x\n")
    real_import = builtins.__import__

    def no_ultralytics(name: str, *a, **k):
        if name.startswith("ultralytics"):
            raise ImportError("No module named 'ultralytics'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ultralytics)
    with pytest.raises(TrainingUnavailable, match=r"pip install -e '\.\[train\]'"):
        train(data)


def test_train_refuses_a_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        train(tmp_path / "missing.yaml")


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ULTRALYTICS, reason="the train extra (ultralytics) is not installed")
def test_tiny_training_run_exports_a_model_the_runtime_loads(tmp_path: Path) -> None:
    from inspector.pipeline.backends import BatchItem, create_backend
    from inspector.pipeline.preprocess import Letterbox
    from inspector.quality.dataset import export_dataset
    from inspector.quality.training.export import export_onnx

    export_dataset(tmp_path / "ds", 12, seed=0, width=96, height=96, val_fraction=0.25)
    run = train(tmp_path / "ds" / "data.yaml", imgsz=96, epochs=1, batch=4, device="cpu",
                project=tmp_path / "runs", name="tiny", workers=0)
    assert run.best.is_file() or (run.run_dir / "weights" / "last.pt").is_file()
    weights = run.best if run.best.is_file() else run.run_dir / "weights" / "last.pt"
    onnx = export_onnx(weights, tmp_path / "models" / "tiny", name="tiny", imgsz=96,
                       training={"seed_first": 0, "seed_last": 11})
    card = load_card(tmp_path / "models" / "tiny")
    assert onnx.is_file() and card.classes == DEFECT_CLASSES and card.input_width == 96
    be = create_backend("openvino", card, max_batch=2)
    frame = np.zeros((96, 96, 3), np.uint8)
    out = be.infer([BatchItem(frame, "BGR8", Letterbox.fit(96, 96, 96, 96))] * 2)
    assert out.raw.shape[:2] == (2, 4 + len(DEFECT_CLASSES))


SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"


@pytest.mark.skipif(not HAVE_ULTRALYTICS, reason="needs the train extra")
def test_weights_from_the_shipped_onnx_compute_what_the_onnx_computes(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    from inspector.quality.training.train import weights_from_onnx

    pt = weights_from_onnx(SHIPPED / "model.onnx", tmp_path / "w.pt")
    net = YOLO(str(pt)).model.float().eval()
    x = np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32)
    with torch.no_grad():
        ours = net(torch.from_numpy(x))[0].numpy()
    ref = ort.InferenceSession(str(SHIPPED / "model.onnx")).run(None, {"images": x})[0]
    assert ours.shape == ref.shape == (2, 8, 2100)
    # Ultralytics saves weights at half precision: boxes within 2 px of 320, class scores within 0.01
    assert np.abs(ours[:, :4] - ref[:, :4]).max() < 2.0
    assert np.abs(ours[:, 4:] - ref[:, 4:]).max() < 0.01


@pytest.mark.skipif(not HAVE_ULTRALYTICS, reason="needs the train extra")
def test_fine_tuning_a_model_folder_keeps_batchnorm_frozen(tmp_path: Path) -> None:
    import torch
    from ultralytics import YOLO

    from inspector.quality.dataset import export_dataset

    export_dataset(tmp_path / "ds", 8, seed=0, width=320, height=320, val_fraction=0.25)
    run = train(tmp_path / "ds" / "data.yaml", model_cfg=SHIPPED, epochs=1, batch=4, device="cpu",
                project=tmp_path / "runs", name="ft", workers=0, overrides={"lr0": 1e-5, "optimizer": "AdamW"})
    weights = run.best if run.best.is_file() else run.run_dir / "weights" / "last.pt"
    bns = [m for m in YOLO(str(weights)).model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(float(m.running_mean.abs().max()) == 0.0 for m in bns)  # statistics never updated
