"""The scorer's precision: read from the card (``[runtime] precision``; f32 for cards without it), and the
bf16-features split (features in bf16, distances as a second f32 model) scores as the one-graph scorer does."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.model import load_anomaly_model, pack_banks, write_model
from inspector.anomaly.patchcore import nearest_distances
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor, cpu_has_bf16
from inspector.anomaly.teach import scorer_for
from inspector.pipeline.model_repo import ModelError, dump_toml

LEVELS = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))


def _banks() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (30, 64)).astype(np.float32), rng.normal(0, 1, (12, 112)).astype(np.float32)


def test_the_card_names_the_precision_and_the_scorer_runs_it(tmp_path: Path) -> None:
    write_model(tmp_path / "m", "m", _banks(), LEVELS, 64, 64, (3.5, 7.25), None, {}, precision="bf16-features")
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["runtime"]["precision"] == "bf16-features"
    model = load_anomaly_model(tmp_path / "m")
    assert model.precision == "bf16-features"
    assert scorer_for(model).precision == "bf16-features"


def test_a_card_without_a_precision_runs_f32_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    write_model(tmp_path / "m", "m", _banks(), LEVELS, 64, 64, (3.5, 7.25), None, {})
    path = tmp_path / "m" / "card.toml"
    card = tomllib.loads(path.read_text())
    del card["runtime"]  # as cards written before the precision was recorded
    path.write_text(dump_toml(card))
    assert load_anomaly_model(tmp_path / "m").precision == "f32"
    card["runtime"] = {"precision": "int4"}
    path.write_text(dump_toml(card))
    with pytest.raises(ModelError, match="precision = 'int4'"):
        load_anomaly_model(tmp_path / "m")
    with pytest.raises(ValueError, match="precision 'int4'"):
        AnomalyScorer(LEVELS, 64, 64, _banks(), (3.5, 7.25), precision="int4")


def test_bf16_features_with_f32_distances_equal_numpy_on_the_bf16_features() -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    precision = "bf16" if cpu_has_bf16() else "f32"  # compile_for_cpu falls back to f32 without bf16
    fine, coarse = FeatureExtractor(LEVELS, 64, 64, precision).all_levels(frames)
    banks = (fine[0].reshape(-1, 64)[::3].copy(), coarse[1].reshape(-1, 112)[::2].copy())
    scorer = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), precision="bf16-features", edge=1)
    first = scorer.start(frames)
    second = scorer.start(frames[:2])  # two batches in flight, each with its own pair of requests
    out, out2 = first.wait(), second.wait()
    m0 = np.stack([nearest_distances(f.reshape(-1, 64), banks[0]).reshape(8, 8) for f in fine]) / 7.5
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), banks[1]).reshape(4, 4) for f in coarse]) / 3.0
    want = np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2))
    want[:, [0, -1], :] = 0  # the edge cell along each side is not scored: 0 in the map
    want[:, :, [0, -1]] = 0
    np.testing.assert_allclose(out.maps, want, rtol=2e-3, atol=2e-3 * want.max())
    np.testing.assert_allclose(out.scores, want[:, 1:-1, 1:-1].reshape(3, -1).max(1), rtol=2e-3)
    np.testing.assert_allclose(out2.maps, out.maps[:2])


def test_teach_records_the_scorer_precision_and_builds_the_bank_from_f32_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    from inspector.anomaly import teach as teaching

    rng = np.random.default_rng(7)
    good = tmp_path / "good"
    good.mkdir()
    base = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    for i in range(teaching.MIN_GOOD):
        noise = rng.integers(-8, 9, base.shape)
        cv2.imwrite(str(good / f"{i}.png"), np.clip(base + noise, 0, 255).astype(np.uint8))
    models = {}
    # the backbone's levels alone: a tone level is scored in numpy in either precision, uncorrected
    monkeypatch.setattr(teaching, "TONE", False)
    for precision in ("f32", "bf16"):
        monkeypatch.setattr(teaching, "runtime_precision", lambda p=precision: p)
        teaching.teach([good], tmp_path / precision, width=64, height=64)
        models[precision] = load_anomaly_model(tmp_path / precision)
    assert models["f32"].precision == "f32" and models["bf16"].precision == "bf16"
    # a bank from bf16 features lost accuracy (plate Mono8 AUROC 0.9967 against 0.9991): both from f32 ones
    np.testing.assert_array_equal(pack_banks(models["f32"].bank), pack_banks(models["bf16"].bank))
    # the threshold from the scores each scorer gives (threshold.scorer_correction): the f32 one's uncorrected
    correction = models["bf16"].card["threshold"]["scorer_correction"]
    assert models["f32"].card["threshold"]["scorer_correction"] == 1.0 and correction > 0
    np.testing.assert_allclose(models["bf16"].raw_threshold, np.array(models["f32"].raw_threshold) * correction,
                               rtol=1e-4)
