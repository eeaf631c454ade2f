"""benchmarks/anomaly.py: Mono8 rows are also scored without the colour shifts a grey camera cannot see."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]


def _bench():
    spec = importlib.util.spec_from_file_location("anomaly_bench", ROOT / "benchmarks" / "anomaly.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_mono8_row_without_colour_shifts_leaves_out_only_those_and_says_why():
    bench = _bench()
    good = np.array([0.5, 0.6, 0.7, 0.8])
    bad = np.array([0.55, 0.65, 1.5, 2.0, 0.9])  # two invisible colour shifts score among the good ones
    kinds = np.array(["colour_shift", "colour_shift", "ink_splash", "wrinkle", "ink_splash"])
    row = bench.without_invisible(good, bad, kinds, mono=True)
    assert row["bad_images"] == 3 and row["left_out"] == 2
    assert row["image_auroc"] == 1.0  # 0.9, 1.5, 2.0 all above every good score
    assert row["escape"] == round(1 / 3, 4)  # 0.9 < 1.0
    assert "Mono8" in row["why"]


def test_colour_rows_and_sets_without_colour_shifts_get_no_second_row():
    bench = _bench()
    good, bad = np.array([0.5, 0.6]), np.array([0.55, 2.0])
    assert bench.without_invisible(good, bad, np.array(["colour_shift", "wrinkle"]), mono=False) is None
    assert bench.without_invisible(good, bad, np.array(["stain", "crease"]), mono=True) is None
