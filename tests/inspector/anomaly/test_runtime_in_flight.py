"""Batches kept inside a scorer at once (``depth`` request slots), as a station's worker keeps full batches and as
``inspector bench --anomaly`` now times it: each batch scores as it does alone."""

from __future__ import annotations

import numpy as np

from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor
from tests.inspector.anomaly.frames import smooth_frames

LEVELS = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))


def test_batches_in_flight_score_as_they_do_one_at_a_time() -> None:
    ex = FeatureExtractor(LEVELS, 64, 64, "f32", record_ranges=True)
    fine, coarse = ex.all_levels(smooth_frames(1, 4))
    banks = (fine.reshape(-1, 64)[::2].copy(), coarse.reshape(-1, 112)[::2].copy())
    batches = [smooth_frames(10 + k, n) for k, n in enumerate((8, 8, 3, 8, 5))]
    alone = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), "int8", depth=1, activation_ranges=ex.activation_ranges())
    want = [alone.score(b) for b in batches]
    kept = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), "int8", depth=3, activation_ranges=ex.activation_ranges())
    inside = [kept.start(b) for b in batches[:3]]  # three inside at once
    got = []
    for b in batches[3:]:  # as the station's worker: the oldest waited for, then the next started (its requests)
        got.append(inside.pop(0).wait())
        inside.append(kept.start(b))
    got += [p.wait() for p in inside]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.maps, w.maps, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-5, atol=1e-5)


def test_a_batch_not_waited_for_keeps_its_own_scores_when_its_requests_take_a_later_batch() -> None:
    """Before, the batch ``depth`` later reused the requests and the earlier batch, waited for afterwards, read the
    later one's scores: an NG part could read OK. Now starting the later batch first collects the earlier one."""
    ex = FeatureExtractor(LEVELS, 64, 64, "f32", record_ranges=True)
    fine, coarse = ex.all_levels(smooth_frames(1, 4))
    banks = (fine.reshape(-1, 64)[::2].copy(), coarse.reshape(-1, 112)[::2].copy())
    first, later = smooth_frames(20, 4), smooth_frames(21, 4)
    alone = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), "int8", depth=1, activation_ranges=ex.activation_ranges())
    want = alone.score(first)
    kept = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), "int8", depth=1, activation_ranges=ex.activation_ranges())
    pending = kept.start(first)
    kept.start(later).wait()  # the same requests (depth 1), the first batch not yet waited for
    got = pending.wait()
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-5)
