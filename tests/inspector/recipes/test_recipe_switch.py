"""Product changeover at a part boundary: two models switched under load, no part lost or mixed."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from inspector.config import ConfigError, parse_config
from inspector.pipeline.results import PartResult
from inspector.recipes.recipe import load_recipe, load_recipes
from inspector.station import Station, StationError
from tests.inspector.line.test_line_station import line_config
from tests.inspector.recipes.helpers import RECIPE


def test_switching_models_under_load_loses_and_mixes_no_part(recipes: Path) -> None:
    text = line_config() + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'
    st = Station(parse_config(text), db_url="none")
    parts: list[PartResult] = []
    st.events.part_ready.connect(parts.append)
    labels = {"housing-a v2": "defect-yolo11p-320", "housing-b v2": "defect-copy"}
    with st:
        for key in (2, "housing-a", 2, 1, "P-2"):
            time.sleep(0.9)
            assert st.select_recipe(key) in labels
        time.sleep(1.0)
    st.recipes.wait_retired()
    rep = st.report()["parts"]
    assert rep["verdicts"] == rep["triggered"] == len(parts) >= 25
    assert rep["incomplete"] == 0
    seen = set()
    for p in parts:
        assert p.recipe in labels, p.recipe
        models = {f.provenance.model_name for f in p.frames}
        assert models == {labels[p.recipe]}, f"part {p.part_id} ({p.recipe}) inspected by {models}"
        assert p.budget_ms == (1500 if p.recipe.startswith("housing-a") else 1400)
        seen.add(p.recipe)
    assert seen == set(labels)
    # parts come in trigger order; the recipe changes only at boundaries (no flip-flop within one switch)
    changes = sum(1 for a, b in itertools.pairwise(parts) if a.recipe != b.recipe)
    assert changes <= 5
    assert st.recipes.switches == 6 and st.recipe_number == 2
    assert st.cameras["cam1"].features.get("ExposureTime") == 6000.0  # the last recipe's camera settings


def test_recipe_files_are_checked_and_unknown_recipes_named(recipes: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RECIPE.format(name="x", number=0, model="m", budget=10, scratch=2.0, exposure=1.0))
    with pytest.raises(ConfigError) as err:
        load_recipe(bad)
    lines = str(err.value).splitlines()
    assert any("recipe.number" in ln for ln in lines) and any("scratch" in ln for ln in lines)
    (recipes / "dup.toml").write_text(RECIPE.format(name="dup", number=1, model="m", budget=10, scratch=0.5,
                                                    exposure=1.0))
    with pytest.raises(ConfigError, match="number 1"):
        load_recipes(recipes)
    (recipes / "dup.toml").unlink()
    st = Station(parse_config(line_config() + f'[recipes]\ndir = "{recipes}"\n'), db_url="none")
    try:
        with pytest.raises(StationError, match="no recipe 7"):
            st.select_recipe(7)
    finally:
        st.stop()


def test_a_recipe_whose_model_fails_its_check_keeps_the_old_one(recipes: Path, tmp_path: Path) -> None:
    models = Path(str(recipes.parent / "models"))
    (models / "defect-copy" / "model.onnx").write_bytes(b"not the model")
    st = Station(parse_config(line_config() + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    try:
        with pytest.raises(StationError, match="housing-b v2: model defect-copy"):
            st.select_recipe(2)
        assert st.recipes.current.recipe.name == "housing-a"
    finally:
        st.stop()


def test_run_starts_with_the_recipe_named_on_the_command_line(recipes: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from inspector.cli import app

    cfg = tmp_path / "station.toml"
    cfg.write_text(line_config() + f'[recipes]\ndir = "{recipes}"\n')
    report = tmp_path / "r.json"
    out = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", "none", "--quiet",
                                   "--duration", "1.5", "--recipe", "housing-b", "--report", str(report)])
    assert out.exit_code == 0, out.output
    rep = json.loads(report.read_text())
    assert rep["recipe"]["current"] == "housing-b v2"
    out = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", "none", "--duration", "1",
                                   "--recipe", "9"])
    assert out.exit_code == 2 and "no recipe 9" in out.output


def test_a_switch_brings_the_new_models_class_thresholds(recipes: Path) -> None:
    """The per-class thresholds calibrated for a model live in its card: a recipe that selects another model
    judges with that card's, its own ``[verdict]`` table winning per class; switching back drops them."""
    import tomllib

    from inspector.pipeline.model_repo import dump_toml

    card_path = recipes.parent / "models" / "defect-copy" / "card.toml"
    card = tomllib.loads(card_path.read_text())
    card["metrics"]["class_thresholds"] = {"scratch": 0.45, "dent": 0.45, "crack": 0.3}
    card_path.write_text(dump_toml(card))
    st = Station(parse_config(line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    with st:
        st.recipes.wait_retired()
        assert {cid: lane.rules.class_thresholds for cid, lane in st.lanes.items()} == {
            "cam1": {"scratch": 0.5}, "cam2": {"scratch": 0.5}}
        st.select_recipe(2)  # defect-copy's card; the recipe's own scratch = 0.6 wins over the card's 0.45
        st.recipes.wait_retired()
        for lane in st.lanes.values():
            assert lane.rules.class_thresholds == {"scratch": 0.6, "dent": 0.45, "crack": 0.3}
            assert lane.rules.default_threshold == 0.25 and ("dent", 0.45) in lane.provenance.thresholds
        st.select_recipe(1)
        st.recipes.wait_retired()
        assert all(lane.rules.class_thresholds == {"scratch": 0.5} for lane in st.lanes.values())
