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

Two more phases (``--phases``, all three by default, each on a fresh demo station):

* ``disk-full``: database, spool journal and NG archive on a real ``--disk-mib`` tmpfs
  (mounted like the ``small_filesystem`` fixture of tests/reliability, so needs root) that
  another writer fills for half of ``--phase-seconds``; then the space comes back.
* ``db-away``: another process holds SQLite's write lock (``BEGIN EXCLUSIVE``, as
  tests/reliability/test_database_faults.py does) for half of ``--phase-seconds``.

Every phase ends with accepted == rows in the database (each uid once), lost == 0 and RSS
flat (end at most 5 % above the start after the warm-up; start/end/peak printed), one
summary line per phase; the exit status is 1 if a phase failed.

Usage: ``python benchmarks/soak.py [--minutes 10] [--phases faults,disk-full,db-away]
[--phase-seconds 120] [--out benchmarks/results/soak.json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sqlite3
import subprocess
import sys
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

PHASES = ("faults", "disk-full", "db-away")
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


def run_faults(minutes: float, fault_every: float, fault_duration: float, warmup: float) -> dict[str, Any]:
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
    after = [b for t, b in rss if t >= warmup] or [b for _t, b in rss]
    result["phase_summary"] = _phase_summary(
        "faults", total_s, writer["accepted"], rows[0], rows[1], int(report.get("lost", writer.get("lost", 0))),
        int(writer["spooled"]), after[0], after[-1], max(after),
    )
    return result


#: RSS counts as flat when the end of a phase is at most this much above its start.
RSS_FLAT_GROWTH = 0.05


def _phase_summary(
    name: str, seconds: float, accepted: int, rows: int, distinct: int, lost: int, spooled: int,
    rss_start: int, rss_end: int, rss_peak: int, **extra: Any,
) -> dict[str, Any]:
    """The figures every phase ends with, and whether it kept the promise."""
    growth = rss_end / rss_start - 1.0 if rss_start else 0.0
    out: dict[str, Any] = {
        "phase": name,
        "seconds": round(seconds, 1),
        "accepted": accepted,
        "rows": rows,
        "distinct_uids": distinct,
        "lost": lost,
        "spooled": spooled,
        "rss_start_mib": round(rss_start / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "rss_peak_mib": round(rss_peak / 2**20, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "rss_flat": growth <= RSS_FLAT_GROWTH,
        **extra,
    }
    out["ok"] = bool(accepted == rows == distinct and lost == 0 and out["rss_flat"] and extra.get("fault_hit", True))
    return out


def phase_line(ph: dict[str, Any]) -> str:
    """One line per phase: accepted vs rows, lost, spooled, RSS start/end/peak."""
    hit = "" if ph.get("fault_hit", True) else "; the fault never reached the database"
    return (
        f"phase {ph['phase']}: {ph['seconds']:.0f} s, accepted {ph['accepted']}, rows {ph['rows']} "
        f"({ph['distinct_uids']} distinct), lost {ph['lost']}, spooled {ph['spooled']}; RSS start/end/peak "
        f"{ph['rss_start_mib']}/{ph['rss_end_mib']}/{ph['rss_peak_mib']} MiB ({ph['rss_growth_pct']:+.1f} %, "
        f"{'flat' if ph['rss_flat'] else 'GREW'}){hit}: {'PASS' if ph['ok'] else 'FAIL'}"
    )


def _db_counts(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT uid) FROM inspections").fetchone()
    finally:
        con.close()
    return int(n), int(distinct)


class _Clock:
    """Runs a started station for a while, sampling RSS every second and watching a few stats."""

    def __init__(self, st: Station) -> None:
        self.st = st
        self.t0 = time.monotonic()
        self.rss: list[tuple[float, int]] = []
        self.max_spool = 0
        self.max_reserve_used = 0.0
        self.health_seen: set[str] = set()

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    def run_until(self, condition: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sample()
            if condition():
                return True
            time.sleep(0.5)
        return bool(condition())

    def sample(self) -> None:
        self.rss.append((time.monotonic() - self.t0, rss_bytes()))
        if self.st.db_writer is not None:
            d = self.st.db_writer.stats()
            self.max_spool = max(self.max_spool, int(d["spool_size"]))
            self.max_reserve_used = max(self.max_reserve_used, float(d["spool_reserve_used"]))
        self.health_seen.add(str(self.st.health()["level"]))

    def mark(self) -> int:
        """The RSS baseline (start of the measured part)."""
        self.rss.clear()
        self.sample()
        return self.rss[0][1]


def _storage_station(tmp: Path, db: Path, **storage: Any) -> Station:
    cfg = load_station("demo")
    cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update=storage)})
    return Station(cfg, db_url=f"sqlite:///{db}")


def _finish(name: str, st: Station, clock: _Clock, db: Path, seconds: float, **extra: Any) -> dict[str, Any]:
    clock.sample()
    end = clock.rss[-1][1]
    peak = max(b for _t, b in clock.rss)
    start = clock.rss[0][1]
    st.stop()
    report = st.report()
    rows, distinct = _db_counts(db)
    w = report["db"]
    gc.collect()
    return _phase_summary(
        name, seconds, int(w["accepted"]), rows, distinct, int(report.get("lost", w.get("lost", 0))),
        int(w["spooled"]), start, end, peak, max_spool=clock.max_spool,
        max_spool_reserve_used=round(clock.max_reserve_used, 4), health_levels_seen=sorted(clock.health_seen),
        health_after_stop=report["health"]["summary"], totals=report["totals"], **extra,
    )


def _mount_tmpfs(where: Path, mib: int) -> str | None:
    """Mount a real ``mib`` MiB tmpfs on ``where`` (as tests/reliability does); None or why not."""
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)], capture_output=True,
                         text=True, check=False)
    return None if res.returncode == 0 else (res.stderr.strip() or f"mount exited {res.returncode}")


def _fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte (appending to one filler file)."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def run_disk_full(seconds: float, warmup: float, disk_mib: int, reserve_mib: float) -> dict[str, Any]:
    """Database, spool and NG archive on a small tmpfs that another program fills mid-run.

    Timeline after the warm-up: a quarter of ``seconds`` normal, half with the disk full (a
    hog tops the filler up every 0.2 s, so space the archive purges is taken again), a
    quarter with the space back; then the spool must drain.
    """
    tmp = Path(tempfile.mkdtemp(prefix="inspector-soak-disk-"))
    disk = tmp / "disk"
    why = _mount_tmpfs(disk, disk_mib)
    if why is not None:
        return {"phase": "disk-full", "skipped": f"cannot mount a {disk_mib} MiB tmpfs (needs root): {why}"}
    db = disk / "soak.db"
    hog_stop = threading.Event()
    try:
        st = _storage_station(tmp, db, archive_dir=str(disk / "ng"), spool_reserve_mb=reserve_mib)
        st.start()
        clock = _Clock(st)
        clock.run_for(warmup)
        clock.mark()
        clock.run_for(seconds / 4)
        rows_before = st.db_writer.rows_written if st.db_writer else 0

        def hog() -> None:
            while not hog_stop.wait(0.2):
                _fill(disk)

        filler = _fill(disk)
        log.warning("soak: disk full (%s)", disk)
        hog_thread = threading.Thread(target=hog, daemon=True)
        hog_thread.start()
        clock.run_for(seconds / 2)
        hog_stop.set()
        hog_thread.join()
        spooled_while_full = st.db_writer.spooled if st.db_writer else 0
        dropped_images = int(st.archive.stats()["dropped_disk_full"]) if st.archive else 0
        filler.unlink()
        log.warning("soak: space is back")
        clock.run_for(seconds / 4)
        drained = clock.run_until(lambda: st.db_writer is not None and st.db_writer.pending == 0, 60.0)
        return _finish("disk-full", st, clock, db, seconds, fault_hit=spooled_while_full > 0, drained=drained,
                       disk_mib=disk_mib, spool_reserve_mib=reserve_mib, rows_before_full=rows_before,
                       spooled_while_full=spooled_while_full, images_dropped_disk_full=dropped_images,
                       how="real tmpfs, filled by another writer (tests/reliability/conftest.py fill())")
    finally:
        hog_stop.set()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


_LOCKER = (
    "import sqlite3, sys, time\n"
    "con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
    "con.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "con.execute('COMMIT')\n"
)


def run_db_away(seconds: float, warmup: float) -> dict[str, Any]:
    """The SQLite database locked by another process (``BEGIN EXCLUSIVE``) for half of ``seconds``.

    The same fault as tests/reliability/test_database_faults.py; every commit of the station
    meets "database is locked" after its busy timeout, so results go to the spool.
    """
    tmp = Path(tempfile.mkdtemp(prefix="inspector-soak-db-"))
    db = tmp / "soak.db"
    st = _storage_station(tmp, db, archive_dir=str(tmp / "ng"), archive_min_free_mb=0)
    st.start()
    clock = _Clock(st)
    clock.run_for(warmup)
    clock.mark()
    clock.run_for(seconds / 4)
    away_s = seconds / 2
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(db), str(away_s)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert locker.stdout is not None
        got = locker.stdout.readline().strip() == "locked"
        log.warning("soak: database locked by pid %d for %.0f s", locker.pid, away_s)
        clock.run_for(away_s)
        locker.wait(timeout=60)
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait()
    spooled_while_away = st.db_writer.spooled if st.db_writer else 0
    log.warning("soak: database back")
    clock.run_for(seconds / 4)
    drained = clock.run_until(lambda: st.db_writer is not None and st.db_writer.pending == 0, 60.0)
    return _finish("db-away", st, clock, db, seconds, fault_hit=got and spooled_while_away > 0, drained=drained,
                   away_s=away_s, spooled_while_away=spooled_while_away,
                   how="SQLite write lock held by another process (BEGIN EXCLUSIVE), as test_database_faults.py")


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
    p.add_argument("--phases", default=",".join(PHASES),
                   help=f"comma-separated, run in this order (default: all of {', '.join(PHASES)})")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the faults phase")
    p.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    p.add_argument("--fault-duration", type=float, default=15.0, help="seconds each fault lasts")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline (faults phase)")
    p.add_argument("--phase-seconds", type=float, default=120.0,
                   help="length of the disk-full and db-away phases, after their warm-up")
    p.add_argument("--phase-warmup", type=float, default=10.0, help="warm-up of the disk-full and db-away phases")
    p.add_argument("--disk-mib", type=int, default=48, help="size of the disk-full phase's tmpfs")
    p.add_argument("--reserve-mib", type=float, default=8.0, help="spool reserve on that disk")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    a = p.parse_args()
    phases = [x.strip() for x in a.phases.split(",") if x.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        p.error(f"--phases: unknown {', '.join(unknown)} (known: {', '.join(PHASES)})")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results: dict[str, Any] = {}
    before: dict[str, float] = {}
    for name in phases:
        gc.collect()  # the previous phase's station is gone: what stays is the process's own
        before[name] = round(rss_bytes() / 2**20, 1)
        if name == "faults":
            results[name] = run_faults(a.minutes, a.fault_every, a.fault_duration, a.warmup)
            print(summary(results[name]), flush=True)
        elif name == "disk-full":
            results[name] = run_disk_full(a.phase_seconds, a.phase_warmup, a.disk_mib, a.reserve_mib)
        else:
            results[name] = run_db_away(a.phase_seconds, a.phase_warmup)
        results[name].get("phase_summary", results[name])["process_rss_before_mib"] = before[name]
    out = {"machine": machine(), "phases": results} if phases != ["faults"] else results["faults"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    failed = False
    for name, r in results.items():
        ph = r.get("phase_summary", r)
        if "skipped" in ph:
            print(f"phase {name}: skipped ({ph['skipped']})")
            continue
        print(f"{phase_line(ph)} (process RSS before the phase: {ph['process_rss_before_mib']} MiB)")
        failed |= not ph["ok"]
    print(f"-> {a.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
