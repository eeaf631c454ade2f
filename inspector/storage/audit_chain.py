"""The audit trail's hash chain and its append-only triggers (SQLite and PostgreSQL).

Every ``audit_log`` row carries ``hash = sha256(canonical(id, at, user, action, target,
old, new, prev_hash))`` and the ``prev_hash`` of the row before it (`GENESIS` for the
first). Changing, removing or inserting a row in the middle breaks the chain; removing
the newest rows is caught by the signed head anchor (`inspector.access.audit_anchor`).

The triggers refuse ``UPDATE``, ``DELETE``, ``TRUNCATE`` (PostgreSQL) and, on SQLite,
``INSERT OR REPLACE`` of an existing id (SQLite runs no delete trigger for REPLACE, so a
``BEFORE INSERT`` trigger refuses an id that exists). `ensure_audit_triggers` is
idempotent: `inspector.storage.db.migrate` runs it every time, so dropped triggers come
back with the next start.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Connection

__all__ = ["GENESIS", "MESSAGE", "drop_audit_triggers", "ensure_audit_triggers", "entry_hash"]

#: ``prev_hash`` of the first entry.
GENESIS = "0" * 64
#: The error every refused change raises (tests and users match on it).
MESSAGE = "audit_log is append-only"

_SQLITE_TRIGGERS = {
    "audit_log_no_update": f"BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "audit_log_no_delete": f"BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "audit_log_no_replace": (
        "BEFORE INSERT ON audit_log WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
    ),
}
_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
    f"BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$ LANGUAGE plpgsql"
)
_PG_TRIGGERS = {
    "audit_log_append_only": "BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW",
    "audit_log_no_truncate": "BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT",
}


def entry_hash(
    entry_id: int,
    at: float,
    user: str,
    action: str,
    target: str,
    old: str | None,
    new: str | None,
    prev_hash: str,
) -> str:
    """The sha256 (hex) of one entry's canonical form (a JSON array; floats round-trip exactly)."""
    canonical = json.dumps(
        [int(entry_id), float(at), user, action, target, old, new, prev_hash],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def ensure_audit_triggers(conn: Connection) -> list[str]:
    """(Re)create any missing append-only trigger on ``audit_log``; returns those created."""
    dialect = conn.dialect.name
    created: list[str] = []
    if dialect == "sqlite":
        present = set(
            conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
            ).scalars()
        )
        for name, body in _SQLITE_TRIGGERS.items():
            if name not in present:
                conn.exec_driver_sql(f"CREATE TRIGGER {name} {body}")
                created.append(name)
    elif dialect == "postgresql":
        conn.exec_driver_sql(_PG_FUNCTION)
        present = set(
            conn.exec_driver_sql(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal"
            ).scalars()
        )
        for name, when in _PG_TRIGGERS.items():
            if name not in present:
                conn.exec_driver_sql(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION audit_log_append_only()")
                created.append(name)
    return created


def drop_audit_triggers(conn: Connection) -> None:
    """Drop the append-only triggers (only migrations do this, to backfill the chain)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        for name in _SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for name in _PG_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON audit_log")
