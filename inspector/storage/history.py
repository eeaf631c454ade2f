"""History queries for the defect browser and statistics: filter, page, review.

Pages use keyset paging on ``(acquired_at DESC, id DESC)``: the next page starts
strictly after the last row of the previous one, so a page costs the same on row 100 as
on row 1,000,000 and rows arriving meanwhile never shift or repeat a page. Every filter
is served by an index (see `inspector.storage.models`); the defect-class filter is an
``EXISTS`` probe on ``detections(class_name, inspection_id)`` for pages and an
``IN (SELECT ...)`` on the same index for counts and statistics.

Times are epoch seconds (UTC); ``since`` is inclusive, ``until`` exclusive. Class
summaries, counts and the class filter consider accepted detections only (the boxes the
verdict counted), not the ones a rule rejected.

Measured on a 1M-inspection SQLite file (2-core box): a page 2–6 ms (next pages the
same), counts 1–100 ms, a 30-day yield or Pareto 0.3–0.5 s, a one-day one ~15 ms. A page
filtered on a very rare class scans the time index until it finds ``limit`` hits (worst
case ~0.35 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Integer,
    Table,
    and_,
    cast,
    exists,
    func,
    literal,
    select,
    true,
    tuple_,
    update,
)

from inspector.storage.models import REVIEW_MARKS, DetectionRecord, InspectionRecord

_I: Table = InspectionRecord.__table__  # type: ignore[assignment]
_D: Table = DetectionRecord.__table__  # type: ignore[assignment]
_VERDICTS = ("OK", "NG")


def _check_mark(field: str, mark: str | None) -> None:
    if mark is not None and mark not in REVIEW_MARKS:
        raise ValueError(f"{field}: {mark!r} is not one of {', '.join(REVIEW_MARKS)}")


@dataclass(frozen=True)
class HistoryFilter:
    """Which inspections to show; None means "any".

    Attributes:
        camera_id: One camera.
        verdict: ``"OK"`` or ``"NG"``.
        since: Acquired at or after (epoch seconds).
        until: Acquired before (epoch seconds).
        class_name: Has at least one accepted detection of this class.
        reviewed: True: has a review mark; False: not reviewed yet.
        review_mark: One of ``confirmed``, ``false_call``, ``missed``.
    """

    camera_id: str | None = None
    verdict: str | None = None
    since: float | None = None
    until: float | None = None
    class_name: str | None = None
    reviewed: bool | None = None
    review_mark: str | None = None

    def __post_init__(self) -> None:
        if self.verdict is not None:
            value = str(getattr(self.verdict, "value", self.verdict))
            if value not in _VERDICTS:
                raise ValueError(f"verdict: {self.verdict!r} is not one of OK, NG")
            object.__setattr__(self, "verdict", value)
        _check_mark("review_mark", self.review_mark)

    def conditions(self, *, class_exists: bool = True) -> list[ColumnElement[bool]]:
        """The WHERE terms on ``inspections`` for this filter.

        Args:
            class_exists: Filter the class with a correlated ``EXISTS`` (best for a page:
                the scan in page order stops after ``limit`` hits) rather than
                ``id IN (SELECT ...)`` (best for counts: it reads only that class's
                detections instead of probing every inspection).
        """
        out: list[ColumnElement[bool]] = []
        if self.camera_id is not None:
            out.append(_I.c.camera_id == self.camera_id)
        if self.verdict is not None:
            out.append(_I.c.verdict == self.verdict)
        if self.since is not None:
            out.append(_I.c.acquired_at >= self.since)
        if self.until is not None:
            out.append(_I.c.acquired_at < self.until)
        if self.class_name is not None:
            d = _D.alias("dx")  # an alias, so it never correlates with an outer detections
            of_class = (d.c.class_name == self.class_name, d.c.accepted == true())
            if class_exists:
                out.append(exists().where(d.c.inspection_id == _I.c.id, *of_class))
            else:
                out.append(_I.c.id.in_(select(d.c.inspection_id).where(*of_class)))
        if self.reviewed is True:
            # IN (not IS NOT NULL) lets SQLite use the review_mark index: few rows are reviewed
            out.append(_I.c.review_mark.in_(REVIEW_MARKS))
        elif self.reviewed is False:
            out.append(_I.c.review_mark.is_(None))
        if self.review_mark is not None:
            out.append(_I.c.review_mark == self.review_mark)
        return out


@dataclass(frozen=True)
class HistoryRow:
    """One line of the defect browser.

    ``classes`` summarises the accepted detections, most frequent first, e.g.
    ``"scratch×2, dent"``; ``max_score`` is None when there are none.
    """

    id: int
    uid: str
    camera_id: str
    sequence: int
    acquired_at: float
    verdict: str
    rule: str
    image_path: str | None
    review_mark: str | None
    classes: str
    n_detections: int
    max_score: float | None
    total_ms: float

    @property
    def cursor(self) -> tuple[float, int]:
        """Pass as ``before`` to get the page after this row."""
        return (self.acquired_at, self.id)


@dataclass(frozen=True)
class HourlyYield:
    """Inspections in one UTC hour starting at ``hour_start`` (epoch seconds)."""

    hour_start: float
    total: int
    ng: int

    @property
    def yield_ratio(self) -> float:
        """Share of OK parts, 0..1 (1.0 for an empty hour)."""
        return 1.0 - self.ng / self.total if self.total else 1.0


@dataclass(frozen=True)
class Pareto:
    """Defect counts, largest first.

    Attributes:
        by_class: ``(class_name, accepted detections)`` in the filtered inspections.
        by_camera: ``(camera_id, NG inspections)`` in the filtered inspections.
    """

    by_class: list[tuple[str, int]]
    by_camera: list[tuple[str, int]]


_ROW_COLUMNS = (
    _I.c.id,
    _I.c.uid,
    _I.c.camera_id,
    _I.c.sequence,
    _I.c.acquired_at,
    _I.c.verdict,
    _I.c.rule,
    _I.c.image_path,
    _I.c.review_mark,
    _I.c.total_ms,
)


def query_history(
    engine: Engine, flt: HistoryFilter, *, limit: int = 100, before: tuple[float, int] | None = None
) -> list[HistoryRow]:
    """One page of inspections, newest first.

    Args:
        engine: The database.
        flt: Which inspections.
        limit: Page size.
        before: ``(acquired_at, id)`` of the last row of the previous page
            (`HistoryRow.cursor`); None for the first page.

    Returns:
        Up to ``limit`` rows ordered by ``(acquired_at DESC, id DESC)``.
    """
    stmt = select(*_ROW_COLUMNS).where(*flt.conditions())
    if before is not None:
        # typed literals: a bare int would be bound as INTEGER, too small for PostgreSQL's BIGINT ids
        after = tuple_(literal(float(before[0]), _I.c.acquired_at.type), literal(int(before[1]), _I.c.id.type))
        stmt = stmt.where(tuple_(_I.c.acquired_at, _I.c.id) < after)
    stmt = stmt.order_by(_I.c.acquired_at.desc(), _I.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
        summaries = _summaries(conn, [r.id for r in rows])
    return [_history_row(r, summaries.get(r.id, [])) for r in rows]


def count_history(engine: Engine, flt: HistoryFilter) -> int:
    """How many inspections match ``flt``."""
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(_I).where(*flt.conditions(class_exists=False))) or 0)


def get_inspection(engine: Engine, inspection_id: int) -> tuple[HistoryRow, list[dict[str, Any]]]:
    """One inspection with all its detections (accepted first, then by score).

    Returns:
        The row and a list of dicts with ``id, class_id, class_name, score, x1, y1, x2,
        y2, accepted``.

    Raises:
        KeyError: No inspection has this id.
    """
    with engine.connect() as conn:
        row = conn.execute(select(*_ROW_COLUMNS).where(_I.c.id == inspection_id)).first()
        if row is None:
            raise KeyError(f"inspection {inspection_id} not found")
        summaries = _summaries(conn, [row.id])
        dets = conn.execute(
            select(
                _D.c.id, _D.c.class_id, _D.c.class_name, _D.c.score, _D.c.x1, _D.c.y1, _D.c.x2, _D.c.y2, _D.c.accepted
            )
            .where(_D.c.inspection_id == inspection_id)
            .order_by(_D.c.accepted.desc(), _D.c.score.desc(), _D.c.id)
        ).all()
    detections = [{**d._asdict(), "accepted": bool(d.accepted)} for d in dets]
    return _history_row(row, summaries.get(row.id, [])), detections


def set_review(engine: Engine, inspection_id: int, mark: str | None, user: str) -> None:
    """Record an engineer's review of one inspection (None clears it).

    Raises:
        ValueError: ``mark`` is not a review mark or ``user`` is empty.
        KeyError: No inspection has this id.
    """
    _check_mark("review_mark", mark)
    if mark is not None and not user.strip():
        raise ValueError("reviewed_by: a review needs the reviewer's name")
    values: dict[str, Any] = {
        "review_mark": mark,
        "reviewed_by": user.strip() if mark is not None else None,
        "reviewed_at": time.time() if mark is not None else None,
    }
    with engine.begin() as conn:
        n = conn.execute(update(_I).where(_I.c.id == inspection_id).values(**values)).rowcount
    if n == 0:
        raise KeyError(f"inspection {inspection_id} not found")


def yield_by_hour(engine: Engine, flt: HistoryFilter) -> list[HourlyYield]:
    """Inspected and NG counts per UTC hour, oldest hour first."""
    hours = _I.c.acquired_at / 3600.0
    # floor() is not built into every SQLite; CAST truncates, which is floor for t >= 0.
    hour = cast(hours, Integer) if engine.dialect.name == "sqlite" else func.floor(hours)
    bucket = hour.label("bucket")
    ng = func.sum(cast(_I.c.verdict == "NG", Integer))
    stmt = select(bucket, func.count(), ng).where(*flt.conditions(class_exists=False)).group_by(bucket).order_by(bucket)
    with engine.connect() as conn:
        return [HourlyYield(float(b) * 3600.0, int(n), int(k or 0)) for b, n, k in conn.execute(stmt)]


def pareto(engine: Engine, flt: HistoryFilter) -> Pareto:
    """Defects by class and NG parts by camera for the inspections matching ``flt``."""
    n = func.count().label("n")
    by_class = (
        select(_D.c.class_name, n)
        .select_from(_D.join(_I, _I.c.id == _D.c.inspection_id))
        .where(_D.c.accepted == true(), *flt.conditions(class_exists=False))
        .group_by(_D.c.class_name)
        .order_by(n.desc(), _D.c.class_name)
    )
    by_camera = (
        select(_I.c.camera_id, n)
        .where(_I.c.verdict == "NG", *flt.conditions(class_exists=False))
        .group_by(_I.c.camera_id)
        .order_by(n.desc(), _I.c.camera_id)
    )
    with engine.connect() as conn:
        classes = [(str(c), int(k)) for c, k in conn.execute(by_class)]
        cameras = [(str(c), int(k)) for c, k in conn.execute(by_camera)]
    return Pareto(classes, cameras)


def _summaries(conn: Any, ids: list[int]) -> dict[int, list[tuple[str, int, float]]]:
    """``inspection id -> [(class_name, count, max score), ...]`` of accepted detections."""
    if not ids:
        return {}
    stmt = (
        select(_D.c.inspection_id, _D.c.class_name, func.count(), func.max(_D.c.score))
        .where(and_(_D.c.inspection_id.in_(ids), _D.c.accepted == true()))
        .group_by(_D.c.inspection_id, _D.c.class_name)
    )
    out: dict[int, list[tuple[str, int, float]]] = {}
    for iid, name, count, best in conn.execute(stmt):
        out.setdefault(iid, []).append((name, int(count), float(best)))
    return out


def _history_row(r: Any, summary: list[tuple[str, int, float]]) -> HistoryRow:
    summary.sort(key=lambda s: (-s[1], s[0]))
    classes = ", ".join(name if count == 1 else f"{name}×{count}" for name, count, _ in summary)
    return HistoryRow(
        id=r.id,
        uid=r.uid,
        camera_id=r.camera_id,
        sequence=r.sequence,
        acquired_at=r.acquired_at,
        verdict=r.verdict,
        rule=r.rule,
        image_path=r.image_path,
        review_mark=r.review_mark,
        classes=classes,
        n_detections=sum(s[1] for s in summary),
        max_score=max((s[2] for s in summary), default=None),
        total_ms=r.total_ms,
    )
