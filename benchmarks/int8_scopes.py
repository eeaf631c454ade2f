"""INT8 speed by what stays in floating point: does quantizing more make INT8 faster on this CPU?

Quantizes the shipped model's runtime graph three ways (NNCF MIXED, training seeds only: the shipped
scope of `ignored_scope_for`, only the sigmoids in float, everything quantized) and runs each beside
f32 and the CPU's default precision (bf16 where AMX/AVX512-BF16 exist) on two streams at batch 8,
alternating rounds. Speed only: accuracy is the quantizer's gate (`inspector quantize`).

    python benchmarks/int8_scopes.py --calibration 100 --rounds 3 --seconds 2.5
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.bench import cpu_description  # noqa: E402
from inspector.pipeline.backends.openvino_backend import precision_name, runtime_model  # noqa: E402
from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card  # noqa: E402
from inspector.quality.quantize import calibration_batches, calibration_seeds, ignored_scope_for  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--calibration", type=int, default=100, help="Calibration frames (training seeds from 0).")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.5, help="Measured seconds per variant per round.")
    args = ap.parse_args()
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    card = load_card(args.model)
    core = ov.Core()
    data = list(calibration_batches(card, calibration_seeds(args.calibration)))

    def quantized(scope: Any) -> Any:
        model = runtime_model(core, card, fused=True)
        kw = {} if scope is None else {"ignored_scope": scope(model)}
        return nncf.quantize(model, nncf.Dataset(data), preset=nncf.QuantizationPreset.MIXED,
                             subset_size=len(data), **kw)

    variants: dict[str, tuple[Any, dict[str, Any]]] = {
        "f32": (runtime_model(core, card), {"INFERENCE_PRECISION_HINT": "f32"}),
        "default": (runtime_model(core, card), {}),
        "int8, shipped scope": (quantized(ignored_scope_for), {}),
        "int8, sigmoids only in float": (quantized(lambda _m: nncf.IgnoredScope(types=["Sigmoid"])), {}),
        "int8, everything quantized": (quantized(None), {}),
    }
    compiled = {k: core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2, **cfg})
                for k, (m, cfg) in variants.items()}
    default_precision = precision_name(compiled["default"].get_property("INFERENCE_PRECISION_HINT"))
    batch = np.random.default_rng(0).integers(0, 255, (8, card.input_height, card.input_width, 3), np.uint8)

    def fps(c: Any) -> float:
        q = ov.AsyncInferQueue(c, 2)
        for _ in range(4):
            q.start_async({0: batch})
        q.wait_all()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            q.start_async({0: batch})
            n += 1
        q.wait_all()
        return n * batch.shape[0] / (time.perf_counter() - t0)

    got: dict[str, list[float]] = {k: [] for k in compiled}
    for _ in range(args.rounds):
        for k, c in compiled.items():
            got[k].append(fps(c))
    med = {k: statistics.median(v) for k, v in got.items()}
    cpu = cpu_description()
    print(f"CPU {cpu['model']} ({' '.join(cpu['isa'])}), default precision {default_precision}, batch 8, two streams, "
          f"{args.rounds} rounds x {args.seconds:g} s alternating, load {os.getloadavg()[0]:.2f}")
    for k, v in med.items():
        print(f"  {k:30s} {v:7.1f} fps   / f32 {v / med['f32']:.2f}   / default {v / med['default']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
