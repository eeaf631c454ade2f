"""Whitened levels: a level's distances in the good patches' own (Mahalanobis) metric, taught with the bank,
applied in numpy when teaching and in the scoring graph (f32 and int8 products), and kept in the model folder
beside the bank with its sha256; cards without it score as before."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.anomaly import teach as teaching
from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.model import WHITENING_FILE, load_anomaly_model, write_model
from inspector.anomaly.patchcore import (
    STATIONARY_SHARE,
    WHITEN_SHRINKAGE,
    nearest_distances,
    position_share,
    whitened,
    whitening,
)
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor
from inspector.pipeline.model_repo import ModelError

LEVELS = (FeatureSpec((2, 4), 8, 3, normalise="image"), FeatureSpec((10,), 16, 3))
WHITE = (dataclasses.replace(LEVELS[0], whiten=True), LEVELS[1])


def _correlated(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    mix = rng.normal(0, 1, (c, c)) * np.linspace(3.0, 0.1, c)[:, None]  # some directions wide, some narrow
    return (rng.normal(0, 1, (n, c)) @ mix + rng.normal(0, 5, c)).astype(np.float32)


def test_whitened_good_patches_have_zero_mean_and_the_shrunk_covariances_inverse_as_metric() -> None:
    x = _correlated(np.random.default_rng(0), 5000, 12)
    t = whitening(x, shrinkage=0.0)
    assert t.shape == (13, 12) and t.dtype == np.float32
    z = whitened(x, t)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(12), atol=2e-3)
    # shrunk: the covariance's weight moved towards its mean variance (what the default does)
    cov = np.cov(x.T, bias=True)
    shrunk = (1 - WHITEN_SHRINKAGE) * cov + WHITEN_SHRINKAGE * np.trace(cov) / 12 * np.eye(12)
    w = whitening(x)[1:].astype(np.float64)
    np.testing.assert_allclose(w @ shrunk @ w, np.eye(12), atol=1e-3)
    with pytest.raises(ValueError, match="more patches than channels"):
        whitening(x[:12])


def test_a_projected_whitening_keeps_the_good_patches_isotropic_in_fewer_dimensions() -> None:
    x = _correlated(np.random.default_rng(0), 5000, 12)
    full, t = whitening(x, shrinkage=0.0), whitening(x, shrinkage=0.0, dims=5, seed=3)
    assert t.shape == (13, 5) and t.dtype == np.float32
    np.testing.assert_allclose(t[0], x.mean(axis=0) @ t[1:], rtol=1e-4, atol=1e-4)  # the mean, whitened
    z = whitened(x, t)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(5), atol=2e-3)
    # an orthonormal projection of the whitened space: no distance grows, and they shrink by about sqrt(5 / 12)
    a, b = whitened(x[:500], full), whitened(x[500:1000], full)
    pa, pb = whitened(x[:500], t), whitened(x[500:1000], t)
    d, pd = np.linalg.norm(a - b, axis=1), np.linalg.norm(pa - pb, axis=1)
    assert bool(np.all(pd <= d * (1 + 1e-4)))
    assert float(np.mean(pd ** 2) / np.mean(d ** 2)) == pytest.approx(5 / 12, rel=0.15)
    assert not np.allclose(t, whitening(x, shrinkage=0.0, dims=5, seed=4))  # seeded
    for same in (0, 12, 40):  # no projection
        np.testing.assert_array_equal(whitening(x, shrinkage=0.0, dims=same), full)
    with pytest.raises(ValueError, match="dims = -1"):
        whitening(x, dims=-1)


def test_a_change_along_a_direction_good_patches_hardly_vary_in_stands_out_once_whitened() -> None:
    rng = np.random.default_rng(1)
    spread = np.r_[np.full(15, 1.0), 0.1]  # fifteen directions the good patches vary in, one they hardly do
    good = (rng.normal(0, 1, (4000, 16)) * spread).astype(np.float32)
    bank, unseen = good[:400], good[400:600]
    moved = unseen.copy()
    moved[:, 15] += 1.5  # 15 of that direction's sd: far out for a good patch, small beside the others' spread
    t = whitening(bank)
    found = {}
    for name, space in (("plain", lambda x: x), ("white", lambda x: whitened(x, t))):
        ok, bad = nearest_distances(space(unseen), space(bank)), nearest_distances(space(moved), space(bank))
        found[name] = float((bad > ok.max()).mean())  # caught above the highest unseen good patch
    assert found["plain"] < 0.1 and found["white"] > 0.95, found


@pytest.mark.parametrize("precision", ["f32", "int8-distances"])
@pytest.mark.parametrize("dims", [0, 48])
def test_the_scoring_graph_whitens_each_whitened_level_before_its_distances(precision: str, dims: int) -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    fine, coarse = FeatureExtractor(LEVELS, 64, 64).all_levels(frames)
    t = whitening(fine.reshape(-1, 64), dims=dims)  # 48: projected, the bank as narrow
    banks = (whitened(fine[0].reshape(-1, 64)[::3], t), coarse[1].reshape(-1, 112)[::2].copy())
    white = (dataclasses.replace(WHITE[0], whiten_dims=dims), WHITE[1])
    out = AnomalyScorer(white, 64, 64, banks, (7.5, 3.0), precision, whitening=(t, None)).score(frames)
    m0 = np.stack([nearest_distances(whitened(f.reshape(-1, 64), t), banks[0]).reshape(8, 8) for f in fine]) / 7.5
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), banks[1]).reshape(4, 4) for f in coarse]) / 3.0
    want = np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2))
    tol = 2e-3 if precision == "f32" else 0.05  # int8 products: a few percent (test_runtime_int8)
    np.testing.assert_allclose(out.maps, want, rtol=tol, atol=tol * want.max())
    if not dims:
        plain = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), precision).score(frames)
        assert not np.allclose(plain.maps, out.maps, rtol=0.05)
    with pytest.raises(ValueError, match="does not fit"):
        AnomalyScorer(white, 64, 64, banks, (7.5, 3.0), whitening=(None, t))
    with pytest.raises(ValueError, match="2 feature levels, 1 whitenings"):
        AnomalyScorer(white, 64, 64, banks, (7.5, 3.0), whitening=(t,))


def _write(folder: Path, transform: np.ndarray | None) -> None:
    rng = np.random.default_rng(0)
    banks = rng.normal(0, 1, (30, 64)).astype(np.float32), rng.normal(0, 1, (12, 112)).astype(np.float32)
    write_model(folder, "m", banks, WHITE if transform is not None else LEVELS, 64, 64, (3.5, 7.25), None, {},
                whitening=(transform, None) if transform is not None else None, whitening_rule="mahalanobis")


def test_the_whitening_is_written_with_its_sha256_and_a_changed_or_missing_file_is_refused(tmp_path: Path) -> None:
    t = whitening(_correlated(np.random.default_rng(2), 2000, 64))
    _write(tmp_path / "m", t)
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["whitening"]["file"] == WHITENING_FILE and len(card["whitening"]["sha256"]) == 64
    assert card["whitening"]["levels"] == [0] and card["whitening"]["rule"] == "mahalanobis"
    assert card["levels"]["0"]["whiten"] is True and "whiten" not in card["levels"]["1"]
    model = load_anomaly_model(tmp_path / "m")
    assert model.spec[0].whiten and not model.spec[1].whiten
    assert model.whitening is not None and model.whitening[1] is None
    np.testing.assert_array_equal(model.whitening[0], t)
    frames = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    got = AnomalyScorer.for_model(model, precision="f32").score(frames)  # as the station builds its scorers
    want = AnomalyScorer(WHITE, 64, 64, model.bank, model.raw_threshold, whitening=(t, None)).score(frames)
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-5)
    changed = np.load(tmp_path / "m" / WHITENING_FILE)
    changed[7] += 0.5
    np.save(tmp_path / "m" / WHITENING_FILE, changed)
    with pytest.raises(ModelError, match="whitening.npy does not match its card"):
        load_anomaly_model(tmp_path / "m")
    np.save(tmp_path / "m" / WHITENING_FILE, changed[:-3])
    with pytest.raises(ModelError, match=r"is not 4160 finite float32 values"):
        load_anomaly_model(tmp_path / "m", verify=False)
    (tmp_path / "m" / WHITENING_FILE).unlink()
    with pytest.raises(ModelError, match="not found"):
        load_anomaly_model(tmp_path / "m")


def test_a_projected_level_is_written_with_its_width_and_scores_through_the_narrower_bank(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = whitening(_correlated(np.random.default_rng(2), 2000, 64), dims=40)
    spec = (dataclasses.replace(WHITE[0], whiten_dims=40), WHITE[1])
    banks = rng.normal(0, 1, (30, 40)).astype(np.float32), rng.normal(0, 1, (12, 112)).astype(np.float32)
    write_model(tmp_path / "m", "m", banks, spec, 64, 64, (3.5, 7.25), None, {}, whitening=(t, None))
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["levels"]["0"]["whiten_dims"] == 40 and card["levels"]["0"]["channels"] == 64
    assert "whiten_dims" not in card["levels"]["1"]
    model = load_anomaly_model(tmp_path / "m")
    assert model.spec[0].width == 40 and model.bank[0].shape == (30, 40)
    assert model.whitening is not None and model.whitening[0] is not None and model.whitening[0].shape == (65, 40)
    np.testing.assert_array_equal(model.bank[1], banks[1])
    frames = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    got = AnomalyScorer.for_model(model, precision="f32").score(frames)
    fine, coarse = FeatureExtractor(LEVELS, 64, 64).all_levels(frames)
    m0 = np.stack([nearest_distances(whitened(f.reshape(-1, 64), t), banks[0]).reshape(8, 8) for f in fine]) / 3.5
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), banks[1]).reshape(4, 4) for f in coarse]) / 7.25
    np.testing.assert_allclose(got.maps, np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2)), rtol=2e-3)
    path = tmp_path / "m" / "card.toml"
    path.write_text(path.read_text().replace("whiten_dims = 40", "whiten_dims = 48"))
    with pytest.raises(ModelError, match=r"is not 3120 finite float32 values"):  # 65 x 48: not the file's 65 x 40
        load_anomaly_model(tmp_path / "m", verify=False)


def test_a_card_from_before_projections_keeps_the_mean_itself_in_the_first_row_and_scores_as_it_did(
        tmp_path: Path) -> None:
    t = whitening(_correlated(np.random.default_rng(2), 2000, 64))
    _write(tmp_path / "new", t)
    mean = _correlated(np.random.default_rng(2), 2000, 64).astype(np.float64).mean(axis=0)
    old = np.vstack([mean[None], t[1:]]).astype(np.float32)  # the form cards had: the features' mean first
    _write(tmp_path / "old", t)
    np.save(tmp_path / "old" / WHITENING_FILE, old.ravel())
    path = tmp_path / "old" / "card.toml"
    text = path.read_text()
    assert 'first_row = "mean times matrix"' in text
    path.write_text(text.replace('first_row = "mean times matrix"\n', ""))
    model = load_anomaly_model(tmp_path / "old", verify=False)
    np.testing.assert_allclose(model.whitening[0], t, rtol=1e-4, atol=1e-4)  # type: ignore[index]
    frames = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    got = AnomalyScorer.for_model(model, precision="f32").score(frames)
    want = AnomalyScorer.for_model(load_anomaly_model(tmp_path / "new"), precision="f32").score(frames)
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-4)


def test_a_levels_tap_channels_are_those_a_spec_of_those_taps_extracts() -> None:
    wide, narrow = FeatureSpec((1, 2, 4), 8, 3, normalise="image"), LEVELS[0]
    frames = np.random.default_rng(6).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    (all_taps,), (own,) = FeatureExtractor((wide,), 64, 64).all_levels(frames), \
        FeatureExtractor((narrow,), 64, 64).all_levels(frames)
    kept = wide.tap_channels((2, 4))
    assert len(kept) == 64 and list(kept[:3]) == [24, 25, 26]
    np.testing.assert_allclose(all_taps[..., kept], own, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"taps \[10\] are not all among \[1, 2, 4\]"):
        wide.tap_channels((10,))
    with pytest.raises(ValueError, match="whiten_dims = 90"):
        FeatureSpec((1, 2, 4), whiten_dims=90)


def test_a_card_marking_a_level_whitened_without_its_transform_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "m", whitening(_correlated(np.random.default_rng(2), 2000, 64)))
    path = tmp_path / "m" / "card.toml"
    text = path.read_text()
    path.write_text(text[:text.index("[whitening]")] + text[text.index("[threshold]"):])
    with pytest.raises(ModelError, match=r"levels \[0\] are whitened but the card has no \[whitening\]"):
        load_anomaly_model(tmp_path / "m")


def test_a_card_without_whitening_scores_as_before_and_teaching_again_plain_removes_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "m", whitening(_correlated(np.random.default_rng(2), 2000, 64)))
    _write(tmp_path / "m", None)
    assert not (tmp_path / "m" / WHITENING_FILE).exists()
    model = load_anomaly_model(tmp_path / "m")
    assert model.whitening is None and "whitening" not in model.card


def _cloth(rng: np.random.Generator, stain: float = 0.0, side: int = 96) -> np.ndarray:
    """A plain weave whose threads' tones vary from part to part; ``stain``: its contrast lost by that share over a
    blob (what a stain does to a cloth)."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    phase = rng.uniform(0, 8, 2)
    weave = np.sin((xs + phase[0]) * np.pi / 3.5) * np.sin((ys + phase[1]) * np.pi / 3.5)  # 7 px: off the grid
    tone = 1.0 + 0.15 * rng.normal(0, 1, (side // 8 + 1, side // 8 + 1)).repeat(8, 0).repeat(8, 1)[:side, :side]
    img = 128 + 60 * weave * tone
    if stain:
        blob = np.exp(-(((xs - side / 2) / 9) ** 2 + ((ys - side / 2) / 9) ** 2))
        img = 128 + (img - 128) * (1 - stain * blob)
    img = img + rng.normal(0, 2, img.shape)
    return cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def test_teaching_a_whitened_level_stores_the_good_patches_transform_and_scores_through_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the frames as they come (this small cloth's position share is a part's, so it would be aligned): the
    # transform is compared with the unaligned images' own
    monkeypatch.setattr(teaching, "ALIGN", False)
    rng = np.random.default_rng(11)
    good = tmp_path / "good"
    good.mkdir()
    images = [_cloth(rng) for _ in range(16)]
    for i, img in enumerate(images):
        cv2.imwrite(str(good / f"{i:03d}.png"), img)
    teaching.teach([good], tmp_path / "white", width=96, height=96, spec=WHITE)
    teaching.teach([good], tmp_path / "plain", width=96, height=96, spec=LEVELS, whiten="spec")
    white, plain = load_anomaly_model(tmp_path / "white"), load_anomaly_model(tmp_path / "plain")
    assert plain.whitening is None and not (tmp_path / "plain" / WHITENING_FILE).exists()
    assert white.whitening is not None and white.whitening[1] is None
    # the transform is the good patches' own: every taught image's fine features, as the extractor gives them
    fine = FeatureExtractor(LEVELS, 96, 96).all_levels(np.stack(images))[0]
    np.testing.assert_allclose(white.whitening[0], whitening(fine.reshape(-1, 64)), rtol=1e-3, atol=1e-3)
    # the bank's rows are whitened patches (unit scale), the coarse level's are as plain teaching makes them
    assert 0.3 < float(np.abs(white.bank[0]).mean()) < 3.0
    np.testing.assert_array_equal(white.bank[1], plain.bank[1])
    # through the scorer (the whitening in the graph): a cloth that lost 70% of its contrast over a blob scores
    # above every unseen good one
    unseen, stained = [_cloth(rng) for _ in range(8)], [_cloth(rng, 0.7) for _ in range(8)]
    scorer = teaching.scorer_for(white)
    ok, bad = scorer.score(np.stack(unseen)).scores, scorer.score(np.stack(stained)).scores
    assert bad.min() > ok.max(), (ok, bad)


def test_a_texture_taught_in_f32_with_ng_images_scores_them_with_the_taps_it_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(teaching, "runtime_precision", lambda: "f32")  # NG images scored in numpy (`_raw_scores`)
    from camera.products import render_product

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    def grey(image: np.ndarray) -> np.ndarray:  # a Mono8 camera's cloth: extracted with blocks 0-4, keeps 1, 2, 4
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)

    for seed in range(12):
        cv2.imwrite(str(good / f"{seed:03d}.png"), grey(render_product("fabric", seed, 96, 96).image))
    for seed in range(3):
        stained = render_product("fabric", 100 + seed, 96, 96).image
        cv2.circle(stained, (48, 48), 9, (40, 60, 90), -1)
        cv2.imwrite(str(bad / f"{seed:03d}.png"), grey(stained))
    report = teaching.teach([good], tmp_path / "m", bad=bad, width=96, height=96)
    model = load_anomaly_model(tmp_path / "m")
    assert model.spec[0].taps == (1, 2, 4) and model.spec[0].whiten and model.spec[0].width == 80
    # the NG images' scores at teach time are the model's own scores of them
    frames = np.stack([cv2.imread(str(p)) for p in sorted(bad.glob("*.png"))])
    np.testing.assert_allclose(report.bad_scores, teaching.scorer_for(model).score(frames).scores, rtol=2e-3)


def test_the_position_share_is_the_variance_between_positions_over_all_of_it() -> None:
    rng = np.random.default_rng(4)
    texture = rng.normal(0, 1, (30, 6, 6, 5))  # every position alike
    look = rng.normal(0, 3, (1, 6, 6, 5))  # each position a look of its own, the same on every part
    assert position_share(texture) < 0.05
    part = texture + look
    want = look.var(axis=(0, 1, 2)).sum() / part.reshape(-1, 5).var(axis=0).sum()
    assert position_share(part) == pytest.approx(want, rel=0.1) and position_share(part) > 0.8
    edged = texture.copy()
    edged[:, 0] += 50.0  # the first row differs on every part; its edge left out, the rest is a texture
    assert position_share(edged) > 0.5 and position_share(edged, edge=1) < 0.05


def test_teaching_whitens_a_stationary_texture_and_leaves_a_part_with_a_look_per_position_plain(tmp_path: Path) -> None:
    from camera.products import render_product

    for family in ("fabric", "plate"):  # a woven cloth; a plate whose holes and edges sit where they sit
        good = tmp_path / family
        good.mkdir()
        for seed in range(12):
            cv2.imwrite(str(good / f"{seed:03d}.png"), render_product(family, seed, 96, 96).image)
        teaching.teach([good], tmp_path / f"{family}_model", width=96, height=96)  # teach's default levels
    cloth, part = (tomllib.loads((tmp_path / f"{n}_model" / "card.toml").read_text()) for n in ("fabric", "plate"))
    assert cloth["levels"]["0"]["position_share"] < STATIONARY_SHARE <= part["levels"]["0"]["position_share"]
    assert cloth["levels"]["0"].get("whiten") is True and "whiten" not in part["levels"]["0"]
    # the texture takes its texture taps (blocks 0 and 1 as well), projected to WHITEN_DIMS; the part its own taps
    assert teaching.DEFAULT_SPEC[0].texture_taps == (0, 1, 2, 4) and teaching.DEFAULT_SPEC[0].taps == (2, 4)
    assert cloth["levels"]["0"]["taps"] == [0, 1, 2, 4] and cloth["levels"]["0"]["channels"] == 104
    assert cloth["levels"]["0"]["whiten_dims"] == teaching.WHITEN_DIMS == 80
    assert part["levels"]["0"]["taps"] == [2, 4] and "whiten_dims" not in part["levels"]["0"]
    assert part["levels"]["1"]["taps"] == [10] and "1" not in cloth["levels"]  # a texture keeps its own level alone
    woven = load_anomaly_model(tmp_path / "fabric_model")
    assert woven.bank[0].shape[1] == 80 and woven.whitening[0].shape == (105, 80)  # type: ignore[index]
    # a grey camera's cloth: the stride-2 block (colour) left out
    grey = tmp_path / "fabric_grey"
    grey.mkdir()
    for path in sorted((tmp_path / "fabric").glob("*.png")):
        cv2.imwrite(str(grey / path.name), cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))
    teaching.teach([grey], tmp_path / "grey_model", width=96, height=96)
    mono = tomllib.loads((tmp_path / "grey_model" / "card.toml").read_text())
    assert mono["levels"]["0"]["taps"] == [1, 2, 4] and mono["levels"]["0"]["whiten_dims"] == 80
    # its share was measured on its own taps' channels: what teaching the level without texture taps gives
    teaching.teach([tmp_path / "fabric"], tmp_path / "own", width=96, height=96,
                   spec=(dataclasses.replace(teaching.DEFAULT_SPEC[0], texture_taps=()), teaching.DEFAULT_SPEC[1]))
    own = tomllib.loads((tmp_path / "own" / "card.toml").read_text())
    assert own["levels"]["0"]["position_share"] == cloth["levels"]["0"]["position_share"]
    assert own["levels"]["0"]["taps"] == [2, 4] and "whiten_dims" not in own["levels"]["0"]
    assert "stationary texture" in cloth["whitening"]["rule"] and "whitening" not in part
    assert load_anomaly_model(tmp_path / "fabric_model").whitening is not None
    assert load_anomaly_model(tmp_path / "plate_model").whitening is None
    with pytest.raises(ValueError, match="whiten = 'always'"):
        teaching.teach([tmp_path / "fabric"], tmp_path / "x", width=96, height=96, whiten="always")


def test_a_textures_model_keeps_its_texture_level_alone_and_its_backbone_stops_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from camera.products import render_product
    from inspector.anomaly.int8 import activation_inputs
    from inspector.anomaly.runtime import cached_feature_model

    good = tmp_path / "good"
    good.mkdir()
    for seed in range(12):
        cv2.imwrite(str(good / f"{seed:03d}.png"), render_product("fabric", seed, 96, 96).image)
    report = teaching.teach([good], tmp_path / "alone", width=96, height=96)
    model = load_anomaly_model(tmp_path / "alone")
    card = tomllib.loads((tmp_path / "alone" / "card.toml").read_text())
    # the coarse level is not a texture (the light's gradient, the frame's border): left out, and said so
    assert len(model.spec) == 1 and model.spec[0].whiten and model.spec[0].taps == (0, 1, 2, 4)
    assert [i for i, _ in report.left_out] == [1] and report.left_out[0][1] >= STATIONARY_SHARE
    assert "level 1 (blocks 10)" in card["taught"]["levels_left_out"] and list(card["levels"]) == ["0"]
    # the int8 scorer's ranges: one per convolution of the backbone up to block 4, the full one's first ones
    ranges = card["runtime"]["activation_ranges"]
    alone = len(activation_inputs(cached_feature_model(model.spec, 96, 96)))
    assert len(ranges) == alone < len(activation_inputs(cached_feature_model(teaching.DEFAULT_SPEC, 96, 96)))
    images = np.stack([cv2.imread(str(p)) for p in sorted(good.glob("*.png"))])
    own = FeatureExtractor(model.spec, 96, 96, record_ranges=True)
    own.all_levels(images)
    np.testing.assert_allclose(np.array(own.activation_ranges()), np.array(ranges), atol=2e-3)
    scores = teaching.scorer_for(model).score(images).scores  # the card's precision (int8 where the CPU has VNNI)
    assert np.all(np.isfinite(scores)) and float(np.max(scores)) < 1.0  # the taught images pass
    # with the rule off, the texture keeps the spec's levels
    monkeypatch.setattr(teaching, "TEXTURE_ALONE", False)
    both = teaching.teach([good], tmp_path / "both", width=96, height=96)
    assert both.left_out == () and len(load_anomaly_model(tmp_path / "both").spec) == 2
