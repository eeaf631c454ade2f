"""ORM classes for station users and the append-only audit trail.

The tables are created by migration ``0002_users_audit`` (0004 adds the hash chain and
the login counters). The audit log is append-only at three levels: the ORM refuses to
flush an update or delete of an `AuditRecord` (this module's mapper events), database
triggers refuse ``UPDATE``/``DELETE``/``REPLACE`` from any client (restored by every
`inspector.storage.db.migrate`), and the hash chain with its signed head
(`inspector.access.audit_verify`) shows what someone who got past both did.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, Float, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from inspector.storage.models import Base, RowId

#: Roles in increasing order of rights (stored as these strings).
ROLE_NAMES: tuple[str, ...] = ("operator", "engineer", "admin")


class AuditTamperError(RuntimeError):
    """Someone tried to change or delete an audit row."""


class UserRecord(Base):
    """A person who may log in to the station.

    ``password_hash`` holds ``scrypt$n$r$p$salt$hash`` (base64 salt and hash), never the
    password; see `inspector.access.users.hash_password`.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('operator', 'engineer', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    # login throttling (migration 0004): failures since the last good login, and until when locked
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    locked_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditRecord(Base):
    """One change made through the station's control API (who, when, what, old -> new)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)  # epoch seconds, UTC
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), default="")
    old: Mapped[str | None] = mapped_column(Text, nullable=True)
    new: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the hash chain (migration 0004, `inspector.storage.audit_chain`)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


@event.listens_for(AuditRecord, "before_update")
def _refuse_update(_mapper: Any, _connection: Any, target: AuditRecord) -> None:
    raise AuditTamperError(f"audit_log: row {target.id} cannot be changed (the audit trail is append-only)")


@event.listens_for(AuditRecord, "before_delete")
def _refuse_delete(_mapper: Any, _connection: Any, target: AuditRecord) -> None:
    raise AuditTamperError(f"audit_log: row {target.id} cannot be deleted (the audit trail is append-only)")
