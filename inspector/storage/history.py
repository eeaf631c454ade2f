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

Parts (`query_parts`, `get_part`) page the same way on ``(triggered_at DESC, id DESC)``;
a part's frames are the inspections with its ``part_id``, from its cameras, acquired
from its trigger until the next part with the same id (ids repeat: a re-inspected part, the
station's own ids after a restart).

Measured on a 1M-inspection SQLite file (2-core box): a page 2–6 ms (next pages the
same), counts 1–100 ms, a 30-day yield or Pareto 0.3–0.5 s, a one-day one ~15 ms. A page
filtered on a very rare class scans the time index until it finds ``limit`` hits (worst
case ~0.35 s).
"""

from __future__ import annotations

import os
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
    delete,
    exists,
    func,
    literal,
    select,
    true,
    tuple_,
    update,
)

from inspector.storage.db import writing
from inspector.storage.models import (
    REVIEW_MARKS,
    BoxReviewRecord,
    DetectionRecord,
    InspectionRecord,
    PartRecord,
    ReviewedBoxRecord,
)

_I: Table = InspectionRecord.__table__  # type: ignore[assignment]
_D: Table = DetectionRecord.__table__  # type: ignore[assignment]
_P: Table = PartRecord.__table__  # type: ignore[assignment]
_R: Table = BoxReviewRecord.__table__  # type: ignore[assignment]
_RB: Table = ReviewedBoxRecord.__table__  # type: ignore[assignment]
#: Frames acquired up to this long before their part's trigger (wall clocks of cameras and
#: trigger differ) still belong to it; never more than half the gap to a part with the same id.
PART_CLOCK_SLACK_S = 1.0
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
        part_id: Frames of parts with this id (any line, any time; see `get_part`).
    """

    camera_id: str | None = None
    verdict: str | None = None
    since: float | None = None
    until: float | None = None
    class_name: str | None = None
    reviewed: bool | None = None
    review_mark: str | None = None
    part_id: str | None = None

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
        if self.part_id is not None:
            out.append(_I.c.part_id == self.part_id)
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
    #: The part of a triggered line's frame (None: free-running camera, or stored before parts)
    part_id: str | None = None
    #: The frame arrived after its part's verdict (stored, not counted for the part)
    late: bool = False

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
    _I.c.part_id,
    _I.c.late,
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


#: Review marks that are labelling work on the image: "missed" asks for the defect the model did not
#: box to be drawn (and exported as a training label), which needs the image.
MARKS_NEEDING_AN_IMAGE: tuple[str, ...] = ("missed",)


class ReviewRefused(ValueError):
    """A review mark that cannot be recorded for this inspection (one line: why)."""


def missing_image_reason(engine: Engine, inspection_id: int, mark: str | None) -> str:
    """Why ``mark`` cannot be set on this inspection for want of its image; empty when it can.

    Raises:
        KeyError: No inspection has this id.
    """
    if mark not in MARKS_NEEDING_AN_IMAGE:
        image_refusal(engine, inspection_id, "")  # KeyError for an unknown inspection, as before
        return ""
    return image_refusal(engine, inspection_id, f"{mark!r} needs the image to label the defect")


def image_refusal(engine: Engine, inspection_id: int, need: str) -> str:
    """Why labelling work (``need`` says which) cannot be done on this inspection for want of its image;
    empty when its image is there (or ``need`` is empty).

    Raises:
        KeyError: No inspection has this id.
    """
    with engine.connect() as conn:
        row = conn.execute(select(_I.c.verdict, _I.c.image_path).where(_I.c.id == inspection_id)).first()
    if row is None:
        raise KeyError(f"inspection {inspection_id} not found")
    if not need:
        return ""
    if not row.image_path:
        kept = ("OK images are kept only as a sample: [storage] ok_sample_every" if row.verdict == "OK"
                else "it was not saved or retention took it")
        return f"inspection {inspection_id}: {need}, and none was kept ({kept})"
    if not os.path.isfile(row.image_path):
        return f"inspection {inspection_id}: {need}, and {row.image_path} is gone (retention or a full disk)"
    return ""


def set_review(engine: Engine, inspection_id: int, mark: str | None, user: str, *, need_image: bool = False) -> None:
    """Record an engineer's review of one inspection (None clears it).

    A mark other than the current one replaces the inspection's box review (`inspector.storage.box_review`):
    the newest judgement of the whole image wins; the same mark again keeps the reviewed boxes.

    Args:
        engine: The station's database.
        inspection_id: The inspection reviewed.
        mark: One of `REVIEW_MARKS`, or None to clear the review.
        user: The reviewer.
        need_image: Refuse a mark of `MARKS_NEEDING_AN_IMAGE` when the inspection's image is not kept
            (what a reviewer gets; storage tests and imports may record marks without images).

    Raises:
        ValueError: ``mark`` is not a review mark or ``user`` is empty.
        ReviewRefused: ``need_image`` and the mark needs an image the inspection does not have.
        KeyError: No inspection has this id.
    """
    _check_mark("review_mark", mark)
    if mark is not None and not user.strip():
        raise ValueError("reviewed_by: a review needs the reviewer's name")
    if need_image:
        reason = missing_image_reason(engine, inspection_id, mark)
        if reason:
            raise ReviewRefused(reason)
    values: dict[str, Any] = {
        "review_mark": mark,
        "reviewed_by": user.strip() if mark is not None else None,
        "reviewed_at": time.time() if mark is not None else None,
    }
    with writing(engine).begin() as conn:
        current = conn.execute(select(_I.c.review_mark).where(_I.c.id == inspection_id)).first()
        if current is None:
            raise KeyError(f"inspection {inspection_id} not found")
        if mark is None or mark != current.review_mark:
            drop_box_review(conn, inspection_id)
        conn.execute(update(_I).where(_I.c.id == inspection_id).values(**values))


def drop_box_review(conn: Any, inspection_id: int) -> None:
    """Delete an inspection's box review and its boxes (inside the caller's transaction)."""
    conn.execute(delete(_RB).where(_RB.c.inspection_id == inspection_id))  # not left to a cascade: FKs may be off
    conn.execute(delete(_R).where(_R.c.inspection_id == inspection_id))


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
        part_id=r.part_id,
        late=bool(r.late),
    )


# ---------------------------------------------------------------------- parts
@dataclass(frozen=True)
class PartRow:
    """One part of a triggered line: its verdict and what decided it.

    ``expected`` are the cameras that owed a frame, ``missing`` those whose frame was not
    there by the deadline (empty for a complete part; an incomplete part is always NG).
    ``truth_ng`` is the simulated ground truth, None when unknown.
    """

    id: int
    part_id: str
    line: str
    trigger_id: int
    triggered_at: float
    verdict: str
    reason: str
    deciding_camera: str | None
    expected: tuple[str, ...]
    missing: tuple[str, ...]
    deadline_met: bool
    budget_ms: float
    acquired_ms: float
    inspected_ms: float
    verdict_ms: float
    truth_ng: bool | None
    recipe: str

    @property
    def incomplete(self) -> bool:
        return bool(self.missing)

    @property
    def cursor(self) -> tuple[float, int]:
        """Pass as ``before`` to get the page after this row."""
        return (self.triggered_at, self.id)


@dataclass(frozen=True)
class PartDetail:
    """A part with the inspections of its frames (on time first, by camera; then late ones)."""

    part: PartRow
    frames: tuple[HistoryRow, ...]

    @property
    def late_frames(self) -> tuple[HistoryRow, ...]:
        return tuple(f for f in self.frames if f.late)


def _part_conditions(
    line: str | None, verdict: str | None, since: float | None, until: float | None, incomplete: bool | None
) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if line is not None:
        out.append(_P.c.line == line)
    if verdict is not None:
        value = str(getattr(verdict, "value", verdict))
        if value not in _VERDICTS:
            raise ValueError(f"verdict: {verdict!r} is not one of OK, NG")
        out.append(_P.c.verdict == value)
    if since is not None:
        out.append(_P.c.triggered_at >= since)
    if until is not None:
        out.append(_P.c.triggered_at < until)
    if incomplete is True:
        out.append(_P.c.missing != "")
    elif incomplete is False:
        out.append(_P.c.missing == "")
    return out


def query_parts(
    engine: Engine,
    line: str | None = None,
    verdict: str | None = None,
    since: float | None = None,
    until: float | None = None,
    incomplete: bool | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    before: tuple[float, int] | None = None,
) -> list[PartRow]:
    """One page of parts, newest first; None filters mean "any".

    Args:
        engine: The database.
        line: One line.
        verdict: ``"OK"`` or ``"NG"``.
        since: Triggered at or after (epoch seconds).
        until: Triggered before (epoch seconds).
        incomplete: True: only parts missing a frame at their deadline; False: only complete ones.
        limit: Page size.
        offset: Rows to skip (simple paging; ``before`` costs the same on every page).
        before: ``(triggered_at, id)`` of the last row of the previous page (`PartRow.cursor`).

    Returns:
        Up to ``limit`` rows ordered by ``(triggered_at DESC, id DESC)``.

    Raises:
        ValueError: ``verdict`` is not OK or NG.
    """
    stmt = select(_P).where(*_part_conditions(line, verdict, since, until, incomplete))
    if before is not None:
        after = tuple_(literal(float(before[0]), _P.c.triggered_at.type), literal(int(before[1]), _P.c.id.type))
        stmt = stmt.where(tuple_(_P.c.triggered_at, _P.c.id) < after)
    stmt = stmt.order_by(_P.c.triggered_at.desc(), _P.c.id.desc()).limit(limit).offset(max(0, int(offset)))
    with engine.connect() as conn:
        return [_part_row(r) for r in conn.execute(stmt)]


def count_parts(
    engine: Engine,
    line: str | None = None,
    verdict: str | None = None,
    since: float | None = None,
    until: float | None = None,
    incomplete: bool | None = None,
) -> int:
    """How many parts match the filters of `query_parts`."""
    stmt = select(func.count()).select_from(_P).where(*_part_conditions(line, verdict, since, until, incomplete))
    with engine.connect() as conn:
        return int(conn.scalar(stmt) or 0)


def get_part(engine: Engine, part_id: str, line: str | None = None) -> PartDetail | None:
    """The newest part with this id (on ``line``, if given) and the inspections of its frames.

    Frames are linked by ``part_id``; as ids repeat, only the frames of the part's expected
    cameras acquired from its trigger (less `PART_CLOCK_SLACK_S`) until the next part with
    the same id on the same line count.

    Returns:
        The part, or None when no part has this id.
    """
    where = [_P.c.part_id == part_id] + ([_P.c.line == line] if line is not None else [])
    with engine.connect() as conn:
        row = conn.execute(select(_P).where(*where).order_by(_P.c.triggered_at.desc(), _P.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        part = _part_row(row)
        same_id = [_P.c.part_id == part.part_id, _P.c.line == part.line]
        prev_t = conn.scalar(select(func.max(_P.c.triggered_at)).where(*same_id, _P.c.triggered_at < part.triggered_at))
        next_t = conn.scalar(select(func.min(_P.c.triggered_at)).where(*same_id, _P.c.triggered_at > part.triggered_at))
        t = part.triggered_at
        cond = [_I.c.part_id == part.part_id]
        lower = t - PART_CLOCK_SLACK_S if prev_t is None else t - min(PART_CLOCK_SLACK_S, (t - prev_t) / 2)
        cond.append(_I.c.acquired_at >= lower)
        if next_t is not None:
            cond.append(_I.c.acquired_at < next_t - min(PART_CLOCK_SLACK_S, (next_t - t) / 2))
        if part.expected:
            cond.append(_I.c.camera_id.in_(part.expected))
        stmt = select(*_ROW_COLUMNS).where(*cond).order_by(_I.c.late, _I.c.camera_id, _I.c.acquired_at, _I.c.id)
        rows = conn.execute(stmt).all()
        summaries = _summaries(conn, [r.id for r in rows])
    return PartDetail(part, tuple(_history_row(r, summaries.get(r.id, [])) for r in rows))


def _split(cameras: str) -> tuple[str, ...]:
    return tuple(c for c in cameras.split(",") if c)


def _part_row(r: Any) -> PartRow:
    return PartRow(
        id=r.id,
        part_id=r.part_id,
        line=r.line,
        trigger_id=r.trigger_id,
        triggered_at=r.triggered_at,
        verdict=r.verdict,
        reason=r.reason,
        deciding_camera=r.deciding_camera,
        expected=_split(r.expected),
        missing=_split(r.missing),
        deadline_met=bool(r.deadline_met),
        budget_ms=r.budget_ms,
        acquired_ms=r.acquired_ms,
        inspected_ms=r.inspected_ms,
        verdict_ms=r.verdict_ms,
        truth_ng=None if r.truth_ng is None else bool(r.truth_ng),
        recipe=r.recipe,
    )
