"""Two stations on one SQLite database, while a third process holds its write lock (issue 12, item 2).

Both stations spool while the database is locked. Each writer process holds its own spool
journal under ``flock`` (``<db>.spool.jsonl``, ``<db>.spool-1.jsonl``; see
`inspector.storage.spool`), so one station replaying and clearing its journal never wipes
records the other one appended. Without that lock both would write ``<db>.spool.jsonl`` at
their own offsets, overwrite each other's records and zero them on replay: results lost
(8 of 704 in the run that found it).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.reliability.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]

#: A real `inspector run --headless` in a child process, with the paced fake backend
#: instead of real inference (two model warm-ups on a 2-core machine take too long).
STATION = (
    "import sys\n"
    "import inspector.station\n"
    "from tests.reliability.helpers import PacedBackend\n"
    "def create(name, card, *, max_batch, device='CPU', **_):\n"
    "    return PacedBackend(card, max_batch=max_batch, device=device, delay_s=0.002)\n"
    "inspector.station.create_backend = create\n"
    "from inspector.cli import run_cli\n"
    "run_cli(sys.argv[1:])\n"
)

#: Takes SQLite's write lock (waiting for a station's transaction to end), holds it, lets go.
LOCKER = (
    "import sqlite3, sys, time\n"
    "con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
    "con.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "con.execute('COMMIT')\n"
)

#: Longer than the stations' SQLite busy timeout (5 s), so their commits fail and spool.
LOCK_S = 7.0


def _station_toml(path: Path, name: str, seed: int) -> Path:
    cams = "".join(
        f'[[cameras]]\nid = "{name}-c{i}"\nkind = "simulated"\nfps = 20\nwidth = 160\nheight = 160\n'
        f"seed = {seed + 1000 * i}\nbank_size = 4\n"
        for i in range(2)
    )
    path.write_text(f'name = "{name}"\n[storage]\nspool_reserve_mb = 1\n{cams}')
    return path


def _start_station(tmp_path: Path, name: str, seed: int, db: Path, duration: float) -> subprocess.Popen[str]:
    cfg = _station_toml(tmp_path / f"{name}.toml", name, seed)
    return subprocess.Popen(
        [sys.executable, "-c", STATION, "run", "--headless", "--config", str(cfg), "--db", f"sqlite:///{db}",
         "--duration", str(duration), "--no-archive", "--quiet", "--report", str(tmp_path / f"{name}.json")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _rows(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db, timeout=30)
    try:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT uid) FROM inspections").fetchone()
    finally:
        con.close()
    return int(n), int(distinct)


def _has_rows(db: Path, station: str) -> bool:
    try:
        con = sqlite3.connect(db, timeout=30)
        try:
            return con.execute("SELECT 1 FROM inspections WHERE camera_id LIKE ? LIMIT 1",
                               (f"{station}-%",)).fetchone() is not None
        finally:
            con.close()
    except sqlite3.Error:  # not created or not migrated yet
        return False


def test_two_stations_on_one_sqlite_database_lose_nothing_while_it_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    journals = [db.with_name("shared.db.spool.jsonl"), db.with_name("shared.db.spool-1.jsonl")]
    # the first station creates and migrates the database; the second starts once it exists
    a = _start_station(tmp_path, "a", 4_000_000, db, duration=LOCK_S + 9)
    procs = [a]
    locker = None
    try:
        wait_until(lambda: _has_rows(db, "a"), 60, "the first station's rows")
        b = _start_station(tmp_path, "b", 5_000_000, db, duration=LOCK_S + 7)
        procs.append(b)
        wait_until(lambda: _has_rows(db, "b"), 60, "the second station's rows")
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(LOCK_S)], stdout=subprocess.PIPE,
                                  text=True)
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        assert locker.wait(timeout=LOCK_S + 30) == 0
        outputs = [p.communicate(timeout=90)[0] for p in procs]
    finally:
        for p in [*procs, *([locker] if locker else [])]:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    reports = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "b")]
    for rep in reports:
        assert rep["lost"] == 0 and rep["db"]["lost"] == 0
        assert rep["db"]["spooled"] > 0, "the lock did not reach this station: nothing was spooled"
        assert rep["db"]["skipped_full"] == 0
    accepted = sum(int(rep["db"]["accepted"]) for rep in reports)
    assert accepted > 200
    assert _rows(db) == (accepted, accepted)  # every accepted result of both stations, each once
    assert all(j.exists() for j in journals)  # a journal per station
    for j in journals:  # both drained: only their zeroed reserve is left
        assert j.read_bytes().strip(b"\0") == b"", j
