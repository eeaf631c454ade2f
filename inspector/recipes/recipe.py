"""A product recipe: one versioned TOML file (model, verdict rules, camera settings, the line's budget).

```toml
[recipe]
name = "housing-a"          # shown everywhere, stored with every part
number = 1                  # what a PLC selects (Modbus select_recipe)
version = 3
product_id = "HSG-A"        # OPC UA ProductId / RecipeIdExternal, optional
external_id = "HSG-A-v3"

[model]
name = "defect-yolo11p-320"

[line]
budget_ms = 1000            # optional: the line's own when left out

[verdict]                   # every camera, unless the camera says otherwise
class_thresholds = { scratch = 0.5 }

[cameras.line-cam1]
settings = { ExposureTime = 4000.0 }
verdict = { default_threshold = 0.3 }

[cameras.line-cam2]         # a product taught from good parts only: the anomaly model decides alone
detector = false
anomaly = { model = "housing-a-cam2", threshold = 1.1, roi = [0, 40, 320, 280], mask = "cam2-mask.png" }
```

A camera's ``anomaly`` (model, threshold override, ROI, mask image relative to the recipe's folder) replaces
the station config's ``[cameras.anomaly]`` while the recipe is in force; ``anomaly = false`` turns it off;
left out, the config's stands. ``detector`` likewise (left out: the config's).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspector.config import AnomalyConfig, ConfigError, StationConfig, VerdictConfig, format_errors
from inspector.pipeline.model_repo import dump_toml

_NAME = r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RecipeMeta(_Strict):
    name: Annotated[str, Field(pattern=f"^{_NAME}$")]
    number: int = Field(ge=1, le=65535)
    version: int = Field(1, ge=1)
    product_id: str = Field("", max_length=128)
    external_id: str = Field("", max_length=128)


class RecipeModel(_Strict):
    name: str = Field(min_length=1)


class RecipeLine(_Strict):
    budget_ms: float | None = Field(None, ge=1.0, le=600_000.0)


class RecipeCamera(_Strict):
    settings: dict[str, int | float | str | bool] = Field(default_factory=dict)
    verdict: VerdictConfig | None = None
    #: the camera's anomaly model under this recipe; False: none; None: the station config's
    anomaly: AnomalyConfig | Literal[False] | None = None
    #: whether the detector's boxes decide the verdict; None: the station config's
    detector: bool | None = None


class Recipe(_Strict):
    recipe: RecipeMeta
    model: RecipeModel
    line: RecipeLine = Field(default_factory=RecipeLine)
    verdict: VerdictConfig | None = None
    cameras: dict[str, RecipeCamera] = Field(default_factory=dict)
    path: str = ""

    @property
    def label(self) -> str:
        """``housing-a v3``: how parts and the audit trail name it."""
        return f"{self.recipe.name} v{self.recipe.version}"

    def verdict_for(self, camera_id: str) -> VerdictConfig | None:
        cam = self.cameras.get(camera_id)
        return cam.verdict if cam is not None and cam.verdict is not None else self.verdict


def load_recipe(path: Path) -> Recipe:
    """Read and check a recipe file.

    Raises:
        ConfigError: One line per problem, naming the file and the field.
    """
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        return Recipe.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_errors(str(path), exc)) from None


def load_recipes(folder: Path) -> list[Recipe]:
    """Every ``*.toml`` recipe of ``folder``, by number; two with one number or name are refused."""
    recipes = [load_recipe(p) for p in sorted(Path(folder).glob("*.toml"))]
    seen: dict[object, str] = {}
    for r in recipes:
        for key in (("number", r.recipe.number), ("name", r.recipe.name)):
            if key in seen:
                raise ConfigError(f"{r.path}: recipe {key[0]} {key[1]!r} is also used by {seen[key]}")
            seen[key] = r.path
    return sorted(recipes, key=lambda r: r.recipe.number)


def check_budgets(recipes: list[Recipe], config: StationConfig) -> None:
    """Refuse a recipe whose budget no part of this line can meet: it ends before the part reaches the
    last camera (every part NG "incomplete") or after the part passed the reject gate.

    Raises:
        ConfigError: One line naming the recipe file and the camera or gate.
    """
    if config.line.mode != "triggered":
        return
    for r in recipes:
        if r.line.budget_ms is not None:
            problem = config.budget_problem(r.line.budget_ms)
            if problem:
                raise ConfigError(f"{r.path}: line.budget_ms: {problem}")


def find_recipe(recipes: list[Recipe], key: int | str) -> Recipe:
    """By number, name, product id or external id.

    Raises:
        LookupError: No such recipe (the message lists what exists).
    """
    for r in recipes:
        m = r.recipe
        if key == m.number or (isinstance(key, str) and key in (m.name, m.product_id, m.external_id, str(m.number))):
            return r
    known = ", ".join(f"{r.recipe.number} {r.recipe.name}" for r in recipes) or "none"
    raise LookupError(f"no recipe {key!r} (recipes: {known})")





def with_anomaly(recipe: Recipe, anomaly: Mapping[str, AnomalyConfig],
                 detector: Mapping[str, bool] | None = None) -> str:
    """``recipe``'s file as TOML text with new anomaly models per camera (``anomaly``, ``detector`` replaced).

    The text is what `inspector.recipes.versions.save_recipe_version` saves as the recipe's next version
    (which sets its ``version``). The file is rewritten from its tables: comments do not carry over.

    Raises:
        ConfigError: The recipe has no file, or it cannot be read (one line).
    """
    if not recipe.path:
        raise ConfigError(f"recipe {recipe.label}: has no file to save a new version of")
    path = Path(recipe.path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    cameras = raw.setdefault("cameras", {})
    for cid, spec in anomaly.items():
        cam = cameras.setdefault(cid, {})
        cam["anomaly"] = spec.model_dump(exclude_none=True)
        if detector is not None and cid in detector:
            cam["detector"] = detector[cid]
    # a camera id with a '.' is one quoted key in a table header, not two
    raw["cameras"] = {(k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else f'"{k}"'): v for k, v in cameras.items()}
    return dump_toml(raw)
