"""How late the deadline path runs: a triggered station whose parts fail safe at their deadline,
idle and under a CPU hog on every core (issue 31.3).

A camera of the built-in ``line-demo`` station (8 cameras, 300 parts/min, 1000 ms budget, the
shipped model) misses a share of its triggers, so those parts are decided by the tracker's
deadline timer (NG "incomplete"). For each such part the tracker records how late its release
to the part stream (the reject pulse first) ran against the deadline the timer aimed at
(``parts.deadline_lateness_ms``). The run is repeated with ``stress-ng --cpu N`` (N: the cores)
beside it, and the two are printed side by side with the missed deadlines and rejects.

    python benchmarks/deadline_lateness.py [--seconds 30] [--rate 0.2] [--camera line-cam5]

Other jobs on the machine load it too: the script prints ``os.getloadavg()`` before each run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import time
from typing import Any


def run_once(seconds: float, camera: str, rate: float) -> dict[str, Any]:
    """One station run with ``camera`` missing ``rate`` of its triggers; the report's figures."""
    from inspector.config import load_station
    from inspector.station import Station

    st = Station(load_station("line-demo"), db_url="none", archive=False)
    st.inject_fault(camera, "missed_trigger", rate)
    with st:
        time.sleep(seconds)
    rep = st.report()
    parts = rep["parts"]
    gate = parts.get("reject_gate", {})
    return {
        "parts": parts["verdicts"],
        "failed_safe": parts["incomplete"],
        "lateness_p50": parts["deadline_lateness_ms"]["p50"],
        "lateness_p99": parts["deadline_lateness_ms"]["p99"],
        "lateness_max": max(st.line.tracker.stats.deadline_lateness_ms, default=0.0),
        "deadline_missed": parts["deadline_missed"],
        "reject_late": gate.get("reject_late", 0),
        "reject_too_late": gate.get("reject_too_late", 0),
        "verdict_p99": parts["trigger_to_verdict_ms"]["p99"],
        "health": rep["health"]["level"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=0.2, help="share of the camera's triggers missed")
    ap.add_argument("--camera", default="line-cam5")
    ap.add_argument("--hog-cpus", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows: dict[str, dict[str, Any]] = {}
    for label in ("idle", f"stress-ng --cpu {args.hog_cpus}"):
        hog = None
        if label != "idle":
            if shutil.which("stress-ng") is None:
                raise SystemExit("stress-ng not found: apt-get install -y stress-ng")
            hog = subprocess.Popen(["stress-ng", "--cpu", str(args.hog_cpus), "--timeout", f"{args.seconds + 60:.0f}s"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        load = os.getloadavg()[0]
        try:
            rows[label] = {**run_once(args.seconds, args.camera, args.rate), "load_1min": load}
        finally:
            if hog is not None:
                hog.terminate()
                hog.wait()
    keys = ["load_1min", "parts", "failed_safe", "lateness_p50", "lateness_p99", "lateness_max", "deadline_missed",
            "reject_late", "reject_too_late", "verdict_p99", "health"]
    labels = list(rows)
    print(f"{'':18}" + "".join(f"{lb:>24}" for lb in labels))
    for k in keys:
        cells = [rows[lb][k] for lb in labels]
        print(f"{k:18}" + "".join(f"{c:>24.1f}" if isinstance(c, float) else f"{c!s:>24}" for c in cells))


if __name__ == "__main__":
    main()
