"""The append-only, tamper-evident audit trail (table ``audit_log``; engine side, no Qt).

Each entry is chained to the one before it by a sha256 hash
(`inspector.storage.audit_chain`), and the chain's head is anchored, signed, outside the
database (`inspector.access.audit_anchor`); `inspector.access.audit_verify.verify_audit` checks both.
There is no API to change or delete an entry; the ORM and database triggers refuse it too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from inspector.access.audit_anchor import AnchorForged, AnchorRecord, ChainHead, HeadAnchor, anchor_for
from inspector.storage.audit_chain import GENESIS, entry_hash
from inspector.storage.db import writing
from inspector.storage.users_models import AuditRecord

log = logging.getLogger(__name__)

__all__ = ["AuditEntry", "AuditLog", "AuditUnavailable"]

_TABLE: Table = AuditRecord.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class AuditEntry:
    """One audit row: who did what to which thing, with the value before and after."""

    id: int
    at: float
    user: str
    action: str
    target: str
    old: str | None
    new: str | None
    hash: str | None = None


class AuditLog:
    """The append-only audit trail.

    Args:
        engine: The migrated station database.
        anchor: Where the chain's signed head lives (default: `anchor_for` the engine).
    """

    def __init__(self, engine: Engine, anchor: HeadAnchor | None = None) -> None:
        self.engine = engine
        self.anchor = anchor if anchor is not None else anchor_for(engine)

    def record(self, user: str, action: str, target: str = "", old: object = None, new: object = None, *,
               wait_s: float | None = None) -> AuditEntry:
        """Append one entry; ``old``/``new`` are stored as text (None stays NULL).

        One appender at a time (the anchor's lock across threads and processes; on
        PostgreSQL also a table lock, for stations with their own anchors): each entry
        links to the newest one.

        Args:
            wait_s: The longest wait for the anchor and the database's write lock together (None: the
                database's busy timeout). A PLC link passes a short one: a command whose
                entry cannot be written in time is refused, and its server never stalls.

        Raises:
            AuditUnavailable: ``wait_s`` passed, or the database refused the write.
        """
        at = time.time()
        old_t, new_t = _as_text(old), _as_text(new)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        try:
            with self.anchor.locked(wait_s), _bounded(writing(self.engine), _left(deadline)) as conn:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("LOCK TABLE audit_log IN EXCLUSIVE MODE")  # readers still read
                    last = conn.execute(select(_TABLE.c.id, _TABLE.c.hash).order_by(_TABLE.c.id.desc()).limit(1)).first()
                    count = int(conn.scalar(select(func.count()).select_from(_TABLE)) or 0)
                    before = ChainHead(count, int(last.id), last.hash or GENESIS) if last else ChainHead.empty()
                    entry_id = before.last_id + 1
                    h = entry_hash(entry_id, at, user, action, target, old_t, new_t, before.last_hash)
                    after = ChainHead(count + 1, entry_id, h)
                    tracked = self._write_anchor(AnchorRecord(before, pending=after), expect=before)
                    conn.execute(insert(_TABLE).values(id=entry_id, at=at, user=user, action=action, target=target,
                                                       old=old_t, new=new_t, prev_hash=before.last_hash, hash=h))
                if tracked:
                    self._write_anchor(AnchorRecord(after), expect=None)
        except (TimeoutError, SQLAlchemyError) as exc:
            if wait_s is None and not isinstance(exc, TimeoutError):
                raise
            raise AuditUnavailable(f"audit: {action} by {user} not recorded: {_one_line(exc)}") from None
        log.info("audit: %s %s %s: %s -> %s", user, action, target, old_t, new_t)
        return AuditEntry(entry_id, at, user, action, target, old_t, new_t, h)

    def _write_anchor(self, record: AnchorRecord, *, expect: ChainHead | None) -> bool:
        """Write the anchor; with ``expect``, only if the anchor (if any) accepts that head."""
        try:
            if expect is not None:
                stored = self.anchor.read()
                if stored is None and expect.count > 0:
                    log.warning("audit: no head anchor at %s; anchoring the trail's %d entries now",
                                self.anchor.where, expect.count)
                elif stored is not None and not stored.accepts(expect):
                    log.error("audit: the trail does not match its head anchor %s (run 'inspector audit verify'); "
                              "the anchor is left as it is", self.anchor.where)
                    return False
            self.anchor.write(record)
        except AnchorForged as exc:
            log.error("audit: %s (run 'inspector audit verify'); the anchor is left as it is", exc)
            return False
        except OSError as exc:  # the entry itself is never given up for its anchor
            log.error("audit: cannot write the head anchor %s: %s", self.anchor.where, exc)
            return False
        return True

    def list(self, limit: int = 500, since: float | None = None) -> list[AuditEntry]:
        """The newest rows first, at most ``limit``, optionally only those at or after ``since``."""
        stmt = select(AuditRecord).order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(AuditRecord.at >= since)
        with Session(self.engine) as s:
            return [_entry(r) for r in s.scalars(stmt)]

    def count(self) -> int:
        """Number of rows."""
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(AuditRecord)) or 0)


class AuditUnavailable(RuntimeError):
    """An entry that could not be written within its bounded wait (the database is locked or away)."""


def _left(deadline: float | None) -> float | None:
    """What is left of one bounded wait (at least 1 ms: the lock is still tried once)."""
    return None if deadline is None else max(0.001, deadline - time.monotonic())


@contextlib.contextmanager
def _bounded(engine: Engine, wait_s: float | None) -> Iterator[Connection]:
    """A connection whose write transactions wait at most ``wait_s`` for the database's lock."""
    with engine.connect() as conn:
        if wait_s is None:
            yield conn
            return
        ms = max(1, int(wait_s * 1000))
        if conn.dialect.name == "sqlite":
            raw = conn.connection.driver_connection  # outside any transaction: BEGIN IMMEDIATE waits this long
            assert raw is not None
            before = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            raw.execute(f"PRAGMA busy_timeout={ms}")
            try:
                yield conn
            finally:
                raw.execute(f"PRAGMA busy_timeout={int(before)}")
            return
        if conn.dialect.name == "postgresql":
            # session-level, put back before the connection returns to the pool
            conn.exec_driver_sql(f"SET lock_timeout = {ms}")
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.exec_driver_sql("RESET lock_timeout")
                conn.commit()
            return
        yield conn


def _one_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _entry(r: AuditRecord) -> AuditEntry:
    return AuditEntry(r.id, r.at, r.user, r.action, r.target, r.old, r.new, r.hash)
