"""Anomaly model folders with one or more feature levels: written, read back, checked; a one-level card from
before levels still loads."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.model import load_anomaly_model, write_model
from inspector.pipeline.model_repo import ModelError, dump_toml

LEVELS = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))


def _banks() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (30, 64)).astype(np.float32), rng.normal(0, 1, (12, 112)).astype(np.float32)


def test_two_levels_are_written_and_read_back(tmp_path: Path) -> None:
    banks = _banks()
    write_model(tmp_path / "m", "m", banks, LEVELS, 64, 64, (3.5, 7.25), None, {"threshold": {"rule": "r"}},
                edge_cells=1)
    model = load_anomaly_model(tmp_path / "m")
    assert model.spec == LEVELS and model.raw_threshold == (3.5, 7.25) and model.grid == (8, 8)
    for got, want in zip(model.bank, banks):
        np.testing.assert_array_equal(got, want)
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["levels"]["1"] == {"taps": [10], "grid_stride": 16, "pool": 3, "channels": 112, "rows": 12,
                                   "raw": 7.25}
    assert np.load(tmp_path / "m" / "memory_bank.npy").shape == (42, 112)  # one file: the levels' rows


def test_a_card_whose_rows_do_not_fit_the_bank_is_refused(tmp_path: Path) -> None:
    write_model(tmp_path / "m", "m", _banks(), LEVELS, 64, 64, (3.5, 7.25), None, {})
    path = tmp_path / "m" / "card.toml"
    card = tomllib.loads(path.read_text())
    card["levels"]["1"]["rows"] = 13
    path.write_text(dump_toml(card))
    with pytest.raises(ModelError, match="does not fit the card's levels"):
        load_anomaly_model(tmp_path / "m")


def test_a_one_level_card_from_before_levels_still_loads(tmp_path: Path) -> None:
    bank = _banks()[0][:, :40]
    spec = FeatureSpec((4,), 8, 3)
    write_model(tmp_path / "m", "m", (bank,), (spec,), 64, 64, (2.5,), None, {})
    path = tmp_path / "m" / "card.toml"
    card = tomllib.loads(path.read_text())
    level = card.pop("levels")["0"]
    card["backbone"].update(taps=level["taps"], grid_stride=level["grid_stride"], pool=level["pool"])
    card["threshold"]["raw"] = level["raw"]
    path.write_text(dump_toml(card))
    model = load_anomaly_model(tmp_path / "m")
    assert model.spec == (spec,) and model.raw_threshold == (2.5,)
    np.testing.assert_array_equal(model.bank[0], bank)


def test_a_levels_feature_normalisation_is_written_and_read_back(tmp_path: Path) -> None:
    levels = (FeatureSpec((2, 4), 8, 3, normalise="image"), FeatureSpec((10,), 16, 3))
    write_model(tmp_path / "m", "m", _banks(), levels, 64, 64, (3.5, 7.25), None, {})
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["levels"]["0"]["normalise"] == "image" and "normalise" not in card["levels"]["1"]
    assert load_anomaly_model(tmp_path / "m").spec == levels
