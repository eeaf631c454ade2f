"""A disk that fills: the database and the NG archive on one real small filesystem, days fast-forwarded.

Issue 26's done-when: a 30-day run stays within the configured size, and a disk that fills loses no
result and no NG image that a stored row points to while the budget holds. Here a real tmpfs holds
the SQLite file and the archive; another file takes most of the disk after the first days (the disk
fills from outside), so the free-space floor, not the age limits, decides what goes. Each simulated
day: the real writer stores the day's parts (1 in 10 NG, its image written into the archive), then
a retention pass every `PASS_EVERY` parts.

Short by default (30 days of 40 parts of 8 cameras); ``RETENTION_DAYS`` and ``RETENTION_PARTS_PER_DAY``
make it longer.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from inspector.archive import NgArchive
from inspector.storage.db import migrate, open_database
from inspector.storage.retention import DAY_S, RetentionPolicy, StorageRetention, database_size
from inspector.storage.writer import DbWriter
from tests.inspector.factories import wait_until
from tests.inspector.storage.test_storage_parts import make_part

DAYS = int(os.environ.get("RETENTION_DAYS", "30"))
PARTS_PER_DAY = int(os.environ.get("RETENTION_PARTS_PER_DAY", "40"))
PASS_EVERY = 10  # parts between two retention passes
DISK_MB = 160
BUDGET = 6_000_000  # database and archive together
FLOOR = 8_000_000  # free space the filesystem keeps (at most 5% of the disk: 8.4 MB here; above the 4 MB WAL)
IMAGE_BYTES = 20_000
NOW = 1_750_000_000.0


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs of `DISK_MB` MiB on a temporary folder."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mnt)], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {res.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def _store_day(writer: DbWriter, archive: NgArchive, ret: StorageRetention, day: int, start: float) -> None:
    for i in range(PARTS_PER_DAY):
        n = day * PARTS_PER_DAY + i
        part = make_part(f"D{day}-{i}", at=start + day * DAY_S + i * DAY_S / PARTS_PER_DAY, trigger_id=n,
                         seq0=8 * n, ng_camera="line-cam5" if i % 10 == 0 else None)
        for f in part.frames:
            assert writer.submit(f)
            path = archive.path_for(f)
            if path:  # the NG image, as the archive writes it beside the row
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_bytes(b"\xff" * IMAGE_BYTES)
        assert writer.submit_part(part)
        if i % PASS_EVERY == PASS_EVERY - 1:  # retention's passes during the day (its interval_s)
            rows = 8 * (day * PARTS_PER_DAY + i + 1)
            wait_until(lambda rows=rows: writer.rows_written + writer.spooled + writer.lost >= rows, 60, "the writer")
            archive.enforce_retention()  # index the new images, as the archive's worker does
            ret.run_pass(now=start + day * DAY_S + (i + 1) * DAY_S / PARTS_PER_DAY)


def _rows(engine: Engine) -> list[tuple[str, float, str | None]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(  # type: ignore[misc]
            "SELECT verdict, acquired_at, image_path FROM inspections ORDER BY acquired_at"))]


def test_a_filling_disk_loses_no_result_and_no_ng_image_a_stored_row_points_to(disk: Path) -> None:
    engine = open_database(f"sqlite:///{disk / 'station.db'}", durable=True)
    migrate(engine)
    archive = NgArchive(disk / "ng", max_age_days=90.0, max_total_bytes=None, min_free_bytes=FLOOR)
    policy = RetentionPolicy(ok_max_age_days=30.0, ng_max_age_days=90.0, image_max_age_days=90.0,
                             disk_budget_bytes=BUDGET, min_free_bytes=FLOOR, pause_s=0.0, batch_rows=200)
    ret = StorageRetention(engine, policy, archive)
    start = NOW - DAYS * DAY_S
    writer = DbWriter(engine, image_path_for=archive.path_for, linger_s=0.0, spool_reserve_bytes=1_000_000)
    writer.start()
    filler = disk / "other-program.bin"
    used_after_pass = []
    try:
        for day in range(DAYS):
            if day == 3:  # another program takes the disk down to the floor and 3 MB
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                with filler.open("wb") as fh:
                    fh.write(b"\0" * max(0, free - FLOOR - 3_000_000))
            _store_day(writer, archive, ret, day, start)
            with engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = database_size(engine)
            used_after_pass.append(size.used_bytes + archive.archive_bytes)
            st = os.statvfs(disk)
            # the floor: FLOOR, at most 5% of the disk; the database's free pages take the next rows first
            free = st.f_bavail * st.f_frsize + size.free_bytes
            assert free >= FLOOR, f"day {day}: the free-space floor did not hold ({free} bytes free)"
        rows = _rows(engine)
        with engine.connect() as c:  # the oldest part kept of each verdict
            parts = list(c.execute(text("SELECT verdict, min(triggered_at) FROM parts GROUP BY verdict")))
    finally:
        writer.stop()
        engine.dispose()
    # every result stored at once: none had to wait in the spool, none lost
    assert (writer.rows_written, writer.spooled, writer.lost) == (DAYS * PARTS_PER_DAY * 8, 0, 0)
    assert ret.purged_for_space > 0, "the filling disk was what decided (else this tested only the age limits)"
    assert max(used_after_pass) <= BUDGET
    referenced = {p for _, _, p in rows if p}
    assert all(Path(p).exists() for p in referenced), "a kept row points to a deleted image"
    assert {str(p) for p in archive.root.rglob("*.jpg")} == referenced  # and no image outlives its row
    oldest = dict(parts)
    assert set(oldest) == {"OK", "NG"} and oldest["NG"] < oldest["OK"], "NG parts are kept longer than OK ones"
