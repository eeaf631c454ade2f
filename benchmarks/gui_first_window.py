"""Launch to the GUI's windows: start ``inspector gui`` in a fresh process N times, print each and the median.

Each start is its own process (``QT_QPA_PLATFORM=offscreen``, one temporary SQLite database for
all starts: the first start creates the admin from ``INSPECTOR_NEW_PASSWORD`` and migrates, the
later ones open it). Times run from just before the process is launched to the moments the app
writes into its start-up trace (``INSPECTOR_STARTUP_TRACE``): the start-up window shown, and the
main window shown (after the station is built and started); ``INSPECTOR_QUIT_WHEN_SHOWN=1``
then closes the app. Both clocks are ``time.time()``.

    python benchmarks/gui_first_window.py --station line-demo --starts 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS = ("startup_window_shown", "main_window_shown")


def cpu_description() -> str:
    """The CPU model and which of the ISA extensions that matter for inference it has."""
    from inspector.bench import cpu_description as cpu

    c = cpu()
    return f"{c['model']}, {c['cores']} cores, {' '.join(c['isa']) or 'no AVX2'} ({c['kind']})"


def inspector_command() -> list[str]:
    """The ``inspector`` console script of this interpreter's environment (else ``python -m gui.launcher``)."""
    script = Path(sys.executable).with_name("inspector")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gui.launcher"]


def one_start(station: str, db_url: str, trace: Path, timeout_s: float) -> dict[str, float]:
    """Launch the app once; seconds from launch to each traced event and to the process's exit."""
    trace.unlink(missing_ok=True)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "INSPECTOR_STARTUP_TRACE": str(trace),
           "INSPECTOR_QUIT_WHEN_SHOWN": "1", "INSPECTOR_NEW_PASSWORD": "bench-admin-pass"}
    t0 = time.time()
    res = subprocess.run([*inspector_command(), "gui", "--station", station, "--db", db_url], env=env,
                         capture_output=True, text=True, timeout=timeout_s, check=False)
    ended = time.time()
    if res.returncode != 0:
        err = [ln for ln in res.stderr.splitlines() if ln.strip() and "propagateSizeHints" not in ln]
        raise SystemExit(f"inspector gui exited {res.returncode}: {err[-1] if err else '(no message)'}")
    stamps = dict(line.split() for line in trace.read_text().splitlines() if line.strip())
    missing = [e for e in EVENTS if e not in stamps]
    if missing:
        raise SystemExit(f"the start-up trace has no {', '.join(missing)}")
    return {**{e: float(stamps[e]) - t0 for e in EVENTS}, "exit": ended - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--station", default="line-demo")
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds one start may take")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gui-first-window-"))
    try:
        db_url = f"sqlite:///{folder / 'station.db'}"
        runs = []
        for i in range(args.starts):
            r = one_start(args.station, db_url, folder / "trace.txt", args.timeout)
            runs.append(r)
            print(f"start {i + 1}: launch -> start-up window {r['startup_window_shown']:.2f} s · "
                  f"-> main window {r['main_window_shown']:.2f} s · -> exited {r['exit']:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    window = statistics.median(r["startup_window_shown"] for r in runs)
    main_window = statistics.median(r["main_window_shown"] for r in runs)
    print(f"{args.station}: median over {len(runs)} starts: start-up window {window:.2f} s, "
          f"main window {main_window:.2f} s")
    print(f"cpu: {cpu_description()}")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
