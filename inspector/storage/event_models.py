"""ORM class for camera state transitions (the ``camera_events`` table, migration 0003).

Every transition a camera's state machine makes (CLOSED, OPEN, STREAMING, STALE,
OFFLINE, ERROR) is stored with its reason, so a quality engineer can line up a gap in
the inspection history with the moment a camera went away and came back.
"""

from __future__ import annotations

from sqlalchemy import Float, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inspector.storage.models import Base, RowId


class CameraEventRecord(Base):
    """One camera state transition; ``uid`` makes a replay from the spool idempotent."""

    __tablename__ = "camera_events"
    __table_args__ = (Index("ix_camera_events_camera_id_at", "camera_id", "at"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    at: Mapped[float] = mapped_column(Float)  # epoch seconds, UTC
    camera_id: Mapped[str] = mapped_column(String(64))
    old_state: Mapped[str] = mapped_column(String(16))
    new_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
