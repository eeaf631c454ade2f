"""Tamper-evident audit chain; login failure counters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``audit_log`` gains ``prev_hash`` and ``hash`` (sha256 hex, see
`inspector.storage.audit_chain`); existing rows are chained in id order. The append-only
triggers are recreated, now also refusing SQLite's ``INSERT OR REPLACE`` and PostgreSQL's
``TRUNCATE``. ``users`` gains the failed-login counter and lockout time that
`inspector.access.users.UserStore` uses for throttling, so a restart does not reset them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from inspector.storage.audit_chain import GENESIS, drop_audit_triggers, ensure_audit_triggers, entry_hash

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    drop_audit_triggers(conn)
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("hash", sa.String(64), nullable=True))
    op.add_column("users", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("users", sa.Column("last_failed_at", sa.Float(), nullable=True))
    op.add_column("users", sa.Column("locked_until", sa.Float(), nullable=True))
    audit = sa.table(
        "audit_log",
        *(sa.column(c) for c in ("id", "at", "user", "action", "target", "old", "new", "prev_hash", "hash")),
    )
    prev = GENESIS
    rows = conn.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
    for r in rows:
        h = entry_hash(r["id"], r["at"], r["user"], r["action"], r["target"], r["old"], r["new"], prev)
        conn.execute(sa.update(audit).where(audit.c.id == r["id"]).values(prev_hash=prev, hash=h))
        prev = h
    ensure_audit_triggers(conn)


def downgrade() -> None:
    conn = op.get_bind()
    drop_audit_triggers(conn)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locked_until")
        batch.drop_column("last_failed_at")
        batch.drop_column("failed_logins")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    ensure_audit_triggers(conn)
