"""INT8 vs FP32 throughput of the OpenVINO backend, side by side in one run.

Both models are compiled once; then rounds alternate FP32, INT8 (and ``auto``, the CPU's
default: bf16 where AMX/AVX512-BF16 exist) on the same letterboxed batch of rendered frames,
so drift in the machine's load hits both alike. Prints fps per round, the median per precision,
the INT8/FP32 ratio, the CPU model, its ISA and the load average before and after.

    python benchmarks/int8_vs_fp32.py --model defect-yolo11p-320 --batch 8 --rounds 5 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from camera.renderer import render_part
from inspector.bench import ISA_FLAGS, cpu_description
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import load_card
from inspector.pipeline.preprocess import Letterbox, letterbox_into

def fps_for(be, batch: np.ndarray, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        be.infer_preprocessed(batch)
        n += len(batch)
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="defect-yolo11p-320")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="Measured seconds per precision per round.")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-auto", action="store_true", help="Only f32 and int8 (skip the CPU's default precision).")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    card = load_card(args.model, int8=True)
    precisions = ["f32", "int8"] + ([] if args.no_auto else ["auto"])
    backends = {p: create_backend("openvino", card, max_batch=args.batch, threads=args.threads, precision=p)
                for p in precisions}
    box = Letterbox.fit(320, 320, card.input_width, card.input_height)
    batch = np.empty((args.batch, card.input_height, card.input_width, 3), np.uint8)
    for i in range(args.batch):
        img = render_part(1_000_000 + i, 320, 320).image
        letterbox_into(batch[i], img, "BGR8", box)
    for be in backends.values():
        for _ in range(3):
            be.infer_preprocessed(batch)  # compile the shapes and warm the caches
    cpu = cpu_description()
    model, isa = cpu["model"], cpu["isa"]
    load_before = os.getloadavg()[0]
    runs: dict[str, list[float]] = {p: [] for p in precisions}
    for r in range(args.rounds):
        for p in precisions:
            runs[p].append(fps_for(backends[p], batch, args.seconds))
        print(f"round {r + 1}: " + "  ".join(f"{p} {runs[p][-1]:7.1f} fps" for p in precisions), flush=True)
    load_after = os.getloadavg()[0]
    med = {p: statistics.median(v) for p, v in runs.items()}
    ratio = med["int8"] / med["f32"]
    print(f"CPU: {model} ({os.cpu_count()} cores), ISA: {' '.join(isa) or 'none of ' + ','.join(ISA_FLAGS)}")
    if "max_isa" in cpu:  # an emulation: the lesser CPU's kernels, this CPU's clock and memory
        print(f"kernels limited by ONEDNN_MAX_CPU_ISA={cpu['max_isa']} (kind {cpu['kind']}); "
              f"the CPU has {' '.join(cpu['cpu_isa'])}")
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}")
    print(f"batch {args.batch}, {args.rounds} rounds x {args.seconds:g} s alternating; medians: "
          + ", ".join(f"{p} {med[p]:.1f} fps" for p in precisions))
    print(f"int8 / f32 = {ratio:.2f}" + (f"; int8 / auto = {med['int8'] / med['auto']:.2f}" if "auto" in med else ""))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "batch": args.batch,
                                         "fps": med, "rounds": runs, "int8_over_f32": ratio,
                                         "load": [load_before, load_after]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
