"""The nearest-neighbour product computed a chunk of patches at a time (`runtime.PRODUCT_CHUNK_BYTES`)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.anomaly import runtime
from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor, product_rows
from tests.inspector.anomaly.frames import smooth_frames

LEVELS = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))
RAWS = (7.5, 3.0)


def _banks() -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[float, float]]]:
    ex = FeatureExtractor(LEVELS, 64, 64, "f32", record_ranges=True)
    fine, coarse = ex.all_levels(smooth_frames(1, 4))
    return (fine.reshape(-1, 64)[::2].copy(), coarse.reshape(-1, 112)[::2].copy()), ex.activation_ranges()


def _products(scorer: AnomalyScorer) -> int:
    """The compiled graph's matrix products (the levels' chunks)."""
    return sum(n for kind, n in scorer.layer_counts().items() if kind in ("FullyConnected", "MatMul"))


def test_product_rows_keep_a_chunk_within_the_budget_in_multiples_of_16() -> None:
    assert product_rows(3200) == 80  # 80 x 3200 x 4 B = 1,000 kB of 1 MiB
    assert product_rows(1000) == 256
    assert product_rows(100_000) == 16  # never fewer than 16 rows
    for bank in (128, 1000, 3200, 4096):
        rows = product_rows(bank)
        assert rows % 16 == 0 and rows * bank * 4 <= runtime.PRODUCT_CHUNK_BYTES


@pytest.mark.parametrize("precision", ["f32", "int8-distances", "int8"])
def test_a_product_in_chunks_scores_as_the_whole_product(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    banks, ranges = _banks()
    frames = smooth_frames(2, 3)
    whole = AnomalyScorer(LEVELS, 64, 64, banks, RAWS, precision, edge=1, activation_ranges=ranges)
    # the fine bank's 128 rows: chunks of 16 patches, the fine level's 36 inner ones (its edge cell along each side
    # is not scored) in three (16 + 16 + 4); the coarse one whole
    monkeypatch.setattr(runtime, "PRODUCT_CHUNK_BYTES", 16 * 128 * 4)
    chunked = AnomalyScorer(LEVELS, 64, 64, banks, RAWS, precision, edge=1, activation_ranges=ranges)
    assert (_products(whole), _products(chunked)) == (2, 4)
    want, got = whole.score(frames), chunked.score(frames)
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4)
    if precision != "f32":
        assert chunked.layer_precisions()["FullyConnected"] <= {"u8", "i8"}  # every chunk's product in int8
