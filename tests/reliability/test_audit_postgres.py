"""The tamper-evident audit trail on a real PostgreSQL (migration 0004, triggers, chain)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from inspector.access.audit_verify import verify_audit
from inspector.access.users import AuditLog, UserStore
from inspector.storage.db import migrate, open_database
from tests.reliability.conftest import PostgresServer


def test_audit_chain_on_postgresql(postgres: PostgresServer) -> None:
    engine = open_database(postgres.url)
    try:
        migrate(engine)
        audit = AuditLog(engine)
        for i in range(4):
            audit.record("alice", "camera.set_feature", "cam1/Gain", i, i + 1)
        assert str(verify_audit(engine)) == "4 entries, chain intact"
        for stmt in ("UPDATE audit_log SET new = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(stmt)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER audit_log_append_only ON audit_log")
            conn.execute(text("DELETE FROM audit_log WHERE id = 2"))
        assert verify_audit(engine).problem == "entries after 1 removed (entry 3 links to a missing entry)"
        migrate(engine)  # puts the trigger back
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM audit_log")
        UserStore(engine).create_user("admin", "admin-pass", "admin", by="test")  # users table has 0004's columns
    finally:
        engine.dispose()
