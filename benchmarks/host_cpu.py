"""Host CPU per frame, thread by thread, on a saturated station (8 free-running cameras by default).

On two cores OpenVINO's streams use every core, so each core-ms the host spends per frame (the
cameras, letterbox and submit, decode/NMS/verdict/fan-out, the database writer) is taken from
inference: this is what limits pipeline efficiency. Reads each thread's time on a CPU from
``/proc/self/task/<tid>/schedstat`` before and after ``--seconds`` of a running station, names it by its
Python thread (the rest is the runtime's own threads) and divides by the frames inspected meanwhile.
``--root`` runs another checkout's code (a ``git worktree`` of an older commit) with this one's
virtual environment, so two versions can be measured alternately:

    git worktree add /tmp/before <commit>
    for i in 1 2; do python benchmarks/host_cpu.py --root /tmp/before; python benchmarks/host_cpu.py; done

Linux only (procfs).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path


def thread_cpu_s() -> dict[int, float]:
    """Seconds on a CPU of every thread of this process, by native thread id: the scheduler's own
    count in nanoseconds (``schedstat``), not ``stat``'s clock ticks, which miss a thread that runs
    for less than a tick at a time (a camera thread: ~30 us a frame)."""
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except OSError:  # the thread ended meanwhile
            continue
    return out


def group_of(name: str | None) -> str:
    """Threads of one kind together: the 8 camera threads are one row."""
    if name is None:
        return "runtime (OpenVINO's threads)"
    return re.sub(r"\d+$", "N", name) if name.startswith("camera-") else name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="The checkout whose code runs (default: this one).")
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--model", default="defect-yolo11p-320")
    args = ap.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    from inspector.bench import cpu_description
    from inspector.bench.pipeline import station_config
    from inspector.station import Station

    try:  # no measuring child of `precision = "auto"` beside what is measured here (older checkouts have none)
        from inspector.pipeline.backends import precision_choice

        precision_choice.BACKGROUND = False
    except ImportError:
        pass
    cfg = station_config(args.cameras, 0.0, args.model, "openvino", 0, 320, 320, 8)
    with tempfile.TemporaryDirectory() as tmp:
        st = Station(cfg, db_url=f"sqlite:///{tmp}/bench.db", archive=False)
        st.start()
        try:
            time.sleep(args.warmup)
            names = {t.native_id: t.name for t in threading.enumerate()}

            def inspected() -> int:
                return sum(c.pool.snapshot().inspected for c in st.cameras.values())

            c0, i0, t0 = thread_cpu_s(), inspected(), time.perf_counter()
            time.sleep(args.seconds)
            c1, i1, t1 = thread_cpu_s(), inspected(), time.perf_counter()
        finally:
            st.stop()
    frames = max(1, i1 - i0)
    rows: dict[str, float] = collections.defaultdict(float)
    for tid, s in c1.items():
        rows[group_of(names.get(tid))] += s - c0.get(tid, 0.0)
    cpu = cpu_description()
    print(f"{args.root}: {args.cameras} cameras, {frames / (t1 - t0):.0f} fps; CPU {cpu['model']} "
          f"({' '.join(cpu['isa'])}), load {os.getloadavg()[0]:.2f}")
    host = 0.0
    for name, s in sorted(rows.items(), key=lambda kv: -kv[1]):
        ms = s / frames * 1e3
        if not name.startswith("runtime"):
            host += ms
        print(f"  {name:32s} {ms:6.3f} core-ms/frame")
    print(f"  {'host threads together':32s} {host:6.3f} core-ms/frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
