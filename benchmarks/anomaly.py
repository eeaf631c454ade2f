"""Anomaly model: teach time for N good images and scoring ms per frame at batch 8, per precision.

    .venv/bin/python benchmarks/anomaly.py --family plate --good 200 [--size 320] [--json FILE]

Renders the family's good parts (seeds 0..N-1) into a temporary folder, times `inspector.anomaly.teach.teach`
on them (the backbone's IR already cached, as on a station after its first teach), then times the scoring
graph on batches of 8 letterboxed frames (the best of 10 runs after a warm-up) at f32 and bf16, and the
feature extractor alone. Prints the CPU model, its ISA flags and the load average with the numbers.
Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _isa() -> dict[str, object]:
    from inspector.bench import cpu_description

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpu": cpu_description(), "flags": [f for f in wanted if f in flags], "load": os.getloadavg()}


def _best_ms(fn, batch: np.ndarray, runs: int = 10) -> float:
    fn(batch)
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - t)
    return best * 1000.0 / len(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="plate")
    ap.add_argument("--good", type=int, default=200)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from camera.products import render_product, write_family
    from inspector.anomaly.backbone import cached_feature_model
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor
    from inspector.anomaly.teach import DEFAULT_SPEC, teach

    out: dict[str, object] = {"machine": _isa(), "family": args.family, "good": args.good, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_family(args.family, root / "data", args.good, 0, width=args.size, height=args.size)
        cached_feature_model(DEFAULT_SPEC, args.size, args.size)  # converted once per machine, not per teach
        t = time.perf_counter()
        report = teach([root / "data" / "good"], root / "model", width=args.size, height=args.size)
        out["teach_seconds"] = round(time.perf_counter() - t, 2)
        out["bank_rows"] = report.bank_rows
        model = load_anomaly_model(root / "model")
    frames = np.stack([render_product(args.family, 10_000 + i, args.size, args.size).image for i in range(8)])
    for precision in ("f32", "bf16"):
        try:
            scorer = AnomalyScorer(model.spec, args.size, args.size, model.bank, model.raw_threshold, precision)
            features = FeatureExtractor(model.spec, args.size, args.size, precision)
        except RuntimeError as exc:  # a CPU without bf16
            out[precision] = {"error": str(exc).splitlines()[0]}
            continue
        out[precision] = {"score_ms_per_frame_b8": round(_best_ms(scorer.score, frames), 2),
                          "features_ms_per_frame_b8": round(_best_ms(features, frames), 2)}
    out["machine"]["load_after"] = os.getloadavg()  # type: ignore[index]
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
