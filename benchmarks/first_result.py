"""Launch to first result: start a station in a fresh interpreter N times, print each and the median.

Each start is its own ``python`` process (imports, model compile, banks from the disk cache
or rendered, cameras, the first inspected frame), timed from just before the process is
launched to the first result it reports.

    python benchmarks/first_result.py --station line-demo --starts 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CHILD = """
import sys, time
from inspector.config import load_station
from inspector.station import Station
st = Station(load_station(sys.argv[1]), db_url="none")
first = []
st.events.result_ready.connect(lambda r: first.append(time.time()) if not first else None)
st.start()
while not first:
    time.sleep(0.002)
print(first[0])
st.stop()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--station", default="line-demo")
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    times = []
    for i in range(args.starts):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", CHILD, args.station], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]) - t0)
        print(f"start {i + 1}: launch -> first result {times[-1]:.2f} s")
    print(f"{args.station}: median {statistics.median(times):.2f} s over {len(times)} starts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
