"""Initial schema: cameras, models, inspections, detections.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Hand-written so it runs unchanged on SQLite and PostgreSQL. Names are wrapped in
``op.f`` so they are used as written, whatever naming convention env.py applies.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit ids on PostgreSQL; exactly INTEGER on SQLite so the id aliases the rowid.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("vendor", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("serial", sa.String(128), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cameras")),
    )
    op.create_table(
        "models",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_models")),
    )
    op.create_table(
        "inspections",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(2), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("wait_ms", sa.Float(), nullable=False),
        sa.Column("preprocess_ms", sa.Float(), nullable=False),
        sa.Column("inference_ms", sa.Float(), nullable=False),
        sa.Column("postprocess_ms", sa.Float(), nullable=False),
        sa.Column("verdict_ms", sa.Float(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("frame_width", sa.Integer(), nullable=False),
        sa.Column("frame_height", sa.Integer(), nullable=False),
        sa.Column("settings_digest", sa.String(128), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=True),
        sa.Column("review_mark", sa.String(16), nullable=True),
        sa.Column("reviewed_by", sa.String(128), nullable=True),
        sa.Column("reviewed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspections")),
        sa.UniqueConstraint("uid", name=op.f("uq_inspections_uid")),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name=op.f("fk_inspections_camera_id_cameras")),
        sa.ForeignKeyConstraint(["model_sha256"], ["models.sha256"], name=op.f("fk_inspections_model_sha256_models")),
        sa.CheckConstraint("verdict IN ('OK', 'NG')", name=op.f("ck_inspections_verdict")),
        sa.CheckConstraint(
            "review_mark IS NULL OR review_mark IN ('confirmed', 'false_call', 'missed')",
            name=op.f("ck_inspections_review_mark"),
        ),
    )
    op.create_index(op.f("ix_inspections_acquired_at_id"), "inspections", ["acquired_at", "id"])
    op.create_index(op.f("ix_inspections_camera_id_acquired_at"), "inspections", ["camera_id", "acquired_at", "id"])
    op.create_index(op.f("ix_inspections_verdict_acquired_at"), "inspections", ["verdict", "acquired_at", "id"])
    op.create_index(op.f("ix_inspections_review_mark"), "inspections", ["review_mark"])

    op.create_table(
        "detections",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("inspection_id", _ROW_ID, nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detections")),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_detections_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_detections_inspection_id"), "detections", ["inspection_id"])
    op.create_index(op.f("ix_detections_class_name_inspection_id"), "detections", ["class_name", "inspection_id"])


def downgrade() -> None:
    op.drop_table("detections")
    op.drop_table("inspections")
    op.drop_table("models")
    op.drop_table("cameras")
