"""The audit trail is tamper-evident: hash chain, signed head anchor, triggers that come back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from inspector.access.audit_verify import verify_audit
from inspector.access.users import AuditLog
from inspector.cli import app
from inspector.storage.audit_chain import GENESIS, entry_hash
from inspector.storage.db import migrate, open_database


def _record(engine: Engine, n: int = 5) -> AuditLog:
    audit = AuditLog(engine)
    for i in range(n):
        audit.record("alice", "camera.set_feature", "cam1/Gain", i, i + 1)
    return audit


def _drop_triggers(engine: Engine) -> None:
    with engine.begin() as conn:
        names = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
        ).scalars().all()
        assert names, "the migration installs triggers on audit_log"
        for name in names:
            conn.exec_driver_sql(f"DROP TRIGGER {name}")


def _row(engine: Engine, entry_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_log WHERE id = :i"), {"i": entry_id}).mappings().one())


def test_intact_chain(engine: Engine) -> None:
    _record(engine)
    report = verify_audit(engine)
    assert report.ok and report.entries == 5
    assert str(report) == "5 entries, chain intact"


def test_empty_chain_is_intact(engine: Engine) -> None:
    assert str(verify_audit(engine)) == "0 entries, chain intact"


def test_insert_or_replace_is_refused(engine: Engine) -> None:
    _record(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("INSERT OR REPLACE INTO audit_log (id, at, \"user\", action, target, old, new) "
                          "VALUES (2, 0, 'mallory', 'camera.set_feature', 'cam1/Gain', '1', '9')"))
    assert _row(engine, 2)["user"] == "alice"


def test_rewrite_without_triggers_is_detected(engine: Engine) -> None:
    _record(engine)
    _drop_triggers(engine)
    row = _row(engine, 2)
    with engine.begin() as conn:
        conn.execute(text("INSERT OR REPLACE INTO audit_log (id, at, \"user\", action, target, old, new, prev_hash, hash) "
                          "VALUES (2, :at, 'alice', 'camera.set_feature', 'cam1/Gain', '1', '9', :p, :h)"),
                     {"at": row["at"], "p": row["prev_hash"], "h": row["hash"]})
    report = verify_audit(engine)
    assert not report.ok and report.problem == "audit entry 2 changed (hash mismatch)"


def test_consistent_rewrite_is_detected(engine: Engine) -> None:
    """Even a rewrite that recomputes the entry's hash breaks the link to the next entry."""
    _record(engine)
    _drop_triggers(engine)
    row = _row(engine, 2)
    forged = entry_hash(2, float(row["at"]), "alice", "camera.set_feature", "cam1/Gain", "1", "9",  # type: ignore[arg-type]
                        str(row["prev_hash"]))
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET new = '9', hash = :h WHERE id = 2"), {"h": forged})
    assert verify_audit(engine).problem == "audit entry 2 changed (entry 3 does not link to it)"


@pytest.mark.parametrize(
    ("entries", "drop_triggers", "sql", "problem"),
    [
        pytest.param(5, True, "DELETE FROM audit_log WHERE id = 3",
                     "entries after 2 removed (entry 4 links to a missing entry)", id="delete-in-the-middle"),
        pytest.param(5, True, "DELETE FROM audit_log WHERE id > 3",
                     "entries after 3 removed (head anchor says 5 entries, the last 5)", id="delete-newest"),
        pytest.param(2, False, "INSERT INTO audit_log (id, at, \"user\", action, target) VALUES (3, 1.0, 'x', 'y', '')",
                     "audit entry 3 inserted (it has no hash)", id="row-without-hash"),
    ],
)
def test_tampering_in_plain_sql_is_detected(
    engine: Engine, entries: int, drop_triggers: bool, sql: str, problem: str
) -> None:
    _record(engine, entries)
    if drop_triggers:
        _drop_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text(sql))
    report = verify_audit(engine)
    assert not report.ok and report.problem == problem


def test_forged_row_is_detected(engine: Engine) -> None:
    """A row appended in SQL with a correctly computed hash still is not covered by the anchor."""
    _record(engine)
    last = _row(engine, 5)
    h = entry_hash(6, 1.0, "alice", "users.create", "mallory", None, "admin", str(last["hash"]))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (id, at, \"user\", action, target, old, new, prev_hash, hash) "
                          "VALUES (6, 1.0, 'alice', 'users.create', 'mallory', NULL, 'admin', :p, :h)"),
                     {"p": last["hash"], "h": h})
    report = verify_audit(engine)
    assert not report.ok
    assert report.problem == "audit entry 6 inserted after the head anchor (head anchor says 5 entries, the last 5)"


def test_chain_starts_at_genesis(engine: Engine) -> None:
    _record(engine, 2)
    assert _row(engine, 1)["prev_hash"] == GENESIS
    assert _row(engine, 2)["prev_hash"] == _row(engine, 1)["hash"]


def test_migrate_restores_dropped_triggers(engine: Engine) -> None:
    _record(engine, 2)
    _drop_triggers(engine)
    migrate(engine)  # already at head: the triggers come back all the same
    for stmt in ("DELETE FROM audit_log", "UPDATE audit_log SET new = 'x'",
                 "INSERT OR REPLACE INTO audit_log (id, at, \"user\", action, target) VALUES (1, 0, 'm', 'x', '')"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    assert verify_audit(engine).ok


def test_cli_audit_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'station.db'}"
    eng = open_database(url)
    migrate(eng)
    _record(eng, 3)
    runner = CliRunner()
    res = runner.invoke(app, ["audit", "verify", "--db", url])
    assert res.exit_code == 0, res.output
    assert "3 entries, chain intact" in res.output
    _drop_triggers(eng)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    eng.dispose()
    res = runner.invoke(app, ["audit", "verify", "--db", url])
    assert res.exit_code == 1
    assert "entries after 2 removed (head anchor says 3 entries, the last 3)" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["audit", "verify", "--db", url, "--json"])
    assert res.exit_code == 1 and '"ok": false' in res.output


def test_anchor_is_signed(tmp_path: Path) -> None:
    """Editing the anchor file (to hide a deletion) is detected: it is HMAC-signed."""
    url = f"sqlite:///{tmp_path / 'station.db'}"
    eng = open_database(url)
    migrate(eng)
    _record(eng, 3)
    anchor = tmp_path / "station.db.audit-head"
    assert anchor.is_file()
    anchor.write_text(anchor.read_text().replace('"count": 3', '"count": 2'))
    report = verify_audit(eng)
    eng.dispose()
    assert not report.ok and "not signed by this station's key" in (report.problem or "")


def test_a_bounded_record_waits_once_for_anchor_and_database_together(tmp_path: Path) -> None:
    """``wait_s`` bounds the whole wait: the anchor held by another appender, then a locked database.

    Found through the OPC UA server: a Halt refused for a locked database took twice its audit wait,
    because the wait for the anchor and the wait for the database's lock were each ``wait_s``.
    """
    import sqlite3
    import threading
    import time

    from inspector.access.audit import AuditUnavailable

    url = f"sqlite:///{tmp_path / 'station.db'}"
    eng = open_database(url)
    migrate(eng)
    audit = _record(eng, 1)
    lock = sqlite3.connect(tmp_path / "station.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process's write lock, for the whole test
    held, release = threading.Event(), threading.Event()

    def other_appender() -> None:
        with audit.anchor.locked():
            held.set()
            release.wait(10)

    t = threading.Thread(target=other_appender)
    t.start()
    held.wait(5)
    threading.Timer(1.5, release.set).start()  # the anchor comes free after 1.5 s of the 2.0 s
    start = time.monotonic()
    with pytest.raises(AuditUnavailable):
        audit.record("plc", "opcua.Halt", wait_s=2.0)
    took = time.monotonic() - start
    t.join()
    lock.execute("ROLLBACK")
    lock.close()
    eng.dispose()
    assert 1.4 < took < 2.75, took  # one 2.0 s bound in all (3.5 s when each wait had its own)
