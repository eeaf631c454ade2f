"""Database bytes per result, and 30 days of a line simulated with timestamps fast-forwarded.

Part 1 writes parts of 8 cameras with the real `DbWriter` to a new SQLite file and prints bytes
per inspection and per part (after a checkpoint, pages in use only) and how long a disk lasts at
a given rate. Part 2 writes ``--parts-per-day`` parts for each of ``--days`` simulated days, runs
a retention pass after each day and prints the database's size day by day against ``--db-max-mb``.

    .venv/bin/python benchmarks/retention_30days.py                      # short: 300 parts a day
    .venv/bin/python benchmarks/retention_30days.py --parts-per-day 432000 --db-max-mb 20000  # the demo's rate

The demo line runs 300 parts/min (432,000 parts, 3.46 million inspections a day); at full scale
part 2 writes that much per simulated day (hours on a 2-core machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.pipeline.results import PartResult, PartTimes, Verdict  # noqa: E402
from inspector.storage.db import migrate, open_database  # noqa: E402
from inspector.storage.retention import DAY_S, RetentionPolicy, StorageRetention, database_size  # noqa: E402
from inspector.storage.writer import DbWriter  # noqa: E402
from tests.inspector.factories import make_result  # noqa: E402

CAMS = tuple(f"line-cam{i + 1}" for i in range(8))


def make_part(n: int, at: float, ng: bool) -> PartResult:
    """A decided part of 8 frames (one NG frame with a box when ``ng``), as the tracker hands it on."""
    frames = tuple(
        dataclasses.replace(
            make_result(cam, 8 * n + i, "NG" if ng and i == 4 else "OK", [("scratch", 0.8)] if ng and i == 4 else [],
                        acquired_at=at + 0.1 * (i // 2)),
            trigger_id=n, part_id=f"P{n:09d}")
        for i, cam in enumerate(CAMS)
    )
    return PartResult(
        part_id=f"P{n:09d}", line="line-demo", trigger_id=n, triggered_at=at,
        verdict=Verdict.NG if ng else Verdict.OK, reason="line-cam5: scratch>=0.50" if ng else "no defect",
        frames=frames, expected=CAMS, missing=(), deciding_camera="line-cam5" if ng else None, budget_ms=1000.0,
        deadline_met=True, times=PartTimes(120.0, 180.0, 181.0), truth_ng=ng, recipe="",
    )


def write_parts(writer: DbWriter, first: int, count: int, t0: float, span_s: float, ng_every: int) -> None:
    for k in range(count):
        n = first + k
        part = make_part(n, t0 + span_s * k / count, ng=n % ng_every == 0)
        for f in part.frames:
            while not writer.submit(f):
                time.sleep(0.01)
        while not writer.submit_part(part):
            time.sleep(0.01)


def bytes_per_result(folder: Path, parts: int, ng_every: int) -> tuple[float, float]:
    engine = open_database(f"sqlite:///{folder / 'size.db'}", durable=True)
    migrate(engine)
    empty = database_size(engine).used_bytes
    writer = DbWriter(engine)
    writer.start()
    write_parts(writer, 0, parts, time.time() - DAY_S, DAY_S, ng_every)
    writer.stop()
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    used = database_size(engine).used_bytes - empty
    engine.dispose()
    return used / (parts * len(CAMS)), used / parts


def simulate(folder: Path, days: int, per_day: int, ng_every: int, db_max: int) -> None:
    engine = open_database(f"sqlite:///{folder / 'days.db'}", durable=True)
    migrate(engine)
    ret = StorageRetention(engine, RetentionPolicy(ok_max_age_days=7, ng_max_age_days=30, image_max_age_days=None,
                                                   db_max_bytes=db_max, pause_s=0.0))
    start = time.time() - days * DAY_S
    print(f"{'day':>4} {'db MB':>8} {'parts kept':>11} {'purged for space':>17} {'purge s':>8}")
    for day in range(days):
        writer = DbWriter(engine)
        writer.start()
        write_parts(writer, day * per_day, per_day, start + day * DAY_S, DAY_S, ng_every)
        writer.stop()
        t = time.perf_counter()
        ret.run_pass(now=start + (day + 1) * DAY_S)
        purge_s = time.perf_counter() - t
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            kept = c.exec_driver_sql("SELECT count(*) FROM parts").scalar_one()
        size = (folder / "days.db").stat().st_size
        print(f"{day + 1:>4} {size / 1e6:8.2f} {kept:>11} {ret.purged_for_space:>17} {purge_s:8.2f}")
        assert size <= db_max * 1.02, f"day {day + 1}: {size} bytes > db_max {db_max}"
    print(f"max batch {ret.max_batch_ms:.1f} ms, {ret.batches} transactions, "
          f"{ret.vacuumed_bytes / 1e6:.1f} MB given back to the filesystem")
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=5000, help="parts for the bytes-per-result measurement")
    ap.add_argument("--ng-every", type=int, default=10, help="one part in N is NG")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--parts-per-day", type=int, default=300)
    ap.add_argument("--db-max-mb", type=float, default=0.0, help="default: 10 simulated days of rows")
    ap.add_argument("--rate", type=float, default=5.0, help="parts/s for the disk-lasts figure (the demo: 5)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="retention-") as tmp:
        per_frame, per_part = bytes_per_result(Path(tmp), args.parts, args.ng_every)
        per_day = per_part * args.rate * 86400
        print(f"bytes per inspection: {per_frame:.0f}; per 8-camera part: {per_part:.0f}")
        print(f"at {args.rate:g} parts/s: {per_day / 1e9:.2f} GB a day, {30 * per_day / 1e9:.1f} GB in 30 days; "
              f"a 100 GB budget holds {100e9 / per_day:.1f} days")
        db_max = int(args.db_max_mb * 1e6) or int(10 * args.parts_per_day * per_part)
        simulate(Path(tmp), args.days, args.parts_per_day, args.ng_every, db_max)


if __name__ == "__main__":
    main()
