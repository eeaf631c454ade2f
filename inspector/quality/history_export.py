"""Exports of the inspection history: CSV rows, and reviewed NG images as a YOLO dataset.

Both stream the history page by page (keyset paging), so a million rows never sit in
memory at once. The YOLO export turns the engineers' reviews into training data:

* an image reviewed box by box (`inspector.storage.box_review`): exactly the boxes the review
  kept (confirmed, edited and drawn; rejected ones left out); none kept: an *empty* label file;
* otherwise, by the whole image's mark:

  * ``confirmed``: the image with the boxes the verdict counted;
  * ``false_call``: the image with an *empty* label file (a negative: nothing to find);
  * ``missed``: skipped and listed in ``needs_labels.txt``: the model found nothing, so
    there is no box to export until someone draws it (a box review).

Values from the database are data, not trusted names: a row whose uid is not a plain
file name (``../../x``) is skipped and counted, and every file is checked to resolve
inside the dataset folder. CSV cells that a spreadsheet would run as a formula (leading
``=``, ``+``, ``-``, ``@``, tab, carriage return) get a leading ``'`` and every field
is quoted, as OWASP recommends for CSV injection.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
from sqlalchemy import Engine

from inspector.storage.box_review import BoxReview, get_box_review
from inspector.storage.history import HistoryFilter, HistoryRow, get_inspection, query_history

log = logging.getLogger(__name__)

#: A uid usable as a file name: what the writer stores (UUID version 7, `inspector.storage.uids`) and
#: nothing that leaves a folder.
_SAFE_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
#: Characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "acquired_at_utc",
    "camera_id",
    "sequence",
    "verdict",
    "rule",
    "classes",
    "n_detections",
    "max_score",
    "total_ms",
    "review_mark",
    "image_path",
    "uid",
)


def iter_history(engine: Engine, flt: HistoryFilter, *, page: int = 1000) -> Iterator[HistoryRow]:
    """Every row matching ``flt``, newest first, fetched ``page`` rows at a time."""
    before: tuple[float, int] | None = None
    while True:
        rows = query_history(engine, flt, limit=page, before=before)
        yield from rows
        if len(rows) < page:
            return
        before = rows[-1].cursor


def utc_text(t: float) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def spreadsheet_safe(value: str) -> str:
    """``value`` with a leading ``'`` if a spreadsheet would run it as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_csv(
    engine: Engine, flt: HistoryFilter, path: Path | str, *, progress: Callable[[int], None] | None = None
) -> int:
    """Write the rows matching ``flt`` to a CSV file; returns the number of rows.

    Text from the database (camera id, rule, classes, paths, uid...) goes through
    `spreadsheet_safe`; numbers the export formats itself stay numbers (``-3.50``).
    """
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(CSV_COLUMNS)
        for r in iter_history(engine, flt):
            safe = spreadsheet_safe
            w.writerow(
                (
                    r.id,
                    utc_text(r.acquired_at),
                    safe(r.camera_id),
                    r.sequence,
                    safe(r.verdict),
                    safe(r.rule),
                    safe(r.classes),
                    r.n_detections,
                    "" if r.max_score is None else f"{r.max_score:.4f}",
                    f"{r.total_ms:.2f}",
                    safe(r.review_mark or ""),
                    safe(r.image_path or ""),
                    safe(r.uid),
                )
            )
            n += 1
            if progress is not None and n % 10_000 == 0:
                progress(n)
    return n


@dataclass
class YoloExport:
    """What a YOLO export wrote."""

    images: int = 0
    negatives: int = 0  # images with empty label files (false calls, images marked clean)
    missing_images: int = 0  # reviewed rows whose image was not saved or was purged
    unsafe_uids: int = 0  # rows whose uid is not a plain file name (skipped, never written)
    needs_labels: list[str] = field(default_factory=list)  # "missed" reviews: no box to export
    box_reviewed: int = 0  # images whose labels are a box-by-box review
    boxes: int = 0  # label lines written


def export_yolo(
    engine: Engine, flt: HistoryFilter, out_dir: Path | str, class_names: Sequence[str] = ()
) -> YoloExport:
    """Export reviewed inspections matching ``flt`` as a YOLO dataset.

    Writes ``images/<uid>.<ext>``, ``labels/<uid>.txt`` (``class cx cy w h``, normalised)
    and ``data.yaml``. Only reviewed rows are exported, whatever ``flt.reviewed`` says.
    Rows whose uid is not a plain file name are skipped and counted (``unsafe_uids``).

    Raises:
        ValueError: ``images`` or ``labels`` resolves outside ``out_dir`` (a link).

    Args:
        engine: The database.
        flt: Which inspections (camera, time, class...).
        out_dir: Dataset folder (created).
        class_names: Class names by id (the model card's); ids beyond are named by number.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(out))
    for sub in ("images", "labels"):
        _check_inside(root, out / sub)
    flt = dataclasses.replace(flt, reviewed=True)
    names = {i: n for i, n in enumerate(class_names)}
    result = YoloExport()
    for row in iter_history(engine, flt):
        if not _SAFE_UID.match(row.uid):
            result.unsafe_uids += 1
            log.warning("yolo export: skipped inspection %d, its uid %r is not a plain file name", row.id, row.uid)
            continue
        review = get_box_review(engine, row.id)
        if review is None and row.review_mark == "missed":
            result.needs_labels.append(f"{row.uid}\t{row.camera_id}\t{row.sequence}\t{row.image_path or ''}")
            continue
        src = Path(row.image_path) if row.image_path else None
        if src is not None and src.suffix.lower() not in _IMAGE_SUFFIXES:
            src = None
        image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED) if src is not None and src.is_file() else None
        if src is None or image is None:
            result.missing_images += 1
            continue
        h, w = image.shape[:2]
        lines = _labels(engine, row, review, names, w, h)
        result.box_reviewed += review is not None
        result.negatives += not lines
        result.boxes += len(lines)
        image_dst = _check_inside(root, out / "images" / f"{row.uid}{src.suffix.lower()}")
        label_dst = _check_inside(root, out / "labels" / f"{row.uid}.txt")
        shutil.copyfile(src, image_dst)
        label_dst.write_text("".join(line + "\n" for line in lines))
        result.images += 1
    n_classes = max(names) + 1 if names else 0
    yaml = ["path: .", "train: images", "val: images", "names:"]
    yaml += [f"  {i}: {_yaml_str(names.get(i, str(i)))}" for i in range(n_classes)]
    (out / "data.yaml").write_text("\n".join(yaml) + "\n")
    if result.needs_labels:
        (out / "needs_labels.txt").write_text("uid\tcamera\tsequence\timage\n" + "\n".join(result.needs_labels) + "\n")
    log.info(
        "yolo export %s: %d images (%d negatives, %d reviewed box by box), %d missing, %d need labels, "
        "%d unsafe uids skipped",
        out,
        result.images,
        result.negatives,
        result.box_reviewed,
        result.missing_images,
        len(result.needs_labels),
        result.unsafe_uids,
    )
    return result


def _labels(engine: Engine, row: HistoryRow, review: BoxReview | None, names: dict[int, str], w: int, h: int) -> list[str]:
    """The label lines of one reviewed image: its box review's kept boxes, else the mark's rule."""
    boxes: list[dict[str, Any]]
    if review is not None:
        boxes = [{"class_id": b.class_id, "class_name": b.class_name, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2}
                 for b in review.labels]
    elif row.review_mark == "confirmed":
        boxes = [d for d in get_inspection(engine, row.id)[1] if d["accepted"]]
    else:
        boxes = []
    for d in boxes:
        names.setdefault(int(d["class_id"]), str(d["class_name"]))
    return [_label_line(d, w, h) for d in boxes]


def _check_inside(root: Path, path: Path) -> Path:
    """``path`` if it resolves (links followed) inside ``root``; else ValueError naming it."""
    if not Path(os.path.realpath(path)).is_relative_to(root):
        raise ValueError(f"yolo export: {path} resolves outside the dataset folder {root}; not writing there")
    return path


def _label_line(d: Mapping[str, Any], w: int, h: int) -> str:
    x1, y1 = max(0.0, float(d["x1"])), max(0.0, float(d["y1"]))
    x2, y2 = min(float(w), float(d["x2"])), min(float(h), float(d["y2"]))
    cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
    bw, bh = max(0.0, x2 - x1) / w, max(0.0, y2 - y1) / h
    return f"{int(d['class_id'])} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


def _yaml_str(s: str) -> str:
    return s if s.replace("_", "").replace("-", "").isalnum() else '"' + s.replace('"', '\\"') + '"'
