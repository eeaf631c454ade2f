"""Purge batches: the rows retention deletes (or whose images it clears) in one short transaction each.

Each function picks at most ``batch_rows`` frames, oldest first. The unit is the part on a
triggered line (a part's frames go with it, `part_frames`) and the frame when free-running.
Queries that walk rows examined and kept before (NG or reviewed results of an OK part, say)
resume after a keyset position ``(time, id)``, so that a pass never reads the same kept rows
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Table, and_, delete, func, or_, select, update

from inspector.storage.db import writing
from inspector.storage.event_models import CameraEventRecord
from inspector.storage.history import PART_CLOCK_SLACK_S
from inspector.storage.models import InspectionRecord, PartRecord

_I: Table = InspectionRecord.__table__  # type: ignore[assignment]
_P: Table = PartRecord.__table__  # type: ignore[assignment]
_E: Table = CameraEventRecord.__table__  # type: ignore[assignment]

#: A keyset position ``(time, id)``: rows after it are still to be examined
Keyset = tuple[float, int]
#: Before every row
START: Keyset = (float("-inf"), 0)


class PurgeBatch:
    """Rows chosen for deletion in one transaction, and the images they point to."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.parts: list[int] = []
        self.images: list[str] = []
        self.ng = 0

    def add_frames(self, rows: Sequence[Any]) -> None:
        for r in rows:
            self.frames.append(int(r.id))
            if r.image_path:
                self.images.append(str(r.image_path))

    def __len__(self) -> int:
        return len(self.frames) + len(self.parts)


def ok_parts(engine: Engine, cutoff: float, after: Keyset, batch_rows: int) -> tuple[PurgeBatch, Keyset]:
    """OK parts triggered before ``cutoff`` (with their frames), after ``after``; a part held by an NG or
    reviewed frame is skipped (it goes at ``ng_max_age_days``). Returns the batch and the new position."""
    b = PurgeBatch()
    with engine.connect() as conn:
        while len(b.frames) < batch_rows:
            t, pid = after
            rows = conn.execute(
                select(_P.c.id, _P.c.part_id, _P.c.line, _P.c.triggered_at, _P.c.expected)
                .where(_P.c.verdict == "OK", _P.c.triggered_at < cutoff, _after(_P.c.triggered_at, _P.c.id, t, pid))
                .order_by(_P.c.triggered_at, _P.c.id)
                .limit(64)
            ).all()
            if not rows:
                break
            for part in rows:
                after = (float(part.triggered_at), int(part.id))
                frames = part_frames(conn, part)
                if any(f.verdict == "NG" or f.review_mark is not None for f in frames):
                    continue  # long-lived: goes at ng_max_age_days, with the NG results
                b.parts.append(int(part.id))
                b.add_frames(frames)
                if len(b.frames) >= batch_rows:
                    break
    return b, after


def ok_frames(engine: Engine, cutoff: float, after: Keyset, batch_rows: int) -> tuple[PurgeBatch, Keyset]:
    """Free-running OK frames (no part, not reviewed) acquired before ``cutoff``, after ``after``."""
    b = PurgeBatch()
    with engine.connect() as conn:
        while not b.frames:  # a page of kept NG or reviewed frames: look further
            t, fid = after
            rows = conn.execute(
                select(_I.c.id, _I.c.acquired_at, _I.c.image_path, _I.c.verdict, _I.c.review_mark)
                .where(_I.c.part_id.is_(None), _I.c.acquired_at < cutoff,
                       _after(_I.c.acquired_at, _I.c.id, t, fid))
                .order_by(_I.c.part_id, _I.c.acquired_at, _I.c.id)  # walks ix_inspections_part_id_acquired_at
                .limit(batch_rows)
            ).all()
            if not rows:
                break
            after = (float(rows[-1].acquired_at), int(rows[-1].id))
            b.add_frames([r for r in rows if r.verdict == "OK" and r.review_mark is None])
    return b, after


def oldest(engine: Engine, cutoff: float, batch_rows: int) -> PurgeBatch:
    """The oldest results of any kind before ``cutoff``: parts with their frames, else frames older than
    every remaining part (free-running ones, and frames whose part is gone)."""
    b = PurgeBatch()
    with engine.connect() as conn:
        parts = conn.execute(
            select(_P.c.id, _P.c.part_id, _P.c.line, _P.c.triggered_at, _P.c.expected, _P.c.verdict)
            .where(_P.c.triggered_at < cutoff)
            .order_by(_P.c.triggered_at, _P.c.id)
            .limit(64)
        ).all()
        for part in parts:
            frames = part_frames(conn, part)
            b.parts.append(int(part.id))
            b.add_frames(frames)
            b.ng += part.verdict == "NG"
            if len(b.frames) >= batch_rows:
                break
        if not b.parts:
            oldest_part = conn.scalar(select(func.min(_P.c.triggered_at)))
            bound = cutoff if oldest_part is None else min(cutoff, float(oldest_part) - PART_CLOCK_SLACK_S)
            b.add_frames(conn.execute(
                select(_I.c.id, _I.c.image_path)
                .where(_I.c.acquired_at < bound)
                .order_by(_I.c.acquired_at, _I.c.id)
                .limit(batch_rows)
            ).all())
    return b


def ng_image_rows(engine: Engine, cutoff: float, after: Keyset, batch_rows: int) -> list[Any]:
    """The next NG rows acquired before ``cutoff``, after ``after`` (with or without an image), oldest first."""
    t, fid = after
    with engine.connect() as conn:
        return list(conn.execute(
            select(_I.c.id, _I.c.acquired_at, _I.c.image_path)
            .where(_I.c.verdict == "NG", _I.c.acquired_at < cutoff, _after(_I.c.acquired_at, _I.c.id, t, fid))
            .order_by(_I.c.verdict, _I.c.acquired_at, _I.c.id)
            .limit(batch_rows)
        ).all())


def ok_image_rows(engine: Engine, cutoff: float, mark: Any, after: Keyset, batch_rows: int) -> list[Any]:
    """The next OK rows with an image before ``cutoff`` matching ``mark``, oldest first, after ``after``."""
    t, fid = after
    with engine.connect() as conn:
        return list(conn.execute(
            select(_I.c.id, _I.c.acquired_at, _I.c.image_path)
            .where(_I.c.verdict == "OK", mark, _I.c.acquired_at < cutoff, _I.c.image_path.is_not(None),
                   _after(_I.c.acquired_at, _I.c.id, t, fid))
            .order_by(_I.c.verdict, _I.c.acquired_at, _I.c.id)
            .limit(batch_rows)
        ).all())


def clear_image_paths(engine: Engine, rows: Sequence[Any]) -> None:
    """Clear the ``image_path`` of ``rows`` in one transaction (before their files are deleted: a crash
    between the two leaves an unreferenced file, never a row pointing to a deleted image)."""
    with writing(engine).begin() as conn:
        conn.execute(update(_I).where(_I.c.id.in_([r.id for r in rows])).values(image_path=None))


def delete_rows(engine: Engine, b: PurgeBatch) -> None:
    """Delete a batch's frames and parts in one transaction (detections go by ON DELETE CASCADE)."""
    with writing(engine).begin() as conn:
        for chunk in _chunks(b.frames, 500):
            conn.execute(delete(_I).where(_I.c.id.in_(chunk)))
        if b.parts:
            conn.execute(delete(_P).where(_P.c.id.in_(b.parts)))


def oldest_result_time(engine: Engine) -> float | None:
    """When the oldest kept result was acquired or triggered (None: no result)."""
    with engine.connect() as conn:
        oldest = [conn.scalar(select(func.min(_I.c.acquired_at))), conn.scalar(select(func.min(_P.c.triggered_at)))]
    known = [float(t) for t in oldest if t is not None]
    return min(known) if known else None


def delete_events_before(engine: Engine, bound: float, batch_rows: int) -> int:
    """Delete up to ``batch_rows`` camera events older than ``bound`` in one transaction; returns how many."""
    with writing(engine).begin() as conn:
        ids = conn.execute(
            select(_E.c.id).where(_E.c.at < bound).order_by(_E.c.at).limit(batch_rows)
        ).scalars().all()
        if ids:
            conn.execute(delete(_E).where(_E.c.id.in_(ids)))
    return len(ids)


def part_frames(conn: Any, part: Any) -> Sequence[Any]:
    """The frames of a part, by the rule of `inspector.storage.history.get_part`."""
    same_id = [_P.c.part_id == part.part_id, _P.c.line == part.line]
    t = float(part.triggered_at)
    prev_t = conn.scalar(select(func.max(_P.c.triggered_at)).where(*same_id, _P.c.triggered_at < t))
    next_t = conn.scalar(select(func.min(_P.c.triggered_at)).where(*same_id, _P.c.triggered_at > t))
    lower = t - PART_CLOCK_SLACK_S if prev_t is None else t - min(PART_CLOCK_SLACK_S, (t - prev_t) / 2)
    cond = [_I.c.part_id == part.part_id, _I.c.acquired_at >= lower]
    if next_t is not None:
        cond.append(_I.c.acquired_at < next_t - min(PART_CLOCK_SLACK_S, (next_t - t) / 2))
    expected = [c for c in str(part.expected or "").split(",") if c]
    if expected:
        cond.append(_I.c.camera_id.in_(expected))
    return conn.execute(select(_I.c.id, _I.c.verdict, _I.c.review_mark, _I.c.image_path).where(*cond)).all()


def _after(t_col: Any, id_col: Any, t: float, row_id: int) -> Any:
    """Rows after the keyset position (t, id)."""
    if t == float("-inf"):
        return t_col.is_not(None)
    return or_(t_col > t, and_(t_col == t, id_col > row_id))


def _chunks(ids: list[int], n: int) -> list[list[int]]:
    return [ids[i:i + n] for i in range(0, len(ids), n)]
