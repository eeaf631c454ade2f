"""The anomaly scorer's variants side by side: ms per frame at batch 8, interleaved rounds, in one run.

    .venv/bin/python benchmarks/anomaly_speed.py [--model models/anomaly-plate-320] [--family plate]
        [--rounds 12] [--variants score_bf16,score_int8-distances,score_int8,features_bf16,features_int8]
        [--profile] [--json FILE] [--baseline OTHER_RUNTIME_PY]

Each variant is compiled once; then every round runs each variant once on the same batch of 8 letterboxed
frames of the family (seeds 10000-10007), in turn, so a change of the shared machine's load hits all alike.
Printed per variant: the best and the median ms per frame over the rounds and the ratio of each to the first
variant's, with the CPU, its ISA flags and the load average before and after.

Variants: ``score_<precision>`` is `AnomalyScorer` at that precision (`runtime.PRECISIONS`), its batch split over
`runtime.batch_streams` streams (``score_<precision>@1``: one stream of all the cores' threads;
``score_<precision>~3``: `FLIGHT_BATCHES` batches a turn with 3 inside the scorer at once, as a station's worker
keeps full batches, so the next batch's frames start while the last frames of one finish); ``features_bf16``
and ``features_int8`` the backbone alone (``int8``: `int8.quantized` at the activation ranges). Where the
card has no activation ranges (a model taught before they were recorded), they are measured on 64 good parts
of the family (seeds 0-63) as teaching would. ``--profile`` prints OpenVINO's per-layer counters (PERF_COUNT)
of each variant, summed by layer type and kernel, in ms per frame.

``--baseline FILE``: another copy of ``inspector/anomaly/runtime.py`` (say the one before a change:
``git show HEAD~1:inspector/anomaly/runtime.py > /tmp/runtime_before.py``); variants ``baseline_<precision>[@n]``
score with its `AnomalyScorer`, so that a change of the scorer is timed beside the scorer before it, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 8
#: Batches a turn of an in-flight variant (``score_<precision>~<depth>``) runs: its filling and draining are
#: shared by that many batches
FLIGHT_BATCHES = 6
DEFAULT_VARIANTS = "score_bf16@1,score_bf16,score_int8-distances,score_int8@1,score_int8,features_bf16,features_int8"


def _machine() -> dict[str, object]:
    from inspector.bench import cpu_description

    return {"cpu": cpu_description(), "load": [round(v, 2) for v in os.getloadavg()]}


def _ranges(model: Any, family: str) -> tuple[list[list[float]], str]:
    from camera.products import render_product
    from inspector.anomaly.runtime import FeatureExtractor

    card = model.card.get("runtime", {}).get("activation_ranges")
    if card:
        return card, "card"
    ex = FeatureExtractor(model.spec, model.input_width, model.input_height, "f32", record_ranges=True)
    for start in range(0, 64, 8):
        ex.all_levels(np.stack([render_product(family, i, model.input_width, model.input_height).image
                                for i in range(start, start + 8)]))
    return [list(r) for r in ex.activation_ranges()], f"measured on {family} seeds 0-63"


def _features(model: Any, precision: str, ranges: list[list[float]], profile: bool) -> Any:
    import openvino as ov

    from inspector.anomaly import int8
    from inspector.anomaly.backbone import cached_feature_model
    from inspector.anomaly.runtime import cpu_has_bf16

    graph = cached_feature_model(model.spec, model.input_height, model.input_width)
    if precision == "int8":
        graph = int8.quantized(graph, ranges)
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY",
                                 "INFERENCE_PRECISION_HINT": "bf16" if cpu_has_bf16() else "f32"}
    if profile:
        config["PERF_COUNT"] = True
    return ov.Core().compile_model(graph, "CPU", config).create_infer_request()


def _baseline(path: Path | None) -> Any:
    """The ``AnomalyScorer`` class of another copy of the runtime module (``--baseline``)."""
    import importlib.util

    if path is None or not path.is_file():
        raise SystemExit(f"--baseline: {path} is not a file (baseline_ variants need it)")
    spec = importlib.util.spec_from_file_location("baseline_runtime", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AnomalyScorer


def _runner(name: str, model: Any, ranges: list[list[float]], profile: bool, baseline: Path | None = None
            ) -> tuple[Callable[[np.ndarray], object], Callable[[], list[Any]], int]:
    """(run one batch, the per-layer counters of its last request, the frames that request held)."""
    from inspector.anomaly.runtime import AnomalyScorer

    kind, _, variant = name.partition("_")
    variant, _, flight = variant.partition("~")
    precision, _, streams = variant.partition("@")
    if kind == "features":
        request = _features(model, precision, ranges, profile)
        return (lambda batch: request.infer({0: batch})), (lambda: list(request.get_profiling_info())), BATCH
    if kind not in ("score", "baseline"):
        raise SystemExit(f"--variants: {name!r} is none of score_<precision>, baseline_<precision>, "
                         "features_<bf16|int8>")
    if kind == "baseline":
        old = _baseline(baseline)(model.spec, model.input_width, model.input_height, model.bank, model.raw_threshold,
                                  precision, depth=1, edge=model.edge_cells,
                                  activation_ranges=ranges if precision == "int8" else None,
                                  streams=int(streams) if streams else None)
        return old.score, list, 1  # its counters are not read
    depth = int(flight) if flight else 1
    scorer = AnomalyScorer(model.spec, model.input_width, model.input_height, model.bank, model.raw_threshold,
                           precision, depth=depth, edge=model.edge_cells,
                           activation_ranges=ranges if precision == "int8" else None, profile=profile,
                           streams=int(streams) if streams else None, cell_divisors=model.cell_divisors)
    if depth > 1:
        return _InFlight(scorer, depth), scorer.profiling, 1
    return scorer.score, scorer.profiling, 1  # one frame per request


class _InFlight:
    """`FLIGHT_BATCHES` batches with ``depth`` inside ``scorer`` at once, one call (timed per frame of them all)."""

    batches = FLIGHT_BATCHES

    def __init__(self, scorer: Any, depth: int) -> None:
        self.scorer, self.depth = scorer, depth

    def __call__(self, batch: np.ndarray) -> object:
        from collections import deque

        inside: deque[Any] = deque()
        for _ in range(self.batches):
            if len(inside) == self.depth:
                inside.popleft().wait()
            inside.append(self.scorer.start(batch))
        while inside:
            inside.popleft().wait()
        return None


def side_by_side(runners: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray,
                 rounds: int) -> dict[str, dict[str, float]]:
    """Best and median ms per frame of each runner, taking turns round by round, with ratios to the first."""
    for fn in runners.values():
        fn(batch)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            t = time.perf_counter()
            fn(batch)
            times[name].append((time.perf_counter() - t) * 1000.0 / (len(batch) * getattr(fn, "batches", 1)))
    first = next(iter(runners))
    b0, m0 = min(times[first]), statistics.median(times[first])
    return {name: {"best": round(min(v), 2), "median": round(statistics.median(v), 2),
                   "best_ratio": round(min(v) / b0, 3), "median_ratio": round(statistics.median(v) / m0, 3)}
            for name, v in times.items()}


def _profile(rows: list[Any], n: int) -> dict[str, float]:
    """Per-layer counters summed by layer type and kernel, ms per frame."""
    by_kind: Counter[str] = Counter()
    for p in rows:
        by_kind[f"{p.node_type}:{p.exec_type}"] += p.real_time.total_seconds() * 1000.0 / n
    return {k: round(v, 3) for k, v in by_kind.most_common(10)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/anomaly-plate-320"))
    ap.add_argument("--family", default="plate")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline", type=Path, help="Another copy of runtime.py, scored by baseline_ variants.")
    args = ap.parse_args()

    from camera.products import render_product
    from inspector.anomaly.model import load_anomaly_model

    model = load_anomaly_model(args.model)
    ranges, source = _ranges(model, args.family)
    batch = np.stack([render_product(args.family, 10_000 + i, model.input_width, model.input_height).image
                      for i in range(BATCH)])
    built = {name: _runner(name, model, ranges, args.profile, args.baseline) for name in args.variants.split(",")}
    out: dict[str, object] = {"machine": _machine(), "model": str(args.model), "card_precision": model.precision,
                              "activation_ranges": source, "rounds": args.rounds}
    out["ms_per_frame_b8"] = side_by_side({k: v[0] for k, v in built.items()}, batch, args.rounds)
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    if args.profile:
        out["profile_ms_per_frame"] = {k: _profile(v[1](), v[2]) for k, v in built.items()}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
