"""The database writer against real faults: a locked SQLite file, a PostgreSQL server that
goes away, and kill -9 in the middle of writing."""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
from sqlalchemy import Engine, text

from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result
from tests.reliability.conftest import PostgresServer
from tests.reliability.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
#: A whole uid in the kill -9 child's commit log (a write cut short by SIGKILL leaves a fragment).
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Producer:
    """Submits results to a writer at a steady pace from its own thread, like the fan-out."""

    def __init__(self, writer: DbWriter, per_s: float = 200.0) -> None:
        self.writer = writer
        self.period = 1.0 / per_s
        self.accepted = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.max_submit_s = 0.0

    def _run(self) -> None:
        seq = 0
        while not self._stop.wait(self.period):
            seq += 1
            r = make_result(f"cam{seq % 3}", seq, "NG" if seq % 7 == 0 else "OK",
                            [("scratch", 0.9)] if seq % 7 == 0 else [])
            t0 = time.perf_counter()
            ok = self.writer.submit(r)
            self.max_submit_s = max(self.max_submit_s, time.perf_counter() - t0)
            if ok:
                self.accepted += 1
            else:
                self.refused += 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        n, distinct = conn.execute(text("SELECT count(*), count(DISTINCT uid) FROM inspections")).one()
    return int(n), int(distinct)


# ---------------------------------------------------------------------------- locked SQLite
@pytest.fixture
def locker(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A second process that can take SQLite's write lock on the database (BEGIN EXCLUSIVE)."""
    db = tmp_path / "locked.db"
    code = (
        "import sqlite3, sys\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "for line in sys.stdin:\n"
        "    con.execute('BEGIN EXCLUSIVE' if line.strip() == 'lock' else 'COMMIT')\n"
        "    print('done', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    yield db, proc
    proc.kill()
    proc.wait()


def _tell(proc: subprocess.Popen[str], what: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(what + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def test_writer_survives_a_database_locked_by_another_process(
    tmp_path: Path, locker: tuple[Path, subprocess.Popen[str]]
) -> None:
    db, proc = locker
    engine = open_database(f"sqlite:///{db}", busy_timeout_ms=200)
    migrate(engine)
    writer = DbWriter(engine, spool_path=tmp_path / "spool.jsonl", retry_s=0.3, linger_s=0.01)
    writer.start()
    try:
        with Producer(writer) as producer:
            wait_until(lambda: writer.rows_written > 50, 10, "rows written")
            _tell(proc, "lock")  # another program holds the write lock
            wait_until(lambda: writer.spooled > 50, 10, "results spooled while locked")
            assert writer.stats()["spool_size"] > 0
            time.sleep(1.0)
            _tell(proc, "unlock")
            wait_until(lambda: writer.stats()["spool_size"] == 0, 15, "the spool to drain")
            time.sleep(0.3)
    finally:
        writer.stop()
    assert producer.refused == 0 and producer.max_submit_s < 0.05  # the fan-out never waited on the lock
    assert _counts(engine) == (producer.accepted, producer.accepted)  # nothing lost, nothing twice
    assert writer.rows_written == producer.accepted
    engine.dispose()


# ---------------------------------------------------------------------------- PostgreSQL
def test_writer_rides_out_a_postgresql_outage(tmp_path: Path, postgres: PostgresServer) -> None:
    engine = open_database(postgres.url)
    migrate(engine)
    with engine.begin() as conn:  # the module-scoped server may hold rows of an earlier test
        conn.execute(text("DELETE FROM detections"))
        conn.execute(text("DELETE FROM inspections"))
        conn.execute(text("DELETE FROM camera_events"))
    writer = DbWriter(engine, spool_path=tmp_path / "pg-spool.jsonl", retry_s=0.3, linger_s=0.01)
    writer.start()
    try:
        with Producer(writer) as producer:
            wait_until(lambda: writer.rows_written > 50, 15, "rows written")
            postgres.stop("immediate")  # connections drop mid-transaction
            writer.record_camera_event("cam0", "streaming", "offline", reason="written while the DB is down")
            wait_until(lambda: writer.spooled > 100, 15, "results spooled while the server is down")
            postgres.start()
            wait_until(lambda: writer.stats()["spool_size"] == 0, 20, "the spool to drain")
            time.sleep(0.3)
    finally:
        writer.stop()
    assert producer.refused == 0
    assert _counts(engine) == (producer.accepted, producer.accepted)
    assert writer.rows_written == producer.accepted
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM camera_events WHERE reason LIKE 'written while%'")) == 1
    engine.dispose()


# ---------------------------------------------------------------------------- kill -9
@pytest.mark.slow
def test_kill_9_at_any_moment_loses_nothing_reported_and_never_corrupts(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    committed = tmp_path / "committed.txt"
    rng = random.Random(1234)
    killed_with_rows = 0
    for i in range(50):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_child", str(db), str(committed), str(i + 1)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", f"child {i} did not start"
        time.sleep(rng.uniform(0.02, 0.5))  # a random moment within the bursts
        child.send_signal(signal.SIGKILL)
        child.wait()
        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"corrupt after kill {i}"
            stored = {u for (u,) in con.execute("SELECT uid FROM inspections")}
            assert con.execute("SELECT count(*) FROM inspections").fetchone()[0] == len(stored)
        finally:
            con.close()
        reported = {u for u in committed.read_text().split() if UID.fullmatch(u)} if committed.exists() else set()
        missing = reported - stored
        assert not missing, f"kill {i}: {len(missing)} results reported as written are gone"
        killed_with_rows += bool(reported)
    assert killed_with_rows >= 45  # the kills really landed while writing
    assert len(stored) > 1000


def test_database_on_a_read_only_filesystem_is_refused(small_filesystem: Path) -> None:
    """A database file on a filesystem mounted read-only (root can write through any file mode)."""
    from inspector.storage.db import StorageError

    db = small_filesystem / "station.db"
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    engine.dispose()
    res = subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot remount read-only: {res.stderr.strip()[:200]}")
    url = f"sqlite:///{db}"
    with pytest.raises(StorageError) as info:
        open_database(url, durable=True)
    msg = str(info.value)
    assert "\n" not in msg and repr(url) in msg and "read-only" in msg
