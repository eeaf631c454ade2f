"""A PLC runs line-demo over OPC UA: StartSingleJob at a rate, one ResultReady event back per part.

In one process: line-demo with `--trigger plc` and its OPC UA server on 127.0.0.1, a user
`plc` (operator) in a fresh database, and an asyncua client that selects automatic mode,
subscribes to ResultReady on the VisionSystem and calls StartSingleJob every 1/rate s with its
own PartIds (the client of benchmarks/plc_modbus.py). Prints how many events came back with matching JobId and PartId, and the
StartSingleJob -> ResultReady latency p50 / p99 against the budget.

    python benchmarks/plc_opcua.py --jobs 100 --rate 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from inspector.config import StationConfig, load_station


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plc_opcua_"))
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")
    from plc_modbus import opcua_client  # the same PLC client the Modbus benchmark runs beside it

    from inspector.access.users import UserStore
    from inspector.station import Station
    from inspector.storage.db import migrate, open_database

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"sqlite:///{tmp / 'plc.db'}"
    engine = open_database(url)
    migrate(engine)
    UserStore(engine).create_user("plc", "operator-pass", "operator", by="benchmark")
    engine.dispose()
    raw = load_station("line-demo").model_dump()
    raw["line"]["trigger"] = "external"
    raw["plc"]["opcua"] = f"opc.tcp://127.0.0.1:{port}"
    raw["plc"]["opcua_insecure"] = True  # the client below uses the None endpoint (off unless configured)
    st = Station(StationConfig.model_validate(raw), db_url=url, archive=False)
    with st:
        time.sleep(0.5)
        ua = asyncio.run(opcua_client(port, args.jobs, args.rate))
    budget = st.report()["parts"]["budget_ms"]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    print(f"{cpu}: {ua['jobs']} StartSingleJob at {args.rate:g}/s, {ua['events']} ResultReady events, "
          f"{ua['matched']} with matching JobId and PartId; StartSingleJob -> ResultReady p50 {ua['p50_ms']:.0f} ms, "
          f"p99 {ua['p99_ms']:.0f} ms (budget {budget:g} ms)")
    matched = ua["matched"]
    p99 = float(ua["p99_ms"])  # type: ignore[arg-type]
    return 0 if matched == args.jobs and p99 <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
