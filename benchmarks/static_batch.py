"""The runtime alone with and without the full batch's static graphs, side by side in one process.

Two `PureRunner`s (the bench's "pure runtime": the station's backend settings, ``depth`` batches in
flight, in-graph NMS left unread), one built with `openvino_backend.STATIC_FULL_BATCH` off, run in
alternating rounds (the order flipped every round); prints each one's median fps and core-ms a frame
(the process's CPU over the frames, which moves less with other load than fps), and the per-round ratio:

    python benchmarks/static_batch.py --batch 8 --rounds 6 --seconds 2
    python benchmarks/static_batch.py --batch 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8, help="Frames a batch (the station's cameras).")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.0, help="Each runner's time per round.")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--streams", default="auto")
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--model", default="defect-yolo11p-320")
    args = ap.parse_args()
    if args.batch < 1 or args.rounds < 1 or args.seconds <= 0 or args.in_flight < 1:
        print("static_batch: --batch, --rounds, --in-flight must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from inspector.bench import cpu_description
    from inspector.bench.pipeline import PureRunner, bench_frames
    from inspector.config import parse_streams
    from inspector.pipeline.backends import openvino_backend as ob
    from inspector.pipeline.backends import precision_choice

    precision_choice.BACKGROUND = False
    frames = bench_frames(32, 320, 320)
    try:
        streams = parse_streams(args.streams)
    except ValueError as exc:
        print(f"static_batch: --streams: {exc}", file=sys.stderr)
        return 2
    runners = {}
    for name, static in (("dynamic", False), ("static", True)):
        ob.STATIC_FULL_BATCH = static
        runners[name] = PureRunner("openvino", args.model, args.batch, 0, frames, depth=args.in_flight,
                                   precision=args.precision, streams=streams)
    ob.STATIC_FULL_BATCH = True
    fps: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    try:
        for i in range(args.rounds):
            for name in (list(runners) if i % 2 == 0 else list(runners)[::-1]):
                c0, t0 = time.process_time(), time.perf_counter()
                f = runners[name].run(args.seconds)
                frames_run = f * (time.perf_counter() - t0)
                fps[name].append(f)
                cpu[name].append((time.process_time() - c0) / max(1.0, frames_run) * 1e3)
    finally:
        for r in runners.values():
            r.close()
    c = cpu_description()
    print(f"batch {args.batch}, {args.precision}, streams {args.streams}, {args.in_flight} in flight; CPU {c['model']} "
          f"({' '.join(c['isa'])}), load {os.getloadavg()[0]:.2f}")
    for name in runners:
        print(f"  {name:8s} fps median {statistics.median(fps[name]):7.1f}   core-ms a frame median "
              f"{statistics.median(cpu[name]):.3f}")
    ratios = [a / b for a, b in zip(fps["static"], fps["dynamic"])]
    print(f"  static / dynamic fps per round: median {statistics.median(ratios):.3f} "
          f"({' '.join(f'{r:.3f}' for r in ratios)}); core-ms ratio dynamic / static "
          f"{statistics.median(cpu['dynamic']) / statistics.median(cpu['static']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
