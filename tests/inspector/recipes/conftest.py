"""Fixtures of the recipe tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inspector.recipes.helpers import write_recipes


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two recipes on two models (the shipped one and a renamed copy of it)."""
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    return write_recipes(tmp_path)
