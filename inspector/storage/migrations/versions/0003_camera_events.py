"""Camera state transitions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

One row per transition of a camera's state (streaming, stale, offline, ...) with the
reason, written by the database writer like inspections (spooled while the database
is away, de-duplicated by ``uid`` on replay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "camera_events",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("old_state", sa.String(16), nullable=False),
        sa.Column("new_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_events")),
        sa.UniqueConstraint("uid", name=op.f("uq_camera_events_uid")),
    )
    op.create_index(op.f("ix_camera_events_camera_id_at"), "camera_events", ["camera_id", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_camera_events_camera_id_at"), table_name="camera_events")
    op.drop_table("camera_events")
