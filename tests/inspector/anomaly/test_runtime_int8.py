"""The scorer's int8 precisions: ``int8-distances`` (the nearest-neighbour products in int8) and ``int8`` (the
backbone's convolutions too, at the activation ranges recorded while teaching)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly import int8
from inspector.anomaly.backbone import FeatureSpec, cached_feature_model
from inspector.anomaly.model import load_anomaly_model, write_model
from inspector.anomaly.patchcore import nearest_distances
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor
from inspector.pipeline.model_repo import dump_toml
from tests.inspector.anomaly.frames import smooth_frames

LEVELS = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))


def _taught(frames: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[float, float]]]:
    """Banks (every other patch of ``frames``' f32 features) and the activation ranges of the same pass."""
    ex = FeatureExtractor(LEVELS, 64, 64, "f32", record_ranges=True)
    fine, coarse = ex.all_levels(frames)
    return (fine.reshape(-1, 64)[::2].copy(), coarse.reshape(-1, 112)[::2].copy()), ex.activation_ranges()


def _numpy_maps(frames: np.ndarray, banks: tuple[np.ndarray, np.ndarray], raws: tuple[float, float]) -> np.ndarray:
    fine, coarse = FeatureExtractor(LEVELS, 64, 64, "f32").all_levels(frames)
    m0 = np.stack([nearest_distances(f.reshape(-1, 64), banks[0]).reshape(8, 8) for f in fine]) / raws[0]
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), banks[1]).reshape(4, 4) for f in coarse]) / raws[1]
    return np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2))


def test_the_activation_ranges_are_each_convolutions_input_range_over_the_batches_seen() -> None:
    frames = smooth_frames(1, 6)
    ex = FeatureExtractor(LEVELS, 64, 64, "f32", record_ranges=True)
    first = ex.all_levels(frames[:3])
    with pytest.raises(ValueError, match="does not record"):
        FeatureExtractor(LEVELS, 64, 64, "f32").activation_ranges()
    ex.all_levels(frames[3:])
    ranges = ex.activation_ranges()
    model = cached_feature_model(LEVELS, 64, 64)
    assert len(ranges) == len(int8.activation_inputs(model)) == 1 + 2 + 3 * 10  # stem, block 0, blocks 1-10
    assert ranges == int8.calibrate(model, [frames[:3], frames[3:]])  # the same as a pass of its own
    assert ranges[0][0] >= -1.0 and ranges[0][1] <= 1.0  # the stem sees (x - 127) / 128
    assert all(0.0 <= lo <= hi <= 6.0 for lo, hi in ranges[1:3])  # block 0's convs: after ReLU6
    # the recorded outputs are the features, as without the range outputs
    np.testing.assert_allclose(first[0], FeatureExtractor(LEVELS, 64, 64, "f32").all_levels(frames[:3])[0],
                               rtol=1e-4, atol=1e-4)


def test_int8_distances_score_as_numpy_on_f32_features_within_a_few_percent() -> None:
    banks, _ = _taught(smooth_frames(2))
    raws = (7.5, 3.0)
    frames = smooth_frames(3, 3)
    want = _numpy_maps(frames, banks, raws)
    want[:, [0, -1], :] = want[:, :, [0, -1]] = 0  # the edge cell along each side is not scored: 0 in the map
    f32 = AnomalyScorer(LEVELS, 64, 64, banks, raws, "f32", edge=1).score(frames)
    out = AnomalyScorer(LEVELS, 64, 64, banks, raws, "int8-distances", edge=1).score(frames)
    # the features in bf16 (where the CPU has it) and the products in int8: close to f32, not equal
    np.testing.assert_allclose(out.maps, want, rtol=0.08, atol=0.03 * want.max())
    np.testing.assert_allclose(out.scores, f32.scores, rtol=0.05)
    assert not np.array_equal(out.maps, f32.maps)


def test_the_int8_scorer_quantises_the_backbone_at_the_recorded_ranges() -> None:
    banks, ranges = _taught(smooth_frames(4))
    raws = (7.5, 3.0)
    frames = smooth_frames(5, 3)
    want = _numpy_maps(frames, banks, raws)
    with pytest.raises(ValueError, match="activation ranges"):
        AnomalyScorer(LEVELS, 64, 64, banks, raws, "int8")
    scorer = AnomalyScorer(LEVELS, 64, 64, banks, raws, "int8", edge=1, activation_ranges=ranges)
    out = scorer.score(frames)
    np.testing.assert_allclose(out.scores, want[:, 1:-1, 1:-1].reshape(3, -1).max(1), rtol=0.1)
    ran = scorer.layer_precisions()
    assert ran["Convolution"] <= {"u8", "i8"} and ran["FullyConnected"] <= {"u8", "i8"}, ran
    plain = AnomalyScorer(LEVELS, 64, 64, banks, raws, "int8-distances").layer_precisions()
    assert not plain["Convolution"] & {"u8", "i8"} and plain["FullyConnected"] <= {"u8", "i8"}, plain
    with pytest.raises(ValueError, match="3 activation ranges for 33 convolutions"):
        int8.quantized(cached_feature_model(LEVELS, 64, 64), ranges[:3])


def test_for_model_reads_the_precision_and_the_ranges_from_the_card(tmp_path: Path) -> None:
    banks, ranges = _taught(smooth_frames(6))
    write_model(tmp_path / "m", "m", banks, LEVELS, 64, 64, (7.5, 3.0), None,
                {"runtime": {"activation_ranges": [list(r) for r in ranges]}}, precision="int8")
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["runtime"]["precision"] == "int8" and len(card["runtime"]["activation_ranges"]) == 33
    model = load_anomaly_model(tmp_path / "m")
    frames = smooth_frames(7, 2)
    direct = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), "int8", activation_ranges=ranges).score(frames)
    np.testing.assert_allclose(AnomalyScorer.for_model(model).score(frames).maps, direct.maps, rtol=1e-5)
    assert AnomalyScorer.for_model(model, precision="f32").precision == "f32"
    del card["runtime"]["activation_ranges"]  # a card written before the ranges were recorded
    (tmp_path / "m" / "card.toml").write_text(dump_toml(card))
    with pytest.raises(ValueError, match="teach it again"):
        AnomalyScorer.for_model(load_anomaly_model(tmp_path / "m"))


def test_teaching_records_the_ranges_of_the_good_images_and_the_int8_scorer_uses_them(tmp_path: Path) -> None:
    import cv2

    from inspector.anomaly import teach as teaching

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    frames = smooth_frames(8, teaching.MIN_GOOD)
    for i, f in enumerate(frames):
        cv2.imwrite(str(good / f"{i}.png"), f)
    cv2.imwrite(str(bad / "0.png"), np.full((64, 64, 3), 255, np.uint8))  # brighter than any good one
    teaching.teach([good], tmp_path / "m", bad=bad, width=64, height=64)
    model = load_anomaly_model(tmp_path / "m")
    recorded = model.card["runtime"]["activation_ranges"]
    # the backbone as the model runs it (noise frames are a texture: its fine level alone, up to block 4)
    want = int8.calibrate(cached_feature_model(model.spec, 64, 64), [frames[:8], frames[8:]])
    np.testing.assert_allclose(recorded, want, atol=2e-4)  # the good images' ranges, not the NG one's
    int8_scores = AnomalyScorer.for_model(model, precision="int8").score(frames).scores
    np.testing.assert_allclose(int8_scores, AnomalyScorer.for_model(model, precision="f32").score(frames).scores,
                               rtol=0.1)


def test_the_default_precision_is_int8_where_the_cpu_has_an_int8_dot_product(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.anomaly import runtime

    monkeypatch.setattr(runtime, "cpu_has_int8_dot", lambda: True)
    assert runtime.default_precision() == "int8"
    monkeypatch.setattr(runtime, "cpu_has_int8_dot", lambda: False)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.default_precision() == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.default_precision() == "f32"
    monkeypatch.undo()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN's limit leaves no VNNI, whatever the CPU has
    assert not runtime.cpu_has_int8_dot()


@pytest.mark.parametrize("precision", ["f32", "bf16-features", "int8-distances"])
def test_a_batch_split_over_streams_scores_as_one_stream_does(precision: str) -> None:
    banks, _ = _taught(smooth_frames(9))
    raws = (7.5, 3.0)
    frames = smooth_frames(10, 5)
    one = AnomalyScorer(LEVELS, 64, 64, banks, raws, precision, edge=1, streams=1)
    two = AnomalyScorer(LEVELS, 64, 64, banks, raws, precision, edge=1, streams=2)
    assert (one.streams, two.streams) == (1, 2)
    want = one.score(frames)
    first = two.start(frames)  # 3 + 2 frames, one part per stream
    second = two.start(frames[:1])  # a second batch in flight; one frame is one part
    got, got1 = first.wait(), second.wait()
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-3, atol=1e-3 * want.maps.max())
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-3)
    np.testing.assert_allclose(got1.maps, got.maps[:1], rtol=1e-5)
    with pytest.raises(ValueError, match="batch must be"):
        two.start(frames[:0])
