"""PatchCore's pieces: the coreset covers the data, the graph's nearest-neighbour search equals numpy's,
AUROC equals its definition, the threshold rules hold what they state."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.anomaly import threshold
from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.metrics import auroc
from inspector.anomaly.patchcore import greedy_coreset, leave_one_out_scores, nearest_distances
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor


def test_the_greedy_coreset_takes_every_cluster_before_a_second_point_of_any() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 50, (6, 32)).astype(np.float32)
    points = np.concatenate([c + rng.normal(0, 0.5, (200, 32)).astype(np.float32) for c in centres])
    chosen = greedy_coreset(points, 6, proj_dim=16)
    assert sorted(set(chosen // 200)) == [0, 1, 2, 3, 4, 5]
    assert len(greedy_coreset(points, 5000)) == len(points)  # never more than there are


def test_nearest_distances_equal_brute_force() -> None:
    rng = np.random.default_rng(1)
    q, bank = rng.normal(0, 1, (300, 20)).astype(np.float32), rng.normal(0, 1, (70, 20)).astype(np.float32)
    want = np.sqrt(((q[:, None, :] - bank[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distances(q, bank), want, rtol=1e-4, atol=1e-4)


def test_leave_one_out_scores_each_image_against_the_bank_without_its_own_rows() -> None:
    rng = np.random.default_rng(4)
    images = [rng.normal(0, 1, (40, 12)).astype(np.float32) for _ in range(5)]
    owner = np.repeat(np.arange(5), 6)
    bank = np.concatenate([im[:6] for im in images])  # each image gave 6 of its own patches
    got = leave_one_out_scores(images, bank, owner)
    for i, im in enumerate(images):
        others = bank[owner != i]
        assert got[i] == pytest.approx(float(nearest_distances(im, others).max()), rel=1e-4)
        # with its own rows the image would look closer than an unseen one does
        assert float(nearest_distances(im, bank).max()) <= got[i] + 1e-4


def test_auroc_is_the_chance_a_positive_outscores_a_negative() -> None:
    rng = np.random.default_rng(2)
    neg, pos = rng.integers(0, 20, 50).astype(float), rng.integers(5, 25, 40).astype(float)
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (50 * 40)
    assert auroc(neg, pos) == pytest.approx(brute)
    assert auroc([0.1, 0.2], [0.3]) == 1.0 and auroc([0.3], [0.1, 0.2]) == 0.0
    with pytest.raises(ValueError):
        auroc([], [1.0])


def test_the_scoring_graph_equals_numpy_on_the_extracted_features() -> None:
    spec = FeatureSpec((4, 10), 8, 3)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    feats = FeatureExtractor(spec, 64, 64)(frames)  # (3, 8, 8, 152)
    bank = feats[0].reshape(-1, 152)[::3].copy()
    scorer = AnomalyScorer(spec, 64, 64, bank, raw_threshold=7.5)
    out = scorer.start(frames).wait()  # asynchronous: start returns at once, wait gives the batch
    want = np.stack([nearest_distances(f.reshape(-1, 152), bank).reshape(8, 8) for f in feats]) / 7.5
    assert out.maps.shape == (3, 8, 8)
    np.testing.assert_allclose(out.maps, want, rtol=2e-3, atol=2e-3 * want.max())
    np.testing.assert_allclose(out.scores, want.reshape(3, -1).max(1), rtol=2e-3)
    with pytest.raises(ValueError, match="u8"):
        scorer.start(frames.astype(np.float32))
    inner = AnomalyScorer(spec, 64, 64, bank, raw_threshold=7.5, edge=1).score(frames)  # the edge left out
    np.testing.assert_allclose(inner.scores, want[:, 1:-1, 1:-1].reshape(3, -1).max(1), rtol=2e-3)
    # the edge is not scored at all: the map reads 0 there (the heat map shows only what the verdict reads)
    np.testing.assert_allclose(inner.maps[:, 1:-1, 1:-1], out.maps[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-6)
    ring = np.ones((8, 8), bool)
    ring[1:-1, 1:-1] = False
    assert (inner.maps[:, ring] == 0).all() and (out.maps[1:, ring] > 0).all()  # frame 0 gave the bank


def test_two_levels_score_the_larger_of_their_normalised_distances_on_the_fine_grid() -> None:
    levels = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    fine, coarse = FeatureExtractor(levels, 64, 64).all_levels(frames)
    assert fine.shape == (3, 8, 8, 64) and coarse.shape == (3, 4, 4, 112)
    banks = (fine[0].reshape(-1, 64)[::3].copy(), coarse[1].reshape(-1, 112)[::2].copy())
    out = AnomalyScorer(levels, 64, 64, banks, (7.5, 3.0)).score(frames)
    m0 = np.stack([nearest_distances(f.reshape(-1, 64), banks[0]).reshape(8, 8) for f in fine]) / 7.5
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), banks[1]).reshape(4, 4) for f in coarse]) / 3.0
    want = np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2))  # a coarse cell covers 2 x 2 fine ones
    assert (m1.repeat(2, axis=1).repeat(2, axis=2) > m0).any() and (m0 > m1.repeat(2, axis=1).repeat(2, axis=2)).any()
    np.testing.assert_allclose(out.maps, want, rtol=2e-3, atol=2e-3 * want.max())
    # two fine cells of edge are one coarse cell: neither level scores them, the inner cells are as before
    inner = AnomalyScorer(levels, 64, 64, banks, (7.5, 3.0), edge=2).score(frames)
    np.testing.assert_allclose(inner.maps[:, 2:-2, 2:-2], out.maps[:, 2:-2, 2:-2], rtol=1e-5, atol=1e-6)
    assert (inner.maps[:, :2] == 0).all() and (inner.maps[:, :, -2:] == 0).all()
    np.testing.assert_allclose(inner.scores, want[:, 2:-2, 2:-2].reshape(3, -1).max(1), rtol=2e-3)
    with pytest.raises(ValueError, match="2 feature levels, 1 banks"):
        AnomalyScorer(levels, 64, 64, banks[:1], (7.5,))


def test_a_threshold_on_a_good_score_steps_above_it() -> None:
    good = np.full(50, 3.0)  # no spread at all: the threshold is the score itself, stepped just above
    assert (good / threshold.good_only(good).raw < 1.0).all()
    assert (good / threshold.with_bad(good, np.array([1.0])).raw < 1.0).all()
