"""Resources over many product changeovers: RSS, threads and open files after each recipe switch.

A triggered line (two simulated cameras, the conveyor at 600 parts/min) switches back and forth between
two recipes on two models (the shipped one and a renamed copy of it), each switch waited for until the
old recipe is retired. Prints RSS (VmRSS), OS threads, file descriptors and the files in the compiled-model
cache (a folder of this run's own) after every switch; at the end, each at switch 1 and at the last switch
and their ratio. Exit 1 when RSS, threads or file descriptors grew by more than ``--tolerance`` (issue 26's
done-when: 5% over 100 switches), or the cache gained a file (a model compiled again was not found in it).

The station's own bounded buffers (run statistics, stage times, deadline lateness: rolling windows of up
to 200,000 entries) fill with every part whether or not recipes change, ~1 KB a part: after
``--warmup`` seconds of line, each one is filled to its bound (with copies of its newest entry) before
the first switch, so that what grows afterwards is the switches'. ``--control`` runs the same line for as
many rows without a switch (each row after ``--interval`` seconds): it should stay flat.

    python benchmarks/recipe_switches.py --switches 100
    python benchmarks/recipe_switches.py --switches 100 --control --interval 4
    python benchmarks/recipe_switches.py --switches 100 --no-fill   # the buffers filling, as before
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recipe_switch import two_model_recipes

STATION = """name = "recipe-switches"
[model]
threads = 1
[line]
mode = "triggered"
parts_per_min = 600
belt_mm_s = 1000
budget_ms = 1500
[recipes]
dir = "{recipes}"
select = 1
"""
CAMERA = """[[cameras]]
id = "cam{i}"
kind = "simulated"
width = 160
height = 160
seed = 3000000
bank_size = 8
position_mm = {pos}
"""


def sample(cache: Path) -> tuple[float, int, int, int]:
    """RSS in MB, OS threads, open file descriptors of this process, files in the compiled-model cache."""
    rss = next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    blobs = len(list(cache.glob("*.blob"))) if cache.exists() else 0
    return rss, len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd")), blobs


def fill_bounded_buffers(station: object) -> tuple[int, int]:
    """Fill every rolling window (a deque with ``maxlen``) of the station's own objects to its bound,
    oldest side, with copies of its newest entry; returns (windows, entries added)."""
    seen: set[int] = set()
    todo: list[object] = [station]
    windows = added = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, collections.deque):
            if obj.maxlen is not None and obj and len(obj) < obj.maxlen:
                newest = pickle.dumps(obj[-1])
                copies = [pickle.loads(newest) for _ in range(obj.maxlen - len(obj))]
                obj.extendleft(copies)
                windows += 1
                added += len(copies)
            continue
        if isinstance(obj, dict):
            todo.extend(v for v in list(obj.values()) if _ours(v) or isinstance(v, (dict, list, collections.deque)))
        elif isinstance(obj, (list, tuple)):
            todo.extend(v for v in obj if _ours(v) or isinstance(v, (dict, list, tuple, collections.deque)))
        elif _ours(obj):
            todo.extend(v for v in _attributes(obj) if _ours(v) or isinstance(v, (dict, list, collections.deque)))
    return windows, added


def _ours(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] in ("inspector", "camera")


def _attributes(obj: object) -> list[object]:
    found = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                found.append(getattr(obj, name))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=100)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.05, help="growth allowed after the first switch")
    ap.add_argument("--control", action="store_true", help="no switches: a row every --interval seconds")
    ap.add_argument("--interval", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of line before the buffers are filled")
    ap.add_argument("--no-fill", action="store_true", help="leave the bounded buffers to fill as parts come")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recipe_switches_"))
    folder = two_model_recipes(tmp)
    os.environ["INSPECTOR_CACHE_DIR"] = str(tmp / "cache" / "banks")  # a compiled-model cache of this run's own
    # no background child timing the precisions: it would write its graphs into that cache mid-run
    os.environ.setdefault("INSPECTOR_PRECISION_MEASURE", "off")
    cache = tmp / "cache" / "openvino"

    from inspector.config import parse_config
    from inspector.station import Station

    text = STATION.format(recipes=folder) + "".join(CAMERA.format(i=i + 1, pos=50 * i) for i in range(args.cameras))
    st = Station(parse_config(text), db_url="none", archive=False)
    rows = []
    try:
        with st:
            st.recipes.wait_retired(timeout=60)
            time.sleep(args.warmup)  # every window has entries to copy
            if not args.no_fill:
                windows, added = fill_bounded_buffers(st)
                print(f"filled {windows} bounded buffers with {added} entries", flush=True)
            for n in range(1, args.switches + 1):
                if args.control:
                    time.sleep(args.interval)
                else:
                    st.select_recipe(2 if n % 2 else 1)
                    st.recipes.wait_retired(timeout=60)
                gc.collect()
                rss, threads, fds, blobs = sample(cache)
                rows.append((rss, threads, fds, blobs))
                print(f"{'row' if args.control else 'switch'} {n:3d}: RSS {rss:7.1f} MB, threads {threads:3d} "
                      f"({threading.active_count()} Python), fds {fds:3d}, cache files {blobs}, "
                      f"parts {st.line.tracker.stats.triggered}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first, last = rows[0], rows[-1]
    worst = [max(r[k] for r in rows) for k in range(4)]
    ratio = [last[k] / first[k] for k in range(3)]
    what = "row" if args.control else "switch"
    n = len(rows)
    print(f"{what} 1 -> {what} {n}: RSS {first[0]:.1f} -> {last[0]:.1f} MB (x{ratio[0]:.3f}), threads {first[1]} -> "
          f"{last[1]} (x{ratio[1]:.3f}), fds {first[2]} -> {last[2]} (x{ratio[2]:.3f}), compiled-model cache files "
          f"{first[3]} -> {last[3]}; highest: RSS {worst[0]:.1f} MB, threads {worst[1]}, fds {worst[2]}; "
          f"parts {st.line.tracker.stats.triggered}")
    return 0 if max(ratio) <= 1 + args.tolerance and last[3] <= first[3] else 1


if __name__ == "__main__":
    sys.exit(main())
