"""Recipe versions kept, rollback, and the promotion gate on a recipe's detector (save and switch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.config import parse_config
from inspector.quality.gate import GateRefused
from inspector.recipes.recipe import load_recipe
from inspector.recipes.versions import (
    RecipeVersionError,
    read_history,
    recipe_versions,
    rollback_recipe,
    save_recipe_version,
    set_version,
)
from inspector.station import Station, StationError
from tests.inspector.line.test_line_station import line_config
from tests.inspector.recipes.helpers import passing_gate, retrained_copy


def _with_model(folder: Path, file: str, model: str, scratch: float = 0.5) -> str:
    text = (folder / file).read_text().replace('name = "defect-yolo11p-320"', f'name = "{model}"')
    return text.replace('name = "defect-copy"', f'name = "{model}"').replace("scratch = 0.5", f"scratch = {scratch}")


def test_set_version_changes_only_the_recipe_tables_version_and_keeps_comments() -> None:
    text = '# housing\n[recipe]\nname = "a"  # shown\nnumber = 1\nversion = 2  # bumped on save\n[model]\nname = "m"\n'
    assert set_version(text, 7) == text.replace("version = 2 ", "version = 7 ")
    bare = '[recipe]\nname = "a"\nnumber = 1\n[x]\nversion = 1\n'
    assert set_version(bare, 3) == '[recipe]\nversion = 3\nname = "a"\nnumber = 1\n[x]\nversion = 1\n'


def test_saving_keeps_every_version_and_rollback_brings_the_previous_one_back(recipes: Path) -> None:
    v2 = (recipes / "a.toml").read_bytes()
    saved = save_recipe_version(recipes, _with_model(recipes, "a.toml", "defect-yolo11p-320", scratch=0.6),
                                by="eve", reason="scratch calls on the new lot")
    assert saved.label == "housing-a v3" and saved.path == str(recipes / "a.toml")
    assert load_recipe(recipes / "a.toml").verdict.class_thresholds == {"scratch": 0.6}
    kept = recipe_versions(recipes, "housing-a")
    assert [(v.version, v.active) for v in kept] == [(2, False), (3, True)]
    assert kept[0].path.read_bytes() == v2  # the version before the first save, byte for byte
    assert kept[1].path.read_bytes() == (recipes / "a.toml").read_bytes()
    assert [e.action for e in read_history(recipes, "housing-a")] == ["adopt", "save"]
    assert read_history(recipes, "housing-a")[-1].reason == "scratch calls on the new lot"

    back = rollback_recipe(recipes, "housing-a", by="eve", reason="new lot gone")
    assert back.label == "housing-a v2"
    assert (recipes / "a.toml").read_bytes() == v2
    last = read_history(recipes, "housing-a")[-1]
    assert (last.action, last.version, last.from_version, last.by, last.reason) == ("rollback", 2, 3, "eve",
                                                                                    "new lot gone")
    assert rollback_recipe(recipes, "housing-a", by="eve", to=3).label == "housing-a v3"
    # the next save follows the highest version kept, never reuses a number
    assert save_recipe_version(recipes, (recipes / "a.toml").read_text(), by="eve").label == "housing-a v4"
    with pytest.raises(RecipeVersionError, match=r"no kept version v9 \(kept: v2, v3, v4\)"):
        rollback_recipe(recipes, "housing-a", by="eve", to=9)


def test_a_new_detector_needs_a_passing_gate_against_the_recipes_previous_one(recipes: Path) -> None:
    models = recipes.parent / "models"
    retrained_copy(models, "defect-new")
    before = (recipes / "a.toml").read_bytes()
    with pytest.raises(GateRefused) as err:
        save_recipe_version(recipes, _with_model(recipes, "a.toml", "defect-new"), by="eve")
    assert (err.value.recipe, err.value.model) == ("housing-a", "defect-new")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("recipe housing-a: model defect-new: its card holds no promotion gate")
    assert "against defect-yolo11p-320" in msg and "inspector model gate --candidate defect-new" in msg
    assert (recipes / "a.toml").read_bytes() == before
    assert not (recipes / "versions" / "housing-a" / "v3.toml").exists()

    passing_gate(models / "defect-new", "defect-yolo11p-320")
    saved = save_recipe_version(recipes, _with_model(recipes, "a.toml", "defect-new"), by="eve")
    assert saved.model.name == "defect-new" and saved.recipe.version == 3
    assert read_history(recipes, "housing-a")[-1].gate.startswith("gate passed against defect-yolo11p-320")


def test_an_admin_override_of_the_gate_is_recorded_with_both_models_and_the_reason(recipes: Path) -> None:
    retrained_copy(recipes.parent / "models", "defect-new")
    save_recipe_version(recipes, _with_model(recipes, "a.toml", "defect-new"), by="root", override_gate_by="root",
                        reason="trial on line 7")
    e = read_history(recipes, "housing-a")[-1]
    assert (e.action, e.by, e.model, e.replaced, e.reason) == ("save", "root", "defect-new", "defect-yolo11p-320",
                                                               "trial on line 7")
    assert e.gate.startswith("gate overridden by root: model defect-new: its card holds no promotion gate")
    assert e.at and e.model_sha256 != e.replaced_sha256


def test_a_switch_to_a_recipe_whose_new_detector_has_no_gate_is_refused_and_the_old_recipe_runs_on(
        recipes: Path) -> None:
    retrained_copy(recipes.parent / "models", "defect-new")
    st = Station(parse_config(line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    try:
        assert st.select_recipe(2) == "housing-b v2"  # its first selection: adopted into its history
        assert st.select_recipe(1) == "housing-a v2"
        # the file edited by hand: another detector, no gate against the one housing-b ran
        (recipes / "b.toml").write_text(_with_model(recipes, "b.toml", "defect-new"))
        with pytest.raises(GateRefused) as err:  # typed: the control API offers the override
            st.select_recipe(2)
        msg = str(err.value)
        assert "\n" not in msg
        assert "recipe housing-b v2: model defect-new: its card holds no promotion gate ([gate]) against defect-copy" \
            in msg
        assert st.recipes.current.label == "housing-a v2"

        # an admin overrides on the switch path: recorded, and the recipe runs its new detector from then on
        assert st.recipes.select(2, override_gate_by="root", reason="supplier trial").label == "housing-b v2"
        e = read_history(recipes, "housing-b")[-1]
        assert (e.action, e.by, e.model, e.replaced, e.reason) == ("gate_override", "root", "defect-new",
                                                                   "defect-copy", "supplier trial")
        assert st.recipes.wait_retired() is None and st.card.name == "defect-new"
        assert st.select_recipe(1) == "housing-a v2"
        assert st.select_recipe(2) == "housing-b v2"  # accepted once: no override needed again
    finally:
        st.stop()


def test_a_station_whose_configured_recipe_the_gate_refuses_does_not_start_one_line(recipes: Path) -> None:
    retrained_copy(recipes.parent / "models", "defect-new")
    config = line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 2\n'
    Station(parse_config(config), db_url="none").stop()  # housing-b's first selection: adopted into its history
    (recipes / "b.toml").write_text(_with_model(recipes, "b.toml", "defect-new"))  # no gate against defect-copy
    with pytest.raises(StationError) as err:
        Station(parse_config(config), db_url="none")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("recipe housing-b v2: model defect-new: its card holds no promotion gate ([gate]) against "
                          "defect-copy")


def test_a_rollback_is_what_the_next_selection_runs(recipes: Path) -> None:
    st = Station(parse_config(line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    try:
        save_recipe_version(recipes, _with_model(recipes, "b.toml", "defect-copy", scratch=0.7), by="eve")
        assert st.select_recipe(2) == "housing-b v3"
        rollback_recipe(recipes, "housing-b", by="eve")
        assert st.select_recipe(2) == "housing-b v2"
    finally:
        st.stop()


def test_history_lines_are_json_with_who_when_and_what(recipes: Path) -> None:
    save_recipe_version(recipes, (recipes / "a.toml").read_text(), by="eve")
    lines = (recipes / "versions" / "housing-a" / "history.jsonl").read_text().splitlines()
    rows = [json.loads(ln) for ln in lines]
    assert {"at", "by", "action", "version", "model", "model_sha256", "gate", "replaced", "reason"} <= set(rows[-1])
    (recipes / "versions" / "housing-a" / "history.jsonl").write_text(lines[0] + "\nnot json\n")
    with pytest.raises(RecipeVersionError, match=r"history.jsonl:2: not a recipe history line"):
        read_history(recipes, "housing-a")
