"""Parts of a triggered line; inspections know their part.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``parts`` holds one row per part verdict (`inspector.pipeline.results.PartResult`), unique
on ``(line, part_id, triggered_at)`` so a spool replayed twice never stores a part twice.
``inspections`` gains ``part_id`` (NULL for free-running cameras and for rows written
before this revision) and ``late`` (the frame arrived after its part's verdict). Both are
plain ``ADD COLUMN``s (no table rebuild, existing rows untouched); the new index on
``inspections(part_id, acquired_at)`` is built over the existing rows once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "parts",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("part_id", sa.String(64), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("trigger_id", sa.BigInteger(), nullable=False),
        sa.Column("triggered_at", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(2), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("deciding_camera", sa.String(64), nullable=True),
        sa.Column("expected", sa.Text(), nullable=False),
        sa.Column("missing", sa.Text(), nullable=False),
        sa.Column("deadline_met", sa.Boolean(), nullable=False),
        sa.Column("budget_ms", sa.Float(), nullable=False),
        sa.Column("acquired_ms", sa.Float(), nullable=False),
        sa.Column("inspected_ms", sa.Float(), nullable=False),
        sa.Column("verdict_ms", sa.Float(), nullable=False),
        sa.Column("truth_ng", sa.Boolean(), nullable=True),
        sa.Column("recipe", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parts")),
        sa.UniqueConstraint("line", "part_id", "triggered_at", name=op.f("uq_parts_line_part_id_triggered_at")),
        sa.CheckConstraint("verdict IN ('OK', 'NG')", name=op.f("ck_parts_verdict")),
    )
    op.create_index(op.f("ix_parts_triggered_at_id"), "parts", ["triggered_at", "id"])
    op.create_index(op.f("ix_parts_line_triggered_at"), "parts", ["line", "triggered_at", "id"])
    op.create_index(op.f("ix_parts_verdict_triggered_at"), "parts", ["verdict", "triggered_at", "id"])
    op.create_index(op.f("ix_parts_part_id_triggered_at"), "parts", ["part_id", "triggered_at"])

    op.add_column("inspections", sa.Column("part_id", sa.String(64), nullable=True))
    op.add_column("inspections", sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(op.f("ix_inspections_part_id_acquired_at"), "inspections", ["part_id", "acquired_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_inspections_part_id_acquired_at"), table_name="inspections")
    # A plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: rebuilding ``inspections``
    # would DROP the table and, with foreign keys on, cascade-delete every detection.
    op.drop_column("inspections", "late")
    op.drop_column("inspections", "part_id")
    op.drop_table("parts")
