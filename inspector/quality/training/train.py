"""Train a defect detector with Ultralytics (the ``train`` extra).

This is the only module that imports Ultralytics/torch, and only inside `train`,
so the engine never pulls them in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The architecture of the shipped model (YOLO11 at width 0.1875).
DEFAULT_MODEL_CFG = Path(__file__).with_name("yolo11-defect.yaml")


class TrainingUnavailable(RuntimeError):
    """Raised when the ``train`` extra (Ultralytics) is not installed."""


@dataclass(frozen=True)
class TrainingRun:
    """Where a finished training run left its weights."""

    best: Path
    run_dir: Path
    device: str


def pick_device(requested: str | None) -> str:
    """``cpu`` unless a CUDA device is present (or the caller names one)."""
    if requested:
        return requested
    try:
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch comes with ultralytics
        return "cpu"


def train(
    data: Path,
    *,
    model_cfg: Path | str = DEFAULT_MODEL_CFG,
    imgsz: int = 320,
    epochs: int = 60,
    hours: float | None = None,
    batch: int = 32,
    device: str | None = None,
    project: Path = Path("runs"),
    name: str = "defect",
    seed: int = 0,
    workers: int = 2,
    overrides: dict[str, object] | None = None,
) -> TrainingRun:
    """Train from scratch (or fine-tune from a ``.pt``) on a YOLO dataset.

    Args:
        data: The dataset's ``data.yaml``.
        model_cfg: Architecture yaml (from scratch), a ``.pt`` to fine-tune, or a model folder (or its
            ``.onnx``) to fine-tune from its ONNX weights (`weights_from_onnx`).
        imgsz: Square training size; use the size the station will run.
        epochs: Epochs (ignored when ``hours`` is set).
        hours: Wall-clock budget; Ultralytics fits the LR schedule into it.
        batch: Batch size.
        device: ``cpu``, ``0``, ``0,1``; default: first GPU if any, else CPU.
        project: Folder for runs.
        name: Run name.
        seed: Training seed (recorded in the model card).
        workers: Data loader workers.
        overrides: Further Ultralytics train arguments (e.g. ``lr0``, ``optimizer``,
            ``close_mosaic`` for a fine-tune).

    Raises:
        TrainingUnavailable: Ultralytics is not installed.
        FileNotFoundError: ``data`` does not exist.
    """
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"dataset yaml not found: {data}")
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise TrainingUnavailable(
            "training needs the train extra: pip install -e '.[train]'"
        ) from exc
    dev = pick_device(device)
    freeze_bn = Path(str(model_cfg)).suffix == ".onnx" or (Path(str(model_cfg)) / "card.toml").is_file()
    if freeze_bn:  # a shipped model keeps no .pt: its ONNX weights, BatchNorm fused (see weights_from_onnx)
        pt = Path(project).resolve() / name / "from_onnx.pt"
        weights_from_onnx(_onnx_of(Path(str(model_cfg))), pt)
        model_cfg = pt
    model = YOLO(str(model_cfg))
    if freeze_bn:
        model.add_callback("on_train_batch_start", _freeze_batchnorm)
    kwargs: dict[str, object] = {
        "data": str(data),
        "imgsz": imgsz,
        "epochs": epochs,
        "batch": batch,
        "device": dev,
        "workers": workers,
        "project": str(Path(project).resolve()),
        "name": name,
        "exist_ok": True,
        "seed": seed,
        "plots": False,  # plotting fetches a font from the network
        "amp": dev != "cpu",
        "cache": "ram",
        # industrial parts: flips are fine, strong scale changes are not
        "fliplr": 0.5,
        "flipud": 0.5,
        "scale": 0.25,
        "degrees": 0.0,
        "verbose": False,
    }
    if hours:
        kwargs["time"] = hours
    if freeze_bn:  # warm-up's high bias learning rate would undo a trained model in its first steps
        kwargs["warmup_epochs"] = 0
    kwargs.update(overrides or {})
    log.info("training %s on %s (device %s, imgsz %d)", model_cfg, data, dev, imgsz)
    model.train(**kwargs)
    run_dir = Path(project).resolve() / name
    best = run_dir / "weights" / "best.pt"
    return TrainingRun(best=best, run_dir=run_dir, device=dev)


def _onnx_of(model: Path) -> Path:
    """The ONNX file of a model folder (its card's ``file``) or the file itself."""
    if model.suffix == ".onnx":
        return model
    import tomllib

    return model / str(tomllib.loads((model / "card.toml").read_text()).get("file", "model.onnx"))


def _freeze_batchnorm(trainer: object) -> None:
    """Keep every BatchNorm in eval mode: its statistics are the identity that `weights_from_onnx` set."""
    import torch

    for m in trainer.model.modules():  # type: ignore[attr-defined]
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def weights_from_onnx(onnx_path: Path, out: Path, model_cfg: Path = DEFAULT_MODEL_CFG) -> Path:
    """Ultralytics ``.pt`` weights of ``model_cfg`` taken from an ONNX export of it, to fine-tune a shipped model.

    The export fused each BatchNorm into its convolution (weight and bias). The convolution takes
    the fused weight; its BatchNorm becomes the identity carrying the fused bias (mean 0, variance
    1 - eps, scale 1, shift = bias), so the network computes what the ONNX computes. Training must
    then keep those BatchNorms in eval mode (`train` does for a model folder), else batch statistics
    would replace the identity. ``onnx`` comes with the train extra's toolchain.

    Raises:
        ValueError: An initializer the architecture does not have, or one it lacks (another architecture).
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics import YOLO
    from ultralytics.nn.modules.conv import Conv

    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
            for i in onnx.load(str(onnx_path)).graph.initializer}
    yolo = YOLO(str(model_cfg))
    used: set[str] = set()
    with torch.no_grad():
        for name, mod in yolo.model.named_modules():
            if isinstance(mod, Conv):
                w, b = f"{name}.conv.weight", f"{name}.conv.bias"
                if w not in init or b not in init:
                    raise ValueError(f"{onnx_path}: no {w}/{b}: not an export of {model_cfg}")
                mod.conv.weight.copy_(init[w])
                mod.bn.weight.fill_(1.0)
                mod.bn.bias.copy_(init[b])
                mod.bn.running_mean.zero_()
                mod.bn.running_var.fill_(1.0 - mod.bn.eps)
                used |= {w, b}
            elif isinstance(mod, torch.nn.Conv2d) and f"{name}.weight" in init:
                mod.weight.copy_(init[f"{name}.weight"])
                used.add(f"{name}.weight")
                if mod.bias is not None:
                    mod.bias.copy_(init[f"{name}.bias"])
                    used.add(f"{name}.bias")
    if set(init) - used:
        raise ValueError(f"{onnx_path}: weights {sorted(set(init) - used)[:3]} have no place in {model_cfg}")
    out.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(out))
    return out
