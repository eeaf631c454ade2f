"""An aligned part's appearance level: its whole look as a subspace of the good parts' block means, so that a print whose
grey a good part can have, but not beside the rest of the part, stands out."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.anomaly import teach as teaching
from inspector.anomaly.alignment import seen_cells
from inspector.anomaly.appearance import APPEARANCE_RULE, block_means, kept_components
from inspector.anomaly.appearance import teach as teach_appearance
from inspector.anomaly.model import APPEARANCE_FILE, load_anomaly_model
from inspector.pipeline.model_repo import ModelError, dump_toml

LOGO, TEXT = (slice(8, 24), slice(8, 24)), (slice(40, 56), slice(8, 56))


def _labels(rng: np.random.Generator, n: int, logo_ink: float = 90.0) -> np.ndarray:
    """``n`` grey 64 x 64 labels: a logo and a line of text printed on the paper at one ink density per label (the
    logo in ``logo_ink``), under one lamp gain per label, with sensor noise."""
    out = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        paper, density, gain = 215.0, rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.1)
        img = np.full((64, 64), paper, np.float32)
        img[LOGO] = paper * (1 - density) + logo_ink * density
        img[TEXT] = paper * (1 - density) + 20.0 * density
        img = img * gain + rng.normal(0, 2.0, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return out


def test_a_logo_in_another_ink_is_normal_in_each_cell_and_not_beside_the_rest_of_the_label() -> None:
    rng = np.random.default_rng(3)
    good = _labels(rng, 80)
    blocks = block_means(good, 8, 1)
    level, cv_scores = teach_appearance(blocks, 8, (1, 1, 7, 7))
    shifted = _labels(rng, 20, logo_ink=100.0)  # the ink a good label's logo shows at a lighter density
    fresh = _labels(rng, 20)
    # each logo cell of each shifted label lies inside the good labels' own range for that cell: no per-cell model
    # (the tone level's per position, a patch's nearest good patch) can tell it from a good one
    logo_cells = block_means(shifted, 8, 1)[:, 1:3, 1:3, 0]
    low, high = blocks[:, 1:3, 1:3, 0].min(axis=0), blocks[:, 1:3, 1:3, 0].max(axis=0)
    inside = (logo_cells >= low) & (logo_cells <= high)
    assert inside.all(axis=(1, 2)).sum() >= 14, inside.all(axis=(1, 2))
    # beside the text printed at the same density, it is not: the appearance level calls every one of them
    threshold = float(cv_scores.max())
    fresh_scores = level.scaled(fresh).reshape(20, -1).max(axis=1)
    shifted_maps = level.scaled(shifted)
    assert float(fresh_scores.max()) < 1.3 * threshold
    assert float(shifted_maps.reshape(20, -1).max(axis=1).min()) > 5.0 * threshold
    # and where it is: the worst cell on or next to the logo
    for m in shifted_maps:
        r, c = np.unravel_index(int(m.argmax()), m.shape)
        assert r <= 3 and c <= 3, (r, c)
    # the lamp and the paper are the good labels' own factors: a brighter lamp is no anomaly
    brighter = np.clip(fresh.astype(np.float32) * 1.05, 0, 255).astype(np.uint8)
    assert float(level.scaled(brighter).max()) < 1.3 * threshold


def _label_parts(folder: Path, n: int) -> np.ndarray:
    from camera.products import render_product

    folder.mkdir()
    frames = np.stack([render_product("label", seed, 96, 96).image for seed in range(n)])
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return frames


def test_a_parts_model_scores_its_appearance_beside_the_graph_and_reads_it_back_checked(tmp_path: Path) -> None:
    frames = _label_parts(tmp_path / "label", 12)
    teaching.teach([tmp_path / "label"], tmp_path / "m", width=96, height=96)
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    table = card["appearance"]
    assert table["file"] == APPEARANCE_FILE and table["components"] == kept_components(12, 32) == 2
    assert table["cells"] == [2, 2, 10, 10] and table["rule"].startswith(APPEARANCE_RULE.split("{")[0])
    assert "appearance level" in card["threshold"]["level_normalisation"]
    model = load_anomaly_model(tmp_path / "m")
    level = model.appearance
    assert level is not None and level.basis.shape == (2, 8 * 8 * 3) and level.scale.shape == (8, 8)
    # the scorer's image score: the larger of the model without it and its appearance level's, on the aligned frames
    # where the camera saw the part, the edge cells left out
    scorer = teaching.scorer_for(model)
    assert scorer.appearance is not None
    without = teaching.AnomalyScorer.for_model(model.__class__(**{**model.__dict__, "appearance": None}))
    aligned, matrices = model.alignment.warp(frames)  # type: ignore[union-attr]
    own = level.maps(aligned) * seen_cells(matrices, 96, 96, 8)
    expected = np.maximum(without.score(frames).scores, own[:, 2:10, 2:10].reshape(12, -1).max(axis=1))
    np.testing.assert_allclose(scorer.score(frames).scores, expected, rtol=1e-5)
    assert float(own.max()) > 0.0

    path, file = tmp_path / "m" / "card.toml", tmp_path / "m" / APPEARANCE_FILE
    packed = np.load(file)
    np.save(file, packed * 1.01)
    with pytest.raises(ModelError, match="appearance.npy does not match its card"):
        load_anomaly_model(tmp_path / "m")
    np.save(file, packed[:-1])
    with pytest.raises(ModelError, match=r"appearance.npy: float32 .* is not \d+ finite float32 values"):
        load_anomaly_model(tmp_path / "m", verify=False)
    np.save(file, packed)
    broken = {**card, "appearance": {**table, "components": 3}}
    path.write_text(dump_toml(broken))
    with pytest.raises(ModelError, match=r"appearance.npy: .* 3 components"):
        load_anomaly_model(tmp_path / "m", verify=False)
    for fields, message in (({k: v for k, v in table.items() if k != "smooth"}, r"\[appearance\] lacks the field 'smooth'"),
                            ({**table, "cells": [2, 2, 10]}, r"\[appearance\] has a field of the wrong type")):
        path.write_text(dump_toml({**card, "appearance": fields}))
        with pytest.raises(ModelError, match=message):
            load_anomaly_model(tmp_path / "m", verify=False)
    del broken["alignment"]
    broken["appearance"] = table
    path.write_text(dump_toml(broken))
    with pytest.raises(ModelError, match=r"card.toml: \[appearance\] without \[alignment\]"):
        load_anomaly_model(tmp_path / "m", verify=False)
