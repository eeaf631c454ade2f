"""The graph's selected boxes as rows per image: the Python ordering of a few rows gives exactly the numpy one."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.pipeline.backends.openvino_nms import _FEW_ROWS, _detections_numpy, detections_per_item


def selected_rows(rng: np.random.Generator, n: int, m: int, padded: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` selected ``(image, class, anchor)`` triples of ``n`` images (scores with ties), ``padded`` -1 rows after."""
    sel = np.stack([rng.integers(0, n, m), rng.integers(0, 4, m), rng.integers(0, 2100, m)], 1).astype(np.int32)
    score = rng.choice(np.float32([0.9, 0.5, 0.25, 0.05]), m)  # ties: ordered by anchor
    sc = np.concatenate([sel[:, :2].astype(np.float32), score[:, None]], 1)
    pad = -np.ones((padded, 3), np.int32)
    return np.concatenate([sel, pad]), np.concatenate([sc, pad.astype(np.float32)])


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("m", [0, 1, 2, 7, _FEW_ROWS - 2])
def test_few_rows_ordered_in_python_equal_the_numpy_rows(n: int, m: int) -> None:
    rng = np.random.default_rng(1000 * n + m)
    raw = rng.random((n, 8, 2100), dtype=np.float32) * 320
    sel, sc = selected_rows(rng, n, m, padded=2)
    got = detections_per_item(raw, sel, sc, n)
    want = _detections_numpy(raw, sel, sc, n)
    assert len(got) == len(want) == n
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == w.shape and np.array_equal(g, w)
    assert sum(len(g) for g in got) == m


def test_many_rows_take_the_numpy_path() -> None:
    rng = np.random.default_rng(7)
    raw = rng.random((2, 8, 2100), dtype=np.float32)
    sel, sc = selected_rows(rng, 2, _FEW_ROWS + 10, padded=0)
    got = detections_per_item(raw, sel, sc, 2)
    assert [len(g) for g in got] == [int((sel[:, 0] == i).sum()) for i in range(2)]
    for g in got:  # best first
        assert np.all(np.diff(g[:, 4]) <= 0)
