"""Recipes that cannot work on this station are refused at load or selection, with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import parse_config
from inspector.recipes.switch import RecipeError
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config


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
