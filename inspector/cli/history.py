"""``inspector history``: recent inspections, or parts of a triggered line, from the database."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from inspector.cli.common import fail, user_errors

app = typer.Typer()


@app.command()
def history(
    camera: str | None = typer.Option(None, help="Camera id."),
    verdict: str | None = typer.Option(None, help="OK or NG."),
    since: str | None = typer.Option(None, help="ISO time (2026-11-21T08:00) or age like 30m, 2h, 7d."),
    until: str | None = typer.Option(None, help="ISO time or age."),
    defect: str | None = typer.Option(None, "--class", help="Only inspections with this defect class."),
    limit: int = typer.Option(20, min=1, max=100_000),
    db: str | None = typer.Option(None, help="Database URL."),
    as_json: bool = typer.Option(False, "--json"),
    parts: bool = typer.Option(False, "--parts", help="Parts of a triggered line instead of single inspections."),
    part: str | None = typer.Option(None, "--part", help="One part: its verdict and each camera's frame."),
    incomplete: bool = typer.Option(False, "--incomplete", help="With --parts: only parts failed safe for a missing image."),
) -> None:
    """Recent inspections (or parts) from the database, newest first."""
    from inspector.storage.db import default_db_url, migrate, open_database
    from inspector.storage.history import HistoryFilter, query_history

    if verdict is not None and verdict.upper() not in ("OK", "NG"):
        fail(f"--verdict: must be OK or NG, not {verdict!r}")
    try:
        t_since = _parse_time(since, "--since")
        t_until = _parse_time(until, "--until")
        engine = open_database(db or default_db_url())
        migrate(engine)
        if parts or part is not None or incomplete:
            return _history_parts(engine, part, verdict, t_since, t_until, incomplete, limit, as_json)
        rows = query_history(
            engine,
            HistoryFilter(camera_id=camera, verdict=verdict.upper() if verdict else None, since=t_since, until=t_until,
                          class_name=defect),
            limit=limit,
        )
    except user_errors() as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        return
    typer.echo(f"{'TIME':19} {'CAMERA':14} {'SEQ':>7} {'VERDICT':7} {'RULE':22} DEFECTS")
    for r in rows:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.acquired_at))
        typer.echo(f"{ts:19} {r.camera_id[:14]:14} {r.sequence:7d} {r.verdict:7} {r.rule[:22]:22} {r.classes}")


def _history_parts(engine: Any, part: str | None, verdict: str | None, since: float | None,
                   until: float | None, incomplete: bool, limit: int, as_json: bool) -> None:
    """``history --parts`` (a table of parts) and ``history --part ID`` (one part, frame by frame)."""
    from inspector.storage.history import get_part, query_parts

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    if part is not None:
        detail = get_part(engine, part)
        if detail is None:
            fail(f"--part: no part {part!r} in the database")
        p = detail.part
        if as_json:
            typer.echo(json.dumps({"part": p.__dict__, "frames": [f.__dict__ for f in detail.frames]}, indent=2,
                                  default=str))
            return
        typer.echo(f"part {p.part_id} ({p.line}) {when(p.triggered_at)}: {p.verdict} {p.reason}; "
                   f"verdict {p.verdict_ms:.0f} ms after the trigger (budget {p.budget_ms:g} ms)")
        for f in detail.frames:
            late = " LATE" if f.late else ""
            typer.echo(f"  {f.camera_id[:14]:14} {f.verdict:3} {f.rule[:28]:28} {f.classes}{late}")
        for cam in p.missing:
            typer.echo(f"  {cam[:14]:14} --  no image")
        return
    rows = query_parts(engine, verdict=verdict.upper() if verdict else None, since=since, until=until,
                       incomplete=True if incomplete else None, limit=limit)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        return
    typer.echo(f"{'TIME':19} {'PART':22} {'VERDICT':7} {'MS':>5} REASON")
    for r in rows:
        typer.echo(f"{when(r.triggered_at):19} {r.part_id[:22]:22} {r.verdict:7} {r.verdict_ms:5.0f} {r.reason}")


def _parse_time(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    import datetime as dt

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    v = value.strip()
    if v and v[-1] in units and v[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(v[:-1]) * units[v[-1]]
    try:
        return dt.datetime.fromisoformat(v).timestamp()
    except ValueError:
        raise ValueError(f"{field}: {value!r} is neither an ISO time nor an age like 30m/2h/7d") from None
