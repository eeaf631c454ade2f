"""Recipe folders for tests: two recipes on two models (the shipped one and a renamed copy of it)."""

from __future__ import annotations

import shutil
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"

RECIPE = """
[recipe]
name = "{name}"
number = {number}
version = 2
product_id = "P-{number}"
[model]
name = "{model}"
[line]
budget_ms = {budget}
[verdict]
class_thresholds = {{ scratch = {scratch} }}
[cameras.cam1]
settings = {{ ExposureTime = {exposure} }}
"""


def copy_model(models: Path, name: str) -> Path:
    """A copy of the shipped model folder under ``models/name``, its card renamed (same files, same sha256)."""
    copy = models / name
    shutil.copytree(SHIPPED, copy)
    card = copy / "card.toml"
    card.write_text(card.read_text().replace('name = "defect-yolo11p-320"', f'name = "{name}"', 1))
    return copy


def write_recipes(tmp_path: Path) -> Path:
    """``tmp_path/recipes`` with recipe 1 (housing-a, the shipped model) and 2 (housing-b, ``defect-copy``);
    the caller points INSPECTOR_MODELS_DIR at ``tmp_path/models``."""
    copy_model(tmp_path / "models", "defect-copy")
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a.toml").write_text(RECIPE.format(name="housing-a", number=1, model="defect-yolo11p-320",
                                                 budget=1500, scratch=0.5, exposure=4000.0))
    (folder / "b.toml").write_text(RECIPE.format(name="housing-b", number=2, model="defect-copy",
                                                 budget=1400, scratch=0.6, exposure=6000.0))
    return folder


def retrained_copy(models: Path, name: str) -> Path:
    """A copy of the shipped model under ``models/name`` whose model file differs (another sha256, as a
    retrained model would): one unknown protobuf field appended, which ONNX readers skip."""
    import hashlib

    copy = copy_model(models, name)
    onnx = copy / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + bytes([0xC2, 0x3E, 0x01, 0x01]))  # field 1000, length 1
    card = copy / "card.toml"
    old = hashlib.sha256((SHIPPED / "model.onnx").read_bytes()).hexdigest()
    card.write_text(card.read_text().replace(old, hashlib.sha256(onnx.read_bytes()).hexdigest(), 1))
    return copy


def passing_gate(candidate: Path, current: str) -> None:
    """Write a passing ``[gate]`` into ``candidate``'s card against model ``current`` (figures as a gate run writes)."""
    from inspector.pipeline.model_repo import load_card
    from inspector.quality.gate import GateLimits, gate_table, write_gate

    figures = {"threshold": 0.25, "mAP50": 0.98, "mAP50_95": 0.7, "escape_rate": 0.0, "false_reject_rate": 0.0,
               "escapes": 0, "false_rejects": 0, "images": 20}
    table = gate_table(load_card(candidate), load_card(current), figures, figures, GateLimits(),
                       candidate / "held-out.yaml", "test", "0" * 64)
    write_gate(candidate, table)
