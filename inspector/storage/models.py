"""The inspection database schema as SQLAlchemy 2.0 typed ORM classes.

The tables are created by the Alembic migrations in ``migrations/``; these classes
describe the same schema for queries. Keep the two in step: a schema change is a new
migration *and* an edit here.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Review marks a quality engineer can put on an inspection.
REVIEW_MARKS: tuple[str, ...] = ("confirmed", "false_call", "missed")

#: Ids are 64-bit on PostgreSQL (a 24/7 line outgrows 2**31 detections); on SQLite the
#: column must be exactly ``INTEGER PRIMARY KEY`` to alias the rowid.
RowId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable names for migrations)."""

    metadata = MetaData(naming_convention=NAMING)


class CameraRecord(Base):
    """A camera that produced at least one stored inspection."""

    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="")
    vendor: Mapped[str] = mapped_column(String(128), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    serial: Mapped[str] = mapped_column(String(128), default="")
    first_seen: Mapped[float] = mapped_column(Float)


class ModelRecord(Base):
    """A model (identified by the sha256 of its file) that produced inspections."""

    __tablename__ = "models"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    backend: Mapped[str] = mapped_column(String(32), default="")
    first_seen: Mapped[float] = mapped_column(Float)


class InspectionRecord(Base):
    """One inspected frame: verdict, timings, provenance and the engineer's review."""

    __tablename__ = "inspections"
    __table_args__ = (
        CheckConstraint("verdict IN ('OK', 'NG')", name="verdict"),
        CheckConstraint(
            "review_mark IS NULL OR review_mark IN ('confirmed', 'false_call', 'missed')", name="review_mark"
        ),
        # History pages are ordered by (acquired_at DESC, id DESC); the per-filter indexes
        # carry ``id`` too so PostgreSQL can walk them in page order (SQLite adds the
        # rowid to every index anyway).
        Index("ix_inspections_acquired_at_id", "acquired_at", "id"),
        Index("ix_inspections_camera_id_acquired_at", "camera_id", "acquired_at", "id"),
        Index("ix_inspections_verdict_acquired_at", "verdict", "acquired_at", "id"),
        Index("ix_inspections_review_mark", "review_mark"),
        # the frames of a part (migration 0005); acquired_at separates parts that share an id
        Index("ix_inspections_part_id_acquired_at", "part_id", "acquired_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[float] = mapped_column(Float)  # epoch seconds, UTC
    verdict: Mapped[str] = mapped_column(String(2))
    rule: Mapped[str] = mapped_column(Text, default="")
    model_sha256: Mapped[str] = mapped_column(ForeignKey("models.sha256"))
    backend: Mapped[str] = mapped_column(String(32), default="")
    wait_ms: Mapped[float] = mapped_column(Float, default=0.0)
    preprocess_ms: Mapped[float] = mapped_column(Float, default=0.0)
    inference_ms: Mapped[float] = mapped_column(Float, default=0.0)
    postprocess_ms: Mapped[float] = mapped_column(Float, default=0.0)
    verdict_ms: Mapped[float] = mapped_column(Float, default=0.0)
    total_ms: Mapped[float] = mapped_column(Float, default=0.0)
    frame_width: Mapped[int] = mapped_column(Integer, default=0)
    frame_height: Mapped[int] = mapped_column(Integer, default=0)
    settings_digest: Mapped[str] = mapped_column(String(128), default="")
    image_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    review_mark: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reviewed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The part the frame belongs to on a triggered line (None when free-running), and
    #: whether it arrived after that part's verdict (stored, never counted for it).
    part_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class DetectionRecord(Base):
    """One box of an inspection; ``accepted`` is False for boxes a verdict rule rejected."""

    __tablename__ = "detections"
    __table_args__ = (
        Index("ix_detections_inspection_id", "inspection_id"),
        Index("ix_detections_class_name_inspection_id", "class_name", "inspection_id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    accepted: Mapped[bool] = mapped_column(Boolean)


class PartRecord(Base):
    """One part of a triggered line: its verdict, what decided it, and its cycle times.

    The part's frames are the ``inspections`` rows with its ``part_id`` (see
    `inspector.storage.history.get_part`). ``expected`` and ``missing`` are comma-separated
    camera ids (camera ids never contain commas); ``missing`` is empty for a complete part.
    ``(line, part_id, triggered_at)`` is unique, so replaying the spool never stores a part
    twice, while a part id that comes back (a re-inspected part, the station's own ids after a
    restart) is a new row.
    """

    __tablename__ = "parts"
    __table_args__ = (
        UniqueConstraint("line", "part_id", "triggered_at"),
        CheckConstraint("verdict IN ('OK', 'NG')", name="verdict"),
        # pages are ordered by (triggered_at DESC, id DESC), like the inspection history
        Index("ix_parts_triggered_at_id", "triggered_at", "id"),
        Index("ix_parts_line_triggered_at", "line", "triggered_at", "id"),
        Index("ix_parts_verdict_triggered_at", "verdict", "triggered_at", "id"),
        Index("ix_parts_part_id_triggered_at", "part_id", "triggered_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    part_id: Mapped[str] = mapped_column(String(64))
    line: Mapped[str] = mapped_column(String(64))
    trigger_id: Mapped[int] = mapped_column(BigInteger)
    triggered_at: Mapped[float] = mapped_column(Float)  # epoch seconds, UTC
    verdict: Mapped[str] = mapped_column(String(2))
    reason: Mapped[str] = mapped_column(Text, default="")
    deciding_camera: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expected: Mapped[str] = mapped_column(Text, default="")
    missing: Mapped[str] = mapped_column(Text, default="")
    deadline_met: Mapped[bool] = mapped_column(Boolean)
    budget_ms: Mapped[float] = mapped_column(Float, default=0.0)
    acquired_ms: Mapped[float] = mapped_column(Float, default=0.0)
    inspected_ms: Mapped[float] = mapped_column(Float, default=0.0)
    verdict_ms: Mapped[float] = mapped_column(Float, default=0.0)
    truth_ng: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    recipe: Mapped[str] = mapped_column(String(128), default="")


#: What a box-by-box review did with a box: a detection kept as it was, kept with another place, size
#: or class, or rejected; or a box the engineer drew (a defect the model missed).
BOX_STATUSES: tuple[str, ...] = ("confirmed", "edited", "drawn", "rejected")


class BoxReviewRecord(Base):
    """An engineer's box-by-box review of one inspection's image (migration 0006); no box left: clean."""

    __tablename__ = "box_reviews"

    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), primary_key=True)
    reviewed_by: Mapped[str] = mapped_column(String(128))
    reviewed_at: Mapped[float] = mapped_column(Float)  # epoch seconds, UTC


class ReviewedBoxRecord(Base):
    """One box of a box review, in image pixels; ``detection_id`` is the model's box it came from."""

    __tablename__ = "reviewed_boxes"
    __table_args__ = (
        CheckConstraint("status IN ('confirmed', 'edited', 'drawn', 'rejected')", name="status"),
        Index("ix_reviewed_boxes_inspection_id", "inspection_id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("box_reviews.inspection_id", ondelete="CASCADE"))
    detection_id: Mapped[int | None] = mapped_column(RowId, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    class_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(64))
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
