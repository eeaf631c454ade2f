"""Audited actions while the database writer commits: never 'database is locked' (read-then-write upgrade)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from inspector.access.audit import AuditLog
from inspector.storage.db import migrate, open_database


def test_audit_records_while_another_connection_keeps_writing(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    stop = threading.Event()
    writes = [0]

    def writer() -> None:  # what the DB writer does: short write transactions, back to back
        con = sqlite3.connect(db, isolation_level=None, timeout=5)
        con.execute("create table if not exists churn (x integer)")
        while not stop.is_set():
            con.execute("begin immediate")
            con.executemany("insert into churn values (?)", [(i,) for i in range(200)])
            con.execute("commit")
            writes[0] += 1
            time.sleep(0.002)  # the DB writer gathers its next batch (it lingers 50 ms)
        con.close()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        time.sleep(0.1)
        log = AuditLog(engine)
        for i in range(60):
            log.record("eve", "camera.set_feature", f"cam{i % 3}", i, i + 1)
    finally:
        stop.set()
        t.join(5)
        engine.dispose()
    assert writes[0] > 10, "the writer must have been busy meanwhile"
    assert len(AuditLog(open_database(f"sqlite:///{db}")).list(limit=100)) == 60
