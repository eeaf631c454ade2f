"""Recipes that cannot work on this station are refused at load or selection, with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import parse_config
from inspector.recipes.switch import RecipeError
from inspector.station import Station, StationError
from tests.inspector.line.test_line_station import line_config
from tests.inspector.recipes.helpers import RECIPE


def _budget(recipes: Path, budget_ms: float) -> Path:
    path = recipes / "b.toml"
    path.write_text(RECIPE.format(name="housing-b", number=2, model="defect-copy", budget=budget_ms, scratch=0.6,
                                  exposure=6000.0))
    return path


def test_a_recipe_whose_budget_ends_before_the_last_camera_fires_is_refused_at_load(recipes: Path) -> None:
    """cam3 sits 100 mm after the photo-eye on a 1000 mm/s belt: it fires 100 ms after the trigger, so a
    100 ms budget would decide every part before its last image (100% NG "incomplete")."""
    path = _budget(recipes, 100)
    with pytest.raises(StationError) as err:
        Station(parse_config(line_config() + f'[recipes]\ndir = "{recipes}"\n'), db_url="none")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: line.budget_ms: 100 ms is over before the part reaches cam3")
    assert "cam3 at 100 mm fires 100 ms after the photo-eye" in msg


def test_a_recipe_whose_budget_ends_after_the_reject_gate_is_refused_at_load(recipes: Path) -> None:
    (recipes / "a.toml").unlink()
    path = _budget(recipes, 1400)
    text = line_config().replace("budget_ms = 1500", "budget_ms = 400\nreject_mm = 500")
    with pytest.raises(StationError, match=rf"^{path}: line\.budget_ms: 1400 ms is over after the part passes the "
                                           r"reject gate \(500 mm: 500 ms\)$"):
        Station(parse_config(text + f'[recipes]\ndir = "{recipes}"\n'), db_url="none")


def test_run_refuses_a_recipe_with_a_short_budget_with_one_line_and_exit_2(recipes: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspector.cli import app

    _budget(recipes, 50)
    cfg = tmp_path / "station.toml"
    cfg.write_text(line_config() + f'[recipes]\ndir = "{recipes}"\n')
    out = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", "none", "--duration", "1"])
    assert out.exit_code == 2, out.output
    line = out.output.strip()
    assert "\n" not in line and "b.toml: line.budget_ms: 50 ms is over before the part reaches cam2, cam3" in line


def test_a_recipe_whose_model_card_lists_other_classes_is_refused(recipes: Path) -> None:
    """The copy's card lists 1 class for the 4-class model (its sha256 still matches the file)."""
    card = recipes.parent / "models" / "defect-copy" / "card.toml"
    card.write_text(card.read_text().replace('classes = ["scratch", "dent", "crack", "contamination"]',
                                             'classes = ["scratch"]'))
    st = Station(parse_config(line_config() + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    try:
        with pytest.raises(RecipeError) as err:
            st.recipes.select(2)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("recipe housing-b v2: model defect-copy: ")
        assert f"{card}: classes lists 1, but model.onnx detects 4" in msg
        assert st.recipes.current.recipe.name == "housing-a"
    finally:
        st.stop()
