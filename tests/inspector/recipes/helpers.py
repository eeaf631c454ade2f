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
