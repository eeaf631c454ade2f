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
        model_cfg: Architecture yaml (from scratch) or a ``.pt`` to fine-tune.
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
    model = YOLO(str(model_cfg))
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
    kwargs.update(overrides or {})
    log.info("training %s on %s (device %s, imgsz %d)", model_cfg, data, dev, imgsz)
    model.train(**kwargs)
    run_dir = Path(project).resolve() / name
    best = run_dir / "weights" / "best.pt"
    return TrainingRun(best=best, run_dir=run_dir, device=dev)
