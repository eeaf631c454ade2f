"""Export of a triggered line's parts (the History tab's Parts view) as CSV: one row per part, as the table shows."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

from inspector.quality.history_export import spreadsheet_safe, utc_text
from inspector.storage.history import PartRow, query_parts

PART_CSV_COLUMNS = (
    "part_id", "line", "trigger_id", "triggered_at_utc", "verdict", "incomplete", "reason", "deciding_camera",
    "expected", "missing", "verdict_ms", "budget_ms", "deadline_met", "recipe",
)


def iter_parts(engine: Engine, *, verdict: str | None = None, incomplete: bool | None = None,
               since: float | None = None, until: float | None = None, page: int = 1000) -> Iterator[PartRow]:
    """Every part matching the filters of `query_parts`, newest first, ``page`` at a time."""
    before: tuple[float, int] | None = None
    while True:
        rows = query_parts(engine, verdict=verdict, since=since, until=until, incomplete=incomplete, limit=page,
                           before=before)
        yield from rows
        if len(rows) < page:
            return
        before = rows[-1].cursor


def export_parts_csv(engine: Engine, path: Path | str, *, verdict: str | None = None, incomplete: bool | None = None,
                     since: float | None = None, until: float | None = None) -> int:
    """Write the parts matching the filters to a CSV file; returns the number of parts (text is `spreadsheet_safe`)."""
    n = 0
    safe = spreadsheet_safe
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(PART_CSV_COLUMNS)
        for p in iter_parts(engine, verdict=verdict, incomplete=incomplete, since=since, until=until):
            w.writerow((safe(p.part_id), safe(p.line), p.trigger_id, utc_text(p.triggered_at), safe(p.verdict),
                        int(p.incomplete), safe(p.reason), safe(p.deciding_camera or ""), safe(" ".join(p.expected)),
                        safe(" ".join(p.missing)), f"{p.verdict_ms:.1f}", f"{p.budget_ms:.0f}", int(p.deadline_met),
                        safe(p.recipe)))
            n += 1
    return n
