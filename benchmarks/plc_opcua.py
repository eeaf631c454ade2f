"""A PLC runs line-demo over OPC UA: StartSingleJob at a rate, one ResultReady event back per part.

In one process: line-demo with `--trigger plc` and its OPC UA server on 127.0.0.1, a user
`plc` (operator) in a fresh database, and an asyncua client that selects automatic mode,
subscribes to ResultReady on the VisionSystem and calls StartSingleJob every 1/rate s with its
own PartIds. Prints how many events came back with matching JobId and PartId, and the
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

import numpy as np

from inspector.config import StationConfig, load_station


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plc_opcua_"))
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")
    from asyncua import Client, ua

    from inspector.access.users import UserStore
    from inspector.plc.opcua_model import NAMESPACE
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
    st = Station(StationConfig.model_validate(raw), db_url=url, archive=False)
    sent: dict[str, float] = {}
    jobs: dict[str, str] = {}
    got: list[tuple[object, float]] = []

    class Handler:
        def event_notification(self, ev: object) -> None:
            got.append((ev, time.perf_counter()))

    async def run() -> None:
        c = Client(st.plc_opcua.url, timeout=10)
        c.set_user("plc")
        c.set_password("operator-pass")
        await c.connect()
        await c.load_data_type_definitions()
        try:
            idx = await c.get_namespace_index(NAMESPACE)
            vs = await c.nodes.objects.get_child(f"{idx}:VisionSystem")
            vsm = await vs.get_child(f"{idx}:VisionStateMachine")
            auto = await vsm.get_child(f"{idx}:AutomaticModeStateMachine")
            sub = await c.create_subscription(5, Handler())
            await sub.subscribe_events(vs, await c.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType"))
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            period = 1.0 / args.rate
            t_next = time.perf_counter()
            for i in range(args.jobs):
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
                t_next += period
                pid = f"UA-{100000 + i}"
                sent[pid] = time.perf_counter()
                job, err = await auto.call_method(
                    f"{idx}:StartSingleJob", ua.MeasIdDataType(Id=f"m{i}"), ua.PartIdDataType(Id=pid),
                    ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""), ua.Variant([], ua.VariantType.Variant))
                jobs[pid] = str(job.Id)
            end = time.monotonic() + 10
            while len(got) < args.jobs and time.monotonic() < end:
                await asyncio.sleep(0.02)
        finally:
            await c.disconnect()

    with st:
        time.sleep(0.5)
        asyncio.run(run())
    matched = sum(1 for ev, _ in got if jobs.get(ev.PartId.Id) == ev.JobId.Id)  # type: ignore[attr-defined]
    lat = np.array([(t - sent[ev.PartId.Id]) * 1000 for ev, t in got if ev.PartId.Id in sent])  # type: ignore[attr-defined]
    budget = st.report()["parts"]["budget_ms"]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    print(f"{cpu}: {len(jobs)} StartSingleJob at {args.rate:g}/s, {len(got)} ResultReady events, {matched} with "
          f"matching JobId and PartId; StartSingleJob -> ResultReady p50 {np.percentile(lat, 50):.0f} ms, "
          f"p99 {np.percentile(lat, 99):.0f} ms (budget {budget:g} ms)")
    return 0 if matched == args.jobs and np.percentile(lat, 99) <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
