"""A texture's tone level: each cell's colour mean and spread over two windows, one Gaussian for the texture;
taught beside the texture's level, scored in numpy beside the graph, kept in the model folder with its sha256."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.anomaly import teach as teaching
from inspector.anomaly.images import letterboxed
from inspector.anomaly.model import TONE_FILE, load_anomaly_model
from inspector.anomaly.runtime import AnomalyScorer
from inspector.anomaly.tone import (
    POSITION_SHRINKAGE,
    WINDOWS,
    content_blocks,
    grey_only,
    score_maps,
    scored_cells,
    tone_features,
)
from inspector.anomaly.tone import fit as tone_fit
from inspector.pipeline.model_repo import ModelError


def test_tone_features_are_each_windows_mean_and_spread_per_channel() -> None:
    batch = np.random.default_rng(0).integers(0, 256, (3, 96, 128, 3), dtype=np.uint8)
    f = tone_features(batch, 8, (3, 7))
    assert f.shape == (3, 12, 16, 12) and f.dtype == np.float32
    x = batch.astype(np.float64)
    for r, c in ((3, 3), (5, 9), (8, 12)):  # cells whose windows lie inside the frame
        for w, k in enumerate((3, 7)):
            win = x[:, (r - k // 2) * 8:(r + k // 2 + 1) * 8, (c - k // 2) * 8:(c + k // 2 + 1) * 8]
            np.testing.assert_allclose(f[:, r, c, 6 * w:6 * w + 3], win.mean(axis=(1, 2)), atol=1e-3)
            np.testing.assert_allclose(f[:, r, c, 6 * w + 3:6 * w + 6], win.std(axis=(1, 2)), atol=1e-3)
    assert np.all(np.isfinite(f))  # cells whose windows leave the frame too (never scored: `scored_cells`)
    # grey: the first channel's features, as channels=1 computes them
    np.testing.assert_allclose(grey_only(f), tone_features(batch, 8, (3, 7), channels=1), atol=1e-4)


def test_letterbox_bars_and_the_windows_they_touch_are_never_scored() -> None:
    rng = np.random.default_rng(1)
    frames = letterboxed([rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(4)], 96, 96)
    blocks = content_blocks(frames, 8)  # 128 x 96 into 96 x 96: 72 rows of content, bars of 12 above and below
    assert not blocks[:2].any() and not blocks[-2:].any() and blocks[2:10].all()
    assert scored_cells(blocks, WINDOWS) == (2 + 3, 3, 10 - 3, 12 - 3)  # a 7-cell window: 3 cells off each side
    assert scored_cells(blocks, (13,)) is None  # no cell whose window fits the content


def _fabric(seed: int, stain: float = 0.0, grey: bool = False) -> np.ndarray:
    """A rendered cloth (the renderer's woven fabric); ``stain``: its contrast lost by that share over a blob of
    about 30 px (what a stain does to a cloth)."""
    from camera.products import render_product

    img = render_product("fabric", seed, 96, 96).image.astype(np.float32)
    if stain:
        ys, xs = np.mgrid[0:96, 0:96].astype(np.float32)
        blob = np.exp(-(((xs - 48) / 14) ** 2 + ((ys - 48) / 14) ** 2))[..., None]
        mean = img.reshape(-1, 3).mean(axis=0)
        img = mean + (img - mean) * (1 - stain * blob)
    out = np.clip(img, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if grey else out


def _cloths(folder: Path, images: list[np.ndarray]) -> None:
    folder.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)


def test_a_textures_model_has_a_tone_level_that_sees_a_stains_lost_contrast(tmp_path: Path) -> None:
    _cloths(tmp_path / "good", [_fabric(seed, grey=True) for seed in range(20)])
    report = teaching.teach([tmp_path / "good"], tmp_path / "m", width=96, height=96)
    model = load_anomaly_model(tmp_path / "m")
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert report.tone is not None and model.tone is not None and model.tone.channels == 1  # a grey cloth
    assert card["tone"]["windows"] == list(WINDOWS) and card["tone"]["cells"] == [3, 3, 9, 9]
    assert card["tone"]["sha256"] and "Mahalanobis" in card["tone"]["rule"]
    assert "highest" in card["threshold"]["level_normalisation"]
    # each level spends the same budget: both levels' highest cross-validated scores are the threshold / 1.02
    assert max(report.good_scores) == pytest.approx(1 / 1.02, rel=1e-3)
    # the tone level alone: unseen good cloths under 1.0, cloths that lost 80% of their contrast over a blob above
    unseen = np.stack([_fabric(seed, grey=True) for seed in range(100, 108)])
    stained = np.stack([_fabric(seed, 0.8, grey=True) for seed in range(100, 108)])
    ok, bad = (model.tone.maps(b).reshape(8, -1).max(axis=1) for b in (unseen, stained))
    assert ok.max() < 1.0 < bad.min(), (ok, bad)
    # the scorer takes the larger of the texture's map and the tone level's, cell by cell
    scorer = teaching.scorer_for(model)
    without = AnomalyScorer(model.spec, 96, 96, model.bank, model.raw_threshold, model.precision,
                            edge=model.edge_cells, activation_ranges=card["runtime"].get("activation_ranges"),
                            cell_divisors=model.cell_divisors, whitening=model.whitening)
    both, texture = scorer.score(stained), without.score(stained)
    np.testing.assert_allclose(both.maps, np.maximum(texture.maps, model.tone.maps(stained)),
                               rtol=1e-6)
    assert np.all(both.scores >= texture.scores) and both.scores.min() > 1.0
    assert (model.tone.maps(stained) > texture.maps).any()  # the tone level's cells do take over somewhere


def test_a_part_with_a_look_per_position_has_a_tone_level_per_position(tmp_path: Path) -> None:
    from camera.products import render_product

    _cloths(tmp_path / "plate", [render_product("plate", seed, 96, 96).image for seed in range(12)])
    report = teaching.teach([tmp_path / "plate"], tmp_path / "m", width=96, height=96)
    model = load_anomaly_model(tmp_path / "m")
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert report.tone is not None and model.tone is not None and model.tone.per_position
    assert model.tone.transform.shape == (6, 6, 13, 12) and card["tone"]["per_position"] is True
    assert "one per cell" in card["tone"]["rule"] and len(model.spec) == 2  # both backbone levels kept
    images = np.stack([cv2.imread(str(p)) for p in sorted((tmp_path / "plate").glob("*.png"))])
    assert float(teaching.scorer_for(model).score(images).scores.max()) < 1.0  # the taught images pass
    # the backbone's levels at their 0.99 quantile among themselves, then that and the tone level at their highest
    assert max(report.good_scores) == pytest.approx(1 / 1.02, rel=1e-3)
    assert "0.99" in card["threshold"]["level_normalisation"]


def test_a_per_position_fit_whitens_each_cells_good_features() -> None:
    rng = np.random.default_rng(3)
    look = rng.normal(0, 5, (1, 4, 5, 6))  # each cell a mean of its own
    scale = rng.uniform(0.5, 3.0, (1, 4, 5, 1, 6))  # and a spread of its own, mixed across the features
    mix = rng.normal(0, 1, (6, 6))
    features = (look + (rng.normal(0, 1, (4000, 4, 5, 1, 6)) * scale @ mix)[:, :, :, 0]).astype(np.float32)
    cells = (0, 0, 4, 5)
    t = tone_fit(features, cells, per_position=True)
    assert t.shape == (4, 5, 7, 6)
    z = np.einsum("nhwi,hwij->nhwj", features.astype(np.float64), t[:, :, 1:]) - t[:, :, 0]
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.05)
    for r, c in ((0, 0), (3, 4)):  # the shrunk covariance's inverse as metric, cell by cell
        cov = np.cov(features[:, r, c].T.astype(np.float64), bias=True)
        shrunk = (1 - POSITION_SHRINKAGE) * cov + POSITION_SHRINKAGE * np.trace(cov) / 6 * np.eye(6)
        w = t[r, c, 1:].astype(np.float64)
        np.testing.assert_allclose(w.T @ shrunk @ w, np.eye(6), atol=1e-3)
    maps = score_maps(features[:3], t, cells)
    np.testing.assert_allclose(maps, np.linalg.norm(z[:3], axis=-1), rtol=1e-4)


def test_the_tone_level_is_checked_like_the_bank(tmp_path: Path) -> None:
    _cloths(tmp_path / "good", [_fabric(seed) for seed in range(12)])  # colour
    teaching.teach([tmp_path / "good"], tmp_path / "m", width=96, height=96)
    folder = tmp_path / "m"
    model = load_anomaly_model(folder)
    assert model.tone is not None and model.tone.channels == 3 and model.tone.transform.shape == (13, 12)
    card = (folder / "card.toml").read_text()
    transform = np.load(folder / TONE_FILE)
    np.save(folder / TONE_FILE, transform * 1.01)
    with pytest.raises(ModelError, match=r"tone\.npy does not match its card"):
        load_anomaly_model(folder)
    np.save(folder / TONE_FILE, transform)
    for old, new, message in (("cells = [3, 3, 9, 9]", "cells = [3, 3, 9, 19]", "do not fit a 12 x 12 grid"),
                              ("windows = [3, 7]", "windows = [3, 6]", "do not fit"),
                              ("channels = 3", "channels = 1", r"is not a finite float32 \(5, 4\) transform"),
                              ("per_position = false", "per_position = true", r"not a finite float32 \(6, 6, 13, 12\)"),
                              ("\nstride = 8\n", "\nstride = 0\n", "stride 0, channels 3")):
        assert old in card
        (folder / "card.toml").write_text(card.replace(old, new))
        with pytest.raises(ModelError, match=message):
            load_anomaly_model(folder, verify=False)
    (folder / "card.toml").write_text(card.replace("\nstride = 8\n", "\n"))
    with pytest.raises(ModelError, match=r"\[tone\] lacks the field 'stride'"):
        load_anomaly_model(folder, verify=False)


def test_score_maps_are_zero_outside_the_scored_cells() -> None:
    features = np.random.default_rng(2).normal(0, 1, (2, 12, 12, 4)).astype(np.float32)
    transform = np.vstack([np.zeros((1, 4)), np.eye(4)]).astype(np.float32)  # distance = the norm itself
    maps = score_maps(features, transform, (3, 4, 9, 8))
    np.testing.assert_allclose(maps[:, 3:9, 4:8], np.linalg.norm(features[:, 3:9, 4:8], axis=-1), rtol=1e-5)
    assert not maps[:, :3].any() and not maps[:, 9:].any() and not maps[:, :, :4].any() and not maps[:, :, 8:].any()
