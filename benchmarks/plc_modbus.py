"""A PLC runs line-demo over Modbus TCP (and, with --opcua-jobs, OPC UA beside it): ids in, results out.

Starts ``inspector run --headless --station line-demo --trigger plc --plc modbus://127.0.0.1:PORT``
as its own process, then acts as the PLC: every 1/rate s it writes a part id and the
``trigger_part`` command (the handshake: command_arg, command, wait for command_ack, 0), and
between triggers it reads the result registers and dequeues every result waiting. It prints
the ids' order check and the trigger -> result-visible-to-the-PLC latency (p50 / p99) against
the line's budget, and exits 1 if any id is missing, duplicated or out of order.

With ``--opcua-jobs N`` the station also serves OPC UA (a database with an operator ``plc``
is made for its login) and a second client calls StartSingleJob N times meanwhile; its
ResultReady events must carry its JobIds and PartIds. The Modbus FIFO then holds both
kinds of parts; the Modbus check is on the parts it triggered, in order.

    python benchmarks/plc_modbus.py --parts 300 --rate 5 [--opcua-jobs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import Command

ROOT = Path(__file__).resolve().parents[1]


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect(port: int, timeout: float) -> PlcClient:
    end = time.monotonic() + timeout
    while True:
        try:
            return PlcClient(port=port)
        except ConnectionError:
            if time.monotonic() > end:
                raise
            time.sleep(0.25)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=300)
    ap.add_argument("--rate", type=float, default=5.0, help="parts per second")
    ap.add_argument("--first-id", type=int, default=470_001)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--opcua-jobs", type=int, default=0, help="also run an OPC UA client with this many jobs")
    args = ap.parse_args()
    port = free_port()
    duration = args.parts / args.rate + 30
    cmd = [sys.executable, "-m", "inspector.cli", "run", "--headless", "--station", "line-demo", "--trigger", "plc",
           "--plc", f"modbus://127.0.0.1:{port}", "--no-archive", "--quiet",
           "--duration", str(duration), "--report", "/tmp/plc_modbus_report.json"]
    env = None
    ua_port = free_port()
    if args.opcua_jobs:
        import os

        from inspector.access.users import UserStore
        from inspector.storage.db import migrate, open_database

        tmp = Path(tempfile.mkdtemp(prefix="plc_both_"))
        url = f"sqlite:///{tmp / 'plc.db'}"
        engine = open_database(url)
        migrate(engine)
        UserStore(engine).create_user("plc", "operator-pass", "operator", by="benchmark")
        engine.dispose()
        cmd += ["--db", url, "--plc", f"opcua://127.0.0.1:{ua_port}"]
        env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data")}
    else:
        cmd += ["--db", "none"]
    station = subprocess.Popen(cmd, cwd=ROOT, env=env)
    ua: dict[str, object] = {}
    ua_thread = None
    sent: dict[int, float] = {}
    got: list[int] = []
    latency_ms: list[float] = []
    try:
        plc = connect(port, 60)
        while plc.read("state") != 1:  # running
            time.sleep(0.1)
        if args.opcua_jobs:
            ua_thread = threading.Thread(target=lambda: ua.update(asyncio.run(
                opcua_client(ua_port, args.opcua_jobs, args.rate / 3))), daemon=True)
            ua_thread.start()
        period = 1.0 / args.rate
        next_at = time.monotonic()
        ids = list(range(args.first_id, args.first_id + args.parts))
        i = 0
        end = None
        while len(got) < len(ids):
            now = time.monotonic()
            if i < len(ids) and now >= next_at:
                sent[ids[i]] = time.monotonic()
                err = plc.command(Command.TRIGGER_PART, ids[i])
                if err:
                    print(f"trigger {ids[i]}: error_code {err}", file=sys.stderr)
                i += 1
                next_at += period
                if i == len(ids):
                    end = time.monotonic() + 10
            r = plc.registers()
            if r["fifo_count"]:
                pid = r["result_part_id"]
                if pid in sent:
                    latency_ms.append((time.monotonic() - sent[pid]) * 1000)
                    got.append(pid)  # parts the OPC UA client triggered come through the FIFO too
                plc.command(Command.DEQUEUE_RESULT)
                continue
            if end is not None and time.monotonic() > end:
                break
            time.sleep(0.005)  # a PLC scan cycle
        plc.close()
        if ua_thread is not None:
            ua_thread.join(60)
    finally:
        station.terminate()
        station.wait(60)
    ids = list(range(args.first_id, args.first_id + args.parts))
    in_order = got == ids
    lat = np.asarray(latency_ms)
    rep = json.loads(Path("/tmp/plc_modbus_report.json").read_text())
    budget = rep["parts"]["budget_ms"]
    out = {
        "cpu": cpu(),
        "parts_sent": len(sent),
        "results": len(got),
        "ids_in_order": in_order,
        "trigger_to_plc_result_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
        "budget_ms": budget,
        "station": {k: rep["parts"][k] for k in ("triggered", "verdicts", "incomplete", "trigger_overruns")},
        "fifo_overflows": rep["plc"]["modbus"]["fifo_overflows"],
    }
    if args.opcua_jobs:
        out["opcua"] = ua
        print(f"OPC UA beside it: {ua.get('jobs')} StartSingleJob, {ua.get('events')} ResultReady events, "
              f"{ua.get('matched')} with matching JobId and PartId; StartSingleJob -> ResultReady "
              f"p50 {ua.get('p50_ms', 0):.0f} ms, p99 {ua.get('p99_ms', 0):.0f} ms")
    print(f"{out['cpu']}: {len(sent)} parts triggered over Modbus at {args.rate:g}/s, {len(got)} results dequeued, "
          f"ids in order: {in_order}; trigger -> result visible to the PLC p50 {out['trigger_to_plc_result_ms']['p50']:.0f} ms, "
          f"p99 {out['trigger_to_plc_result_ms']['p99']:.0f} ms (budget {budget:g} ms); station: {out['station']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    ua_ok = not args.opcua_jobs or ua.get("matched") == args.opcua_jobs
    return 0 if in_order and ua_ok and out["trigger_to_plc_result_ms"]["p99"] <= budget else 1


async def opcua_client(port: int, jobs: int, rate: float) -> dict[str, object]:
    """StartSingleJob ``jobs`` times at ``rate``; ResultReady events matched by JobId and PartId."""
    from asyncua import Client, ua

    from inspector.plc.opcua_model import NAMESPACE

    got: list[tuple[object, float]] = []

    class Handler:
        def event_notification(self, ev: object) -> None:
            got.append((ev, time.perf_counter()))

    c = Client(f"opc.tcp://127.0.0.1:{port}", timeout=10)
    c.set_user("plc")
    c.set_password("operator-pass")
    await c.connect()
    await c.load_data_type_definitions()
    sent: dict[str, float] = {}
    job_ids: dict[str, str] = {}
    try:
        idx = await c.get_namespace_index(NAMESPACE)
        vs = await c.nodes.objects.get_child(f"{idx}:VisionSystem")
        vsm = await vs.get_child(f"{idx}:VisionStateMachine")
        auto = await vsm.get_child(f"{idx}:AutomaticModeStateMachine")
        sub = await c.create_subscription(5, Handler())
        await sub.subscribe_events(vs, await c.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType"))
        await vsm.call_method(f"{idx}:SelectModeAutomatic")
        for i in range(jobs):
            pid = f"UA-{i + 1}"
            sent[pid] = time.perf_counter()
            job, _err = await auto.call_method(
                f"{idx}:StartSingleJob", ua.MeasIdDataType(Id=f"m{i}"), ua.PartIdDataType(Id=pid),
                ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""), ua.Variant([], ua.VariantType.Variant))
            job_ids[pid] = str(job.Id)
            await asyncio.sleep(1.0 / rate)
        end = time.monotonic() + 10
        while len([e for e, _ in got if e.PartId.Id in sent]) < jobs and time.monotonic() < end:  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)
    finally:
        await c.disconnect()
    mine = [(e, t) for e, t in got if e.PartId.Id in sent]  # type: ignore[attr-defined]
    lat = np.array([(t - sent[e.PartId.Id]) * 1000 for e, t in mine]) if mine else np.zeros(1)  # type: ignore[attr-defined]
    return {"jobs": len(job_ids), "events": len(mine),
            "matched": sum(1 for e, _ in mine if job_ids.get(e.PartId.Id) == e.JobId.Id),  # type: ignore[attr-defined]
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


if __name__ == "__main__":
    sys.exit(main())
