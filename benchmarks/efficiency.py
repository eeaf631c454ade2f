"""Pipeline efficiency at N cameras alone, from this checkout or another one (before/after a change).

The 8-camera point of `inspector bench`: a saturated station and the runtime alone, measured
back to back in rounds (`inspector.bench.pipeline.measure_station`); efficiency is the median
of the rounds' ratios. ``--root`` runs another checkout's code (a ``git worktree`` of an older
commit) with this one's virtual environment, so two versions can be measured alternately:

    git worktree add /tmp/before <commit>
    for i in 1 2 3; do python benchmarks/efficiency.py --root /tmp/before; python benchmarks/efficiency.py; done

``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment runs a lesser CPU's kernels (see
`inspector.pipeline.backends.isa`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="The checkout whose code runs (default: this one).")
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0, help="Measured seconds in all, split into the rounds.")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--streams", default=None,
                    help="OpenVINO streams: auto, 0 (one stream on all cores) or n (default: the station's).")
    ap.add_argument("--model", default="defect-yolo11p-320")
    ap.add_argument("--in-flight", type=int, default=None, help="Batches in flight (default: the station default).")
    args = ap.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    from inspector.bench import cpu_description
    from inspector.bench.pipeline import PureRunner, bench_frames, measure_station, station_config

    extra: dict[str, int | str] = {}
    if args.streams is not None:  # a checkout from before streams = "auto" has no parse_streams: only asked for here
        from inspector.config import parse_streams

        extra["streams"] = parse_streams(args.streams)
    if args.in_flight is not None:
        extra["in_flight"] = args.in_flight
    cfg = station_config(args.cameras, 0.0, args.model, "openvino", 0, 320, 320, 8, precision=args.precision, **extra)
    runner = PureRunner("openvino", args.model, args.cameras, 0, bench_frames(32, 320, 320),
                        depth=cfg.scheduler.in_flight, precision=args.precision, streams=cfg.model.streams)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = measure_station(cfg, f"sqlite:///{Path(tmp) / 'e.db'}", 3.0, args.seconds, pure=runner,
                                  rounds=args.rounds)
    finally:
        runner.close()
    cpu = cpu_description()
    print(f"{args.root}: {args.cameras} cameras, streams {cfg.model.streams}, in flight {cfg.scheduler.in_flight}, efficiency {out['efficiency']:.3f} (rounds "
          + " ".join(f"{r['efficiency']:.3f}" for r in out["rounds"])
          + f"), pure {out['pure_fps']:.0f} fps, pipeline {out['fps']:.0f} fps; CPU {cpu['model']} "
          f"({' '.join(cpu['isa'])}, {cpu['kind']}), load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
