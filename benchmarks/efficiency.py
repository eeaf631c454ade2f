"""Pipeline efficiency at N cameras alone, from this checkout or another one (before/after a change).

One camera count of `inspector bench`, measured by the same function with the same settings and, by default,
the same seconds and rounds: a saturated station and the runtime alone, side by side in rounds in ABBA order
(`inspector.bench.pipeline.measure_station`); efficiency is the median of the rounds' fps ratios, CPU efficiency
the median of their ratios of the process's CPU time a frame. ``--root`` runs another checkout's code (a
``git worktree`` of an older commit) with this one's virtual environment, so two versions can be measured
alternately:

    git worktree add /tmp/before <commit>
    for i in 1 2 3; do python benchmarks/efficiency.py --root /tmp/before; python benchmarks/efficiency.py; done

``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment runs a lesser CPU's kernels (see
`inspector.pipeline.backends.isa`).

``--schedule`` also prints, for the pipeline's windows and the runtime's alone, the share of the
time with k batches inside the runtime (started, not finished): with two streams, time with one or
none inside is a stream without work, whatever the host does meanwhile. It counts the OpenVINO
backend's requests from their start to their end as the runtime timed them, on a busy machine too (a ratio of
frames per second is not readable there: the pipeline's threads out-compete the runner's).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="The checkout whose code runs (default: this one).")
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0, help="Measured seconds in all, split into the rounds.")
    ap.add_argument("--rounds", type=int, default=None, help="Rounds (default: the bench's).")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--streams", default=None,
                    help="OpenVINO streams: auto, 0 (one stream on all cores) or n (default: the station's).")
    ap.add_argument("--model", default="defect-yolo11p-320")
    ap.add_argument("--in-flight", type=int, default=None, help="Batches in flight (default: the station default).")
    ap.add_argument("--schedule", action="store_true",
                    help="Also print the share of time with k batches inside the runtime, pipeline and runtime alone.")
    args = ap.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    schedule = _count_batches_inside() if args.schedule else None
    from inspector.bench import cpu_description
    from inspector.bench.pipeline import PureRunner, bench_frames, measure_station, station_config

    if args.rounds is None:  # an older checkout (--root) has no ROUNDS: its bench's default then was 4
        from inspector.bench import pipeline as bp

        args.rounds = getattr(bp, "ROUNDS", 4)

    extra: dict[str, Any] = {}
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
    rounds = out["rounds"]
    if "cpu_efficiency" in out:  # an older checkout's measure_station does not time the CPU
        med = {k: statistics.median(r[k] for r in rounds) for k in ("pure_cpu_ms_per_frame", "pipeline_cpu_ms_per_frame")}
        print(f"  CPU per frame (the process's, all threads, median of the rounds): runtime alone "
              f"{med['pure_cpu_ms_per_frame']:.3f} core-ms, pipeline {med['pipeline_cpu_ms_per_frame']:.3f} core-ms; "
              f"CPU efficiency {out['cpu_efficiency']:.3f} (rounds " + " ".join(f"{r['cpu_efficiency']:.3f}" for r in rounds)
              + "; what fps efficiency is where the runtime keeps every core busy; less sensitive to other load)")
    if schedule is not None:
        for name, shares in schedule().items():
            print(f"  batches inside the runtime, {name}: " + " ".join(f"{k}: {v:.3f}" for k, v in sorted(shares.items())))
    return 0


def _count_batches_inside() -> Callable[[], dict[str, dict[int, float]]]:
    """Count the OpenVINO backend's batches inside the runtime over time, and the windows in which the pipeline
    and the runtime alone were measured; returns what gives the share of each window's time with k inside."""
    from inspector.bench import pipeline as bp
    from inspector.pipeline.backends import openvino_backend as ovb

    lock = threading.Lock()
    events: list[tuple[int, int]] = []  # (perf_counter_ns, +1 a batch started / -1 one finished)
    windows: dict[str, list[tuple[int, int]]] = {"pipeline": [], "runtime alone": []}
    start, wait = ovb.OpenVinoBackend.start, ovb._Running.wait

    def counted_start(self: Any, *a: Any, **kw: Any) -> Any:
        running = start(self, *a, **kw)
        with lock:  # stamped before it started: sorted by time, a fast batch's end still comes after it
            events.append((running._t0, 1))
        return running

    def counted_wait(running: Any, *a: Any, **kw: Any) -> Any:  # its end: its start plus the runtime's latency
        out = wait(running, *a, **kw)
        with lock:
            events.append((running._t0 + int(out.inference_ms * 1e6), -1))
        return out

    def timed(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def run(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return fn(*a, **kw)
            finally:
                windows[name].append((t0, time.perf_counter_ns()))
        return run

    ovb.OpenVinoBackend.start = counted_start  # type: ignore[method-assign]
    ovb._Running.wait = counted_wait  # type: ignore[method-assign]
    bp._window = timed(bp._window, "pipeline")  # type: ignore[attr-defined]
    timed_name = "measure" if hasattr(bp.PureRunner, "measure") else "run"  # what measure_station times the runtime by
    setattr(bp.PureRunner, timed_name, timed(getattr(bp.PureRunner, timed_name), "runtime alone"))

    def shares() -> dict[str, dict[int, float]]:
        ev, k = [], 0  # (time, batches inside from then on)
        for t, d in sorted(events):
            k += d
            ev.append((t, k))
        out: dict[str, dict[int, float]] = {}
        for name, spans in windows.items():
            acc: collections.Counter[int] = collections.Counter()
            for t0, t1 in spans:
                before = [n for t, n in ev if t < t0]
                k, last = (before[-1] if before else 0), t0
                for t, n in ev:
                    if t0 <= t < t1:
                        acc[k] += t - last
                        k, last = n, t
                acc[k] += t1 - last
            total = sum(acc.values()) or 1
            out[name] = {k: v / total for k, v in acc.items()}
        return out

    return shares


if __name__ == "__main__":
    raise SystemExit(main())
