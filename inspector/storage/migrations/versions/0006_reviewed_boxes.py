"""Box-by-box review of an inspection's image.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-08

``box_reviews`` holds one row per inspection whose boxes an engineer reviewed (who, when);
``reviewed_boxes`` the boxes of that review in image pixels: each detection confirmed, edited
(moved, resized or given another class) or rejected, and boxes drawn by hand (a defect the
model missed). A review with no box left is an image marked clean. Both are new tables (no
change to ``inspections``, whose rows are many); they go with their inspection (ON DELETE CASCADE).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "box_reviews",
        sa.Column("inspection_id", _ROW_ID, nullable=False),
        sa.Column("reviewed_by", sa.String(128), nullable=False),
        sa.Column("reviewed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("inspection_id", name=op.f("pk_box_reviews")),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE",
                                name=op.f("fk_box_reviews_inspection_id_inspections")),
    )
    op.create_table(
        "reviewed_boxes",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("inspection_id", _ROW_ID, nullable=False),
        sa.Column("detection_id", _ROW_ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewed_boxes")),
        sa.ForeignKeyConstraint(["inspection_id"], ["box_reviews.inspection_id"], ondelete="CASCADE",
                                name=op.f("fk_reviewed_boxes_inspection_id_box_reviews")),
        sa.CheckConstraint("status IN ('confirmed', 'edited', 'drawn', 'rejected')", name=op.f("ck_reviewed_boxes_status")),
    )
    op.create_index(op.f("ix_reviewed_boxes_inspection_id"), "reviewed_boxes", ["inspection_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reviewed_boxes_inspection_id"), table_name="reviewed_boxes")
    op.drop_table("reviewed_boxes")
    op.drop_table("box_reviews")
