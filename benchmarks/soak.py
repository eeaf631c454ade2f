"""Soak test: the demo station for N minutes with a camera fault every minute.

The built-in demo station (8 simulated cameras at 5 fps, the shipped model on OpenVINO,
SQLite and the NG archive in a temporary folder) runs for ``--minutes``. Every
``--fault-every`` seconds one camera (rotating) gets one fault (rotating through stall,
disconnect, corrupt, wrong_size, hang) for ``--fault-duration`` seconds.

Measured:

* RSS (``VmRSS`` of /proc/self/status) every 10 s; growth = mean of the last minute vs
  the mean of the first minute after the warm-up.
* ``received == inspected + dropped + in_flight`` for every camera, 10 times a second.
* Results accepted by the DB writer vs rows in the database at the end (no loss).
* Per fault: seconds from injection to OFFLINE (for wrong_size, which keeps the camera
  streaming, to the first invalid frame counted) and from the end of the fault to
  STREAMING again.

Usage: ``python benchmarks/soak.py [--minutes 10] [--out benchmarks/results/soak.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from camera.faults import FaultMode
from camera.protocol import CameraState
from camera.simulated import SimulatedLineCamera
from inspector.config import load_station
from inspector.station import Station

log = logging.getLogger("soak")

ROTATION = (FaultMode.STALL, FaultMode.DISCONNECT, FaultMode.CORRUPT, FaultMode.WRONG_SIZE, FaultMode.HANG)


@dataclass
class FaultRun:
    """One injected fault and what the station made of it."""

    index: int
    mode: str
    camera: str
    injected_s: float  # since the start of the run
    duration_s: float
    detect_s: float | None = None  # to OFFLINE (wrong_size: to the first invalid frame)
    detected_as: str = ""
    recover_s: float | None = None  # from the end of the fault to STREAMING (0: never left it)
    transitions: list[str] = field(default_factory=list)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    busy = subprocess.run(["pgrep", "-f", "inspector.quality.training"], capture_output=True, text=True,
                          check=False).stdout.split()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "training_job_running": bool([p for p in busy if p != str(os.getpid())]),
    }


def run(minutes: float, fault_every: float, fault_duration: float, warmup: float, out: Path) -> dict[str, Any]:
    machine_at_start = machine()
    tmp = Path(tempfile.mkdtemp(prefix="inspector-soak-"))
    cfg = load_station("demo")
    cfg = cfg.model_copy(
        update={"storage": cfg.storage.model_copy(update={"archive_dir": str(tmp / "ng"), "archive_min_free_mb": 0})}
    )
    db = tmp / "soak.db"
    st = Station(cfg, db_url=f"sqlite:///{db}")
    cams = {cid: c for cid, c in st.cameras.items() if isinstance(c, SimulatedLineCamera)}
    ids = list(cams)
    transitions: list[tuple[float, str, str, str]] = []  # (monotonic, camera, old, new)
    lock = threading.Lock()

    def on_state(cid: str, old: CameraState, new: CameraState) -> None:
        with lock:
            transitions.append((time.monotonic(), cid, old.value, new.value))

    st.events.camera_state_changed.connect(on_state)
    total_s = minutes * 60.0
    faults: list[FaultRun] = []
    rss: list[tuple[float, int]] = []
    violations: list[str] = []
    checks = 0
    st.start()
    t0 = time.monotonic()
    next_fault = min(20.0, fault_every)
    next_rss = 0.0
    active: FaultRun | None = None
    invalid_at_inject = 0
    try:
        while (now := time.monotonic() - t0) < total_s:
            if now >= next_rss:
                rss.append((now, rss_bytes()))
                next_rss += 10.0
            if now >= next_fault and now + fault_duration + 15 < total_s:
                k = len(faults)
                mode, cid = ROTATION[k % len(ROTATION)], ids[k % len(ids)]
                invalid_at_inject = cams[cid].pool.snapshot().invalid
                cams[cid].faults.inject(mode, fault_duration)
                active = FaultRun(k, mode.value, cid, now, fault_duration)
                faults.append(active)
                log.warning("soak: fault %d: %s on %s for %.0f s", k, mode.value, cid, fault_duration)
                next_fault += fault_every
            if (
                active is not None
                and active.detect_s is None
                and active.mode == FaultMode.WRONG_SIZE.value
                and cams[active.camera].pool.snapshot().invalid > invalid_at_inject
            ):
                active.detect_s, active.detected_as = now - active.injected_s, "invalid frames"
            for cid, cam in st.cameras.items():
                counts = cam.pool.snapshot()
                if counts.received != counts.inspected + counts.dropped + counts.in_flight:
                    violations.append(f"{now:.1f}s {cid}: {counts}")
            checks += 1
            time.sleep(0.1)
        rss.append((time.monotonic() - t0, rss_bytes()))
    finally:
        for c in cams.values():
            c.faults.clear()
        health_at_end = st.health()
        t_stop = time.monotonic()
        st.stop()
    report = st.report()

    # per fault: detection and recovery from the recorded transitions
    for f in faults:
        start = t0 + f.injected_s
        end = start + f.duration_s
        mine = [(t, old, new) for t, cid, old, new in transitions
                if cid == f.camera and start <= t <= min(end + 30, t_stop)]
        f.transitions = [f"{t - start:+.2f}s {old}->{new}" for t, old, new in mine]
        offline = next((t for t, _o, new in mine if new == "offline" and t <= end + 1), None)
        if offline is not None and f.detect_s is None:
            f.detect_s, f.detected_as = offline - start, "offline"
        left = any(new != "streaming" for _t, _o, new in mine)
        back = next((t for t, _o, new in mine if new == "streaming" and t >= end - 0.5), None)
        f.recover_s = (max(0.0, back - end) if back is not None else None) if left else 0.0

    con = sqlite3.connect(db)
    rows = con.execute("SELECT count(*), count(DISTINCT uid) FROM inspections").fetchone()
    events = con.execute("SELECT count(*) FROM camera_events").fetchone()[0]
    con.close()
    writer = report["db"]
    first = [b for t, b in rss if warmup <= t < warmup + 60.0]
    last = [b for t, b in rss if t >= total_s - 60.0]
    growth = (sum(last) / len(last)) / (sum(first) / len(first)) - 1.0 if first and last else None
    detect = {m.value: [f.detect_s for f in faults if f.mode == m.value] for m in ROTATION}
    recover = {m.value: [f.recover_s for f in faults if f.mode == m.value] for m in ROTATION}
    machine_at_end = machine()
    result = {
        "machine": {
            **machine_at_end,
            "training_job_running": None,  # see the two fields below: the machine is shared
            "training_job_at_start": machine_at_start["training_job_running"],
            "training_job_at_end": machine_at_end["training_job_running"],
            "load_average_at_end": list(os.getloadavg()),
        },
        "config": {"station": cfg.name, "cameras": len(st.cameras), "fps": cfg.cameras[0].fps,
                   "minutes": minutes, "fault_every_s": fault_every, "fault_duration_s": fault_duration,
                   "warmup_s": warmup, "backend": st.backend_name, "model": st.card.name},
        "rss": {
            "samples_mib": [[round(t, 1), round(b / 2**20, 1)] for t, b in rss],
            "first_minute_after_warmup_mib": round(sum(first) / len(first) / 2**20, 1) if first else None,
            "last_minute_mib": round(sum(last) / len(last) / 2**20, 1) if last else None,
            "growth_pct": round(100 * growth, 2) if growth is not None else None,
        },
        "accounting": {"checks": checks, "violations": len(violations), "first_violations": violations[:5]},
        "db": {
            "accepted": writer["accepted"],
            "skipped_full": writer["skipped_full"],
            "rows": rows[0],
            "distinct_uids": rows[1],
            "rows_written": writer["rows_written"],
            "spooled": writer["spooled"],
            "camera_events": events,
            "transitions_seen": len(transitions),
            "no_loss": rows[0] == rows[1] == writer["accepted"],
        },
        "totals": report["totals"],
        "faults": [asdict(f) for f in faults],
        "detect_s_by_mode": detect,
        "recover_s_by_mode": recover,
        "health_during_run_at_end": health_at_end["summary"],
        "health_after_stop": report["health"]["summary"],
        "tmp_dir": str(tmp),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


def summary(r: dict[str, Any]) -> str:
    lines = [
        (
            f"soak: {r['config']['minutes']} min, {r['config']['cameras']} cameras @ {r['config']['fps']} fps, "
            f"{len(r['faults'])} faults; training job running at start/end: "
            f"{r['machine']['training_job_at_start']}/{r['machine']['training_job_at_end']}"
        ),
        (
            f"RSS: {r['rss']['first_minute_after_warmup_mib']} MiB (first minute after warm-up) -> "
            f"{r['rss']['last_minute_mib']} MiB (last minute): {r['rss']['growth_pct']} %"
        ),
        f"accounting: {r['accounting']['violations']} violations in {r['accounting']['checks']} checks",
        (
            f"db: accepted {r['db']['accepted']}, rows {r['db']['rows']} ({r['db']['distinct_uids']} distinct), "
            f"no loss: {r['db']['no_loss']}; camera_events {r['db']['camera_events']} "
            f"(transitions seen {r['db']['transitions_seen']})"
        ),
        (
            f"totals: {r['totals']['received']} received, {r['totals']['inspected']} inspected, "
            f"{r['totals']['dropped']} dropped, {r['totals']['invalid']} invalid, {r['totals']['fps']:.1f} fps"
        ),
        f"{'#':>2} {'fault':11} {'camera':10} {'detect s':>9} {'as':15} {'recover s':>9}",
    ]
    for f in r["faults"]:
        d = f"{f['detect_s']:.2f}" if f["detect_s"] is not None else "-"
        rec = f"{f['recover_s']:.2f}" if f["recover_s"] is not None else "-"
        lines.append(f"{f['index']:>2} {f['mode']:11} {f['camera']:10} {d:>9} {f['detected_as']:15} {rec:>9}")
    lines.append(f"health at the end of the run: {r['health_during_run_at_end']}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    p.add_argument("--fault-duration", type=float, default=15.0, help="seconds each fault lasts")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(summary(run(a.minutes, a.fault_every, a.fault_duration, a.warmup, a.out)))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
