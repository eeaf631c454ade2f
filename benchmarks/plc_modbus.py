"""A PLC runs line-demo over Modbus TCP: N parts at a rate with its own ids, N results back in order.

Starts ``inspector run --headless --station line-demo --trigger plc --plc modbus://127.0.0.1:PORT``
as its own process, then acts as the PLC: every 1/rate s it writes a part id and the
``trigger_part`` command (the handshake: command_arg, command, wait for command_ack, 0), and
between triggers it reads the result registers and dequeues every result waiting. It prints
the ids' order check and the trigger -> result-visible-to-the-PLC latency (p50 / p99) against
the line's budget, and exits 1 if any id is missing, duplicated or out of order.

    python benchmarks/plc_modbus.py --parts 300 --rate 5
"""

from __future__ import annotations

import argparse
import json
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
    args = ap.parse_args()
    port = free_port()
    duration = args.parts / args.rate + 30
    station = subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", "run", "--headless", "--station", "line-demo", "--trigger", "plc",
         "--plc", f"modbus://127.0.0.1:{port}", "--db", "none", "--no-archive", "--quiet",
         "--duration", str(duration), "--report", "/tmp/plc_modbus_report.json"],
        cwd=ROOT,
    )
    sent: dict[int, float] = {}
    got: list[int] = []
    latency_ms: list[float] = []
    try:
        plc = connect(port, 60)
        while plc.read("state") != 1:  # running
            time.sleep(0.1)
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
                got.append(pid)
                plc.command(Command.DEQUEUE_RESULT)
                continue
            if end is not None and time.monotonic() > end:
                break
            time.sleep(0.005)  # a PLC scan cycle
        plc.close()
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
    print(f"{out['cpu']}: {len(sent)} parts triggered over Modbus at {args.rate:g}/s, {len(got)} results dequeued, "
          f"ids in order: {in_order}; trigger -> result visible to the PLC p50 {out['trigger_to_plc_result_ms']['p50']:.0f} ms, "
          f"p99 {out['trigger_to_plc_result_ms']['p99']:.0f} ms (budget {budget:g} ms); station: {out['station']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if in_order and out["trigger_to_plc_result_ms"]["p99"] <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
