"""Two detectors' cost per frame on the line's frames, side by side in one process.

Both models at the same precision on batches of 8 rendered 320x320 line faces (two of eight Mono8), through the
runtime path (letterbox, infer, decode and NMS: `detect_frames`). Rounds alternate ABBA, so a change of load hits
both; prints each model's median ms per frame, the median of the paired ratios (second / first), the CPU and ISA,
and the load average before and after. Run it alone on a quiet machine.

    python benchmarks/detector_cost.py --models defect-yolo11p-320 defect-yolo11p-384 --precision int8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camera.renderer import render_face
from inspector.bench import cpu_description
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import load_card
from inspector.quality.evaluation import detect_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs=2, default=["defect-yolo11p-320", "defect-yolo11p-384"])
    ap.add_argument("--precision", default="int8", help="f32 | bf16 | int8 (the same for both)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batches", type=int, default=10, help="batches of 8 per model per round")
    args = ap.parse_args()
    cpu = cpu_description()
    print(f"{cpu['model']}, {cpu['cores']} cores, {' '.join(cpu['isa'])}; load {os.getloadavg()[0]:.2f}", flush=True)
    frames = [render_face(3_600_000 + p, k, 8, 320, 320, mono=k in (3, 7)) for p in range(4) for k in range(8)]
    batches = [frames[i:i + 8] for i in range(0, len(frames), 8)]
    names = list(args.models)
    cards = {n: load_card(n, int8=args.precision == "int8") for n in names}
    backends = {n: create_backend("openvino", cards[n], max_batch=8, precision=args.precision) for n in names}
    try:
        for n in names:  # compile and first runs outside the timing
            for b in batches:
                detect_frames(backends[n], cards[n], b, 320, 320)
        ms: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for n in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                for i in range(args.batches):
                    detect_frames(backends[n], cards[n], batches[i % len(batches)], 320, 320)
                ms[n].append((time.perf_counter() - t0) / (args.batches * 8) * 1e3)
    finally:
        for be in backends.values():
            be.close()
    for n in names:
        print(f"{n}: {statistics.median(ms[n]):.2f} ms/frame (rounds {', '.join(f'{x:.2f}' for x in ms[n])})")
    ratios = [b / a for a, b in zip(ms[names[0]], ms[names[1]])]
    print(f"ratio {names[1]} / {names[0]}: median {statistics.median(ratios):.2f} (rounds {min(ratios):.2f}.."
          f"{max(ratios):.2f}), {args.precision}, {args.rounds} rounds x {args.batches} batches of 8; "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
