"""Box-by-box review of an inspection's image: which detections are right, which are wrong, what was missed.

A box review is the set of boxes an engineer settled on for one image, in image pixels: each of the
model's detections confirmed, edited (moved, resized, another class) or rejected, and boxes drawn by
hand for the defects the model missed. The boxes not rejected are the image's labels (what the YOLO
export writes, `inspector.quality.history_export`); none left is an image marked clean.

Saving a box review also sets the inspection's review mark from the verdict and what is left, so the
history's filters, statistics and retention (a reviewed image is kept) see it:

============  ==================  ==================
verdict       boxes left          mark
============  ==================  ==================
NG            some                ``confirmed``
NG            none (clean)        ``false_call``
OK            some                ``missed``
OK            none (clean)        ``confirmed`` (the OK verdict confirmed)
============  ==================  ==================

A whole-image mark set later with another value (`inspector.storage.history.set_review`) replaces the
box review: the newest judgement of the image wins.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table, insert, select, update

from inspector.storage.db import writing
from inspector.storage.history import ReviewRefused, drop_box_review, image_refusal
from inspector.storage.models import (
    BOX_STATUSES,
    BoxReviewRecord,
    DetectionRecord,
    InspectionRecord,
    ReviewedBoxRecord,
)

_I: Table = InspectionRecord.__table__  # type: ignore[assignment]
_D: Table = DetectionRecord.__table__  # type: ignore[assignment]
_R: Table = BoxReviewRecord.__table__  # type: ignore[assignment]
_RB: Table = ReviewedBoxRecord.__table__  # type: ignore[assignment]
#: Boxes smaller than this (image pixels, either side) are a slip of the mouse, not a defect.
MIN_BOX_PX = 1.0
#: Most boxes one image's review may hold (a guard against a runaway client, not a real limit).
MAX_BOXES = 500


@dataclass(frozen=True)
class ReviewedBox:
    """One box of a review, in image pixels.

    Attributes:
        class_id: The class by the model's index.
        class_name: The class's name.
        x1: Left edge.
        y1: Top edge.
        x2: Right edge (more than ``x1``).
        y2: Bottom edge (more than ``y1``).
        status: ``confirmed``, ``edited``, ``drawn`` or ``rejected`` (`BOX_STATUSES`).
        detection_id: The model's detection it came from (None for a drawn box).
    """

    class_id: int
    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float
    status: str = "drawn"
    detection_id: int | None = None

    def __post_init__(self) -> None:
        if self.status not in BOX_STATUSES:
            raise ValueError(f"box status: {self.status!r} is not one of {', '.join(BOX_STATUSES)}")
        if self.class_id < 0 or not self.class_name.strip():
            raise ValueError(f"box class: {self.class_id} {self.class_name!r} needs an index >= 0 and a name")
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(v) for v in coords):
            raise ValueError(f"box {coords}: coordinates must be finite numbers")
        if self.x2 - self.x1 < MIN_BOX_PX or self.y2 - self.y1 < MIN_BOX_PX:
            raise ValueError(f"box {coords}: needs x2 > x1 and y2 > y1 by at least {MIN_BOX_PX:g} px")
        if self.status == "drawn" and self.detection_id is not None:
            raise ValueError("box: a drawn box comes from no detection")
        if self.status != "drawn" and self.detection_id is None:
            raise ValueError(f"box: a {self.status} box names the detection it came from")

    @property
    def kept(self) -> bool:
        """Whether the box is a label (not rejected)."""
        return self.status != "rejected"


@dataclass(frozen=True)
class BoxReview:
    """An inspection's box review: the boxes, who reviewed them and when."""

    inspection_id: int
    boxes: tuple[ReviewedBox, ...]
    reviewed_by: str
    reviewed_at: float

    @property
    def labels(self) -> tuple[ReviewedBox, ...]:
        """The boxes kept (the image's labels)."""
        return tuple(b for b in self.boxes if b.kept)

    @property
    def clean(self) -> bool:
        """No box left: the image shows no defect."""
        return not self.labels

    def summary(self) -> str:
        """One line for the audit trail, e.g. ``"3 labels (scratch, dent, crack); 1 rejected, 1 drawn"``."""
        labels = self.labels
        if not labels:
            text = "clean (no label)"
        else:
            text = f"{len(labels)} label{'s' if len(labels) != 1 else ''} ({', '.join(b.class_name for b in labels)})"
        counts = {s: sum(1 for b in self.boxes if b.status == s) for s in ("edited", "drawn", "rejected")}
        extra = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"{text}; {extra}" if extra else text


def review_mark_for(verdict: str, boxes: Iterable[ReviewedBox]) -> str:
    """The review mark a box review implies for an inspection with this verdict (see the module's table)."""
    kept = any(b.kept for b in boxes)
    if verdict == "NG":
        return "confirmed" if kept else "false_call"
    return "missed" if kept else "confirmed"


def save_box_review(
    engine: Engine,
    inspection_id: int,
    boxes: Sequence[ReviewedBox],
    user: str,
    *,
    need_image: bool = True,
    clock: Callable[[], float] = time.time,
) -> str:
    """Store an engineer's box review of one inspection (replacing any earlier one) and set its mark.

    Args:
        engine: The station's database.
        inspection_id: The inspection reviewed.
        boxes: Every box the review settled on, rejected detections included; empty: the image is clean.
        user: The reviewer.
        need_image: Refuse when the inspection's image is not kept (boxes are drawn on it).
        clock: Epoch seconds for ``reviewed_at``.

    Returns:
        The review mark set (`review_mark_for`).

    Raises:
        KeyError: No inspection has this id.
        ValueError: No reviewer, too many boxes, or a box that names a detection of another inspection
            or the same detection twice.
        ReviewRefused: ``need_image`` and the image is not kept.
    """
    if not user.strip():
        raise ValueError("reviewed_by: a review needs the reviewer's name")
    if len(boxes) > MAX_BOXES:
        raise ValueError(f"box review: {len(boxes)} boxes, at most {MAX_BOXES} per image")
    refusal = image_refusal(engine, inspection_id, "a box review needs the image" if need_image else "")
    if refusal:
        raise ReviewRefused(refusal)
    at = clock()
    with writing(engine).begin() as conn:
        row = conn.execute(select(_I.c.verdict).where(_I.c.id == inspection_id)).first()
        if row is None:
            raise KeyError(f"inspection {inspection_id} not found")
        _check_detections(conn, inspection_id, boxes)
        mark = review_mark_for(row.verdict, boxes)
        drop_box_review(conn, inspection_id)
        conn.execute(insert(_R).values(inspection_id=inspection_id, reviewed_by=user.strip(), reviewed_at=at))
        if boxes:
            conn.execute(insert(_RB), [
                {"inspection_id": inspection_id, "detection_id": b.detection_id, "status": b.status,
                 "class_id": b.class_id, "class_name": b.class_name, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2}
                for b in boxes
            ])
        conn.execute(update(_I).where(_I.c.id == inspection_id)
                     .values(review_mark=mark, reviewed_by=user.strip(), reviewed_at=at))
    return mark


def _check_detections(conn: Any, inspection_id: int, boxes: Sequence[ReviewedBox]) -> None:
    named = [b.detection_id for b in boxes if b.detection_id is not None]
    if len(named) != len(set(named)):
        raise ValueError(f"box review of inspection {inspection_id}: a detection is reviewed twice")
    if named:
        own = set(conn.scalars(select(_D.c.id).where(_D.c.inspection_id == inspection_id, _D.c.id.in_(named))))
        foreign = sorted(set(named) - own)
        if foreign:
            raise ValueError(f"box review of inspection {inspection_id}: detection {foreign[0]} is not one of its boxes")


def get_box_review(engine: Engine, inspection_id: int) -> BoxReview | None:
    """The inspection's box review, None when its boxes were never reviewed."""
    return box_reviews(engine, [inspection_id]).get(inspection_id)


def box_reviews(engine: Engine, inspection_ids: Sequence[int]) -> dict[int, BoxReview]:
    """The box reviews of these inspections (those that have one), by inspection id."""
    ids = list(dict.fromkeys(inspection_ids))
    out: dict[int, BoxReview] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):  # bound the IN list (SQLite's variable limit)
            chunk = ids[start:start + 500]
            heads = conn.execute(select(_R).where(_R.c.inspection_id.in_(chunk))).all()
            if not heads:
                continue
            found: dict[int, list[ReviewedBox]] = {h.inspection_id: [] for h in heads}
            rows = conn.execute(select(_RB).where(_RB.c.inspection_id.in_(list(found))).order_by(_RB.c.id)).all()
            for r in rows:
                found[r.inspection_id].append(ReviewedBox(
                    int(r.class_id), str(r.class_name), float(r.x1), float(r.y1), float(r.x2), float(r.y2),
                    str(r.status), None if r.detection_id is None else int(r.detection_id)))
            for h in heads:
                out[h.inspection_id] = BoxReview(h.inspection_id, tuple(found[h.inspection_id]), str(h.reviewed_by),
                                                 float(h.reviewed_at))
    return out
