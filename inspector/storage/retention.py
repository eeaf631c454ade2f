"""`StorageRetention`: keeps the database and the NG archive inside one disk budget.

What goes, and when (``[storage]`` keys):

* By age: OK results older than ``ok_max_age_days``; NG and reviewed results (and every
  result of an NG part) older than ``ng_max_age_days``; NG images older than
  ``archive_max_age_days`` (the row stays, its ``image_path`` is cleared, so no kept row
  points to a deleted image).
* Sampled OK images (``ok_sample_every``) by their own limits: older than
  ``ok_sample_max_age_days``, or the oldest while they take more than ``ok_sample_max_gb``;
  the row stays with its ``image_path`` cleared. A reviewed OK result's image is kept as long
  as an NG image (``archive_max_age_days``): it is labelling work.
* By size, when the database passes ``db_max_gb``, the database and the archive together pass
  ``disk_budget_gb``, or the filesystem's free space falls below the archive's free-space
  floor: the oldest OK results first, then the oldest NG results together with their images.
  A station's recent minute is never purged for size.

The unit is the part on a triggered line (a part's frames go with it; a part is kept as
long as an NG result when it is NG or any of its frames is NG or reviewed) and the frame
when free-running. Camera events older than the oldest kept result go too; the audit
trail is never purged.

Purges run on their own thread in transactions of ``retention_batch_rows`` frames with a
pause between them, so the writer (which commits every ``commit_interval_ms``) waits at
most one batch for the lock. SQLite gives the space back with ``PRAGMA
incremental_vacuum`` in steps: new databases are created with ``auto_vacuum=INCREMENTAL``;
an older file keeps ``auto_vacuum=NONE`` (SQLite changes it only with a full ``VACUUM``,
which rewrites the file under an exclusive lock, so the station does not do it on its
own: run `enable_incremental_vacuum` while the station is stopped). Such a file does not
shrink, but the pages of purged rows are reused, so it stops growing. On PostgreSQL the
deletes are batched the same way and autovacuum makes the space reusable.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table, and_, delete, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from inspector.pipeline.results import InspectionResult
from inspector.storage.db import display_url, sqlite_path, writing
from inspector.storage.event_models import CameraEventRecord
from inspector.storage.history import PART_CLOCK_SLACK_S
from inspector.storage.models import REVIEW_MARKS, InspectionRecord, PartRecord

if TYPE_CHECKING:  # pragma: no cover
    from inspector.archive import NgArchive
    from inspector.config import StorageConfig

log = logging.getLogger(__name__)

_I: Table = InspectionRecord.__table__  # type: ignore[assignment]
_P: Table = PartRecord.__table__  # type: ignore[assignment]
_E: Table = CameraEventRecord.__table__  # type: ignore[assignment]
DAY_S = 86400.0
#: Size purges never touch results younger than this (a part whose frames are still being written).
RECENT_S = 60.0
#: Purge to this share of a size limit, so that one purge lasts more than one batch of new rows.
HYSTERESIS = 0.95


@dataclass(frozen=True)
class RetentionPolicy:
    """What retention keeps; ``None`` is no limit.

    Attributes:
        ok_max_age_days: OK results (not reviewed).
        ng_max_age_days: NG and reviewed results.
        image_max_age_days: NG images, and the images of reviewed OK results (their rows stay).
        ok_image_max_age_days: Sampled OK images (their rows stay).
        ok_images_max_bytes: Sampled OK images together (the oldest go first).
        db_max_bytes: The database's size.
        disk_budget_bytes: The database and the NG archive together.
        min_free_bytes: Free space to keep on the filesystems of the database and archive.
        warn_fraction: Share of a size limit at which health turns DEGRADED.
        batch_rows: Frames deleted per transaction.
        pause_s: Pause between two batches (the writer takes the lock meanwhile).
        interval_s: Time between two retention passes.
        vacuum_pages: Pages given back to the filesystem per incremental-vacuum step (SQLite).
    """

    ok_max_age_days: float | None = 30.0
    ng_max_age_days: float | None = 365.0
    image_max_age_days: float | None = 30.0
    ok_image_max_age_days: float | None = 7.0
    ok_images_max_bytes: int | None = None
    db_max_bytes: int | None = None
    disk_budget_bytes: int | None = None
    min_free_bytes: int = 0
    warn_fraction: float = 0.9
    batch_rows: int = 500
    pause_s: float = 0.05
    interval_s: float = 60.0
    vacuum_pages: int = 1024

    @classmethod
    def from_config(cls, st: StorageConfig) -> RetentionPolicy:
        """The policy of a station's ``[storage]`` section (0 means no limit)."""
        db_max = int(st.db_max_gb * 1e9) or None
        budget = st.disk_budget_gb or (st.db_max_gb + st.archive_max_gb if st.db_max_gb else 0.0)
        return cls(
            ok_max_age_days=float(st.ok_max_age_days) or None,
            ng_max_age_days=float(st.ng_max_age_days) or None,
            image_max_age_days=float(st.archive_max_age_days),
            ok_image_max_age_days=float(st.ok_sample_max_age_days),
            ok_images_max_bytes=int(st.ok_sample_max_gb * 1e9) or None,
            db_max_bytes=db_max,
            disk_budget_bytes=int(budget * 1e9) or None,
            min_free_bytes=int(st.archive_min_free_mb * 1e6),
            warn_fraction=float(st.disk_budget_warn),
            batch_rows=int(st.retention_batch_rows),
            interval_s=float(st.retention_interval_s),
        )


@dataclass(frozen=True)
class DatabaseSize:
    """How much room the database takes.

    Attributes:
        file_bytes: On disk (SQLite: the file, its WAL and shared memory; PostgreSQL: the database).
        page_bytes: The database's pages (SQLite: the file as of the last checkpoint; else ``file_bytes``).
        free_bytes: Pages inside the file that new rows will reuse (SQLite's free list).
        incremental: SQLite gives free pages back to the filesystem (``auto_vacuum=INCREMENTAL``).
    """

    file_bytes: int
    page_bytes: int = 0
    free_bytes: int = 0
    incremental: bool = False

    @property
    def used_bytes(self) -> int:
        """What the rows take: the pages less the reusable ones (the WAL is bounded and transient)."""
        return max(0, (self.page_bytes or self.file_bytes) - self.free_bytes)


def database_size(engine: Engine) -> DatabaseSize:
    """Measure the database (cheap: file sizes and two PRAGMAs, or one PostgreSQL function)."""
    path = sqlite_path(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            incremental = int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one()) == 2
            on_disk = pages * page
            if path is not None:
                on_disk = sum(_size(Path(f"{path}{suffix}")) for suffix in ("", "-wal", "-shm")) or on_disk
            return DatabaseSize(on_disk, pages * page, free * page, incremental)
        if engine.dialect.name == "postgresql":
            return DatabaseSize(int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()))
    return DatabaseSize(0)


def enable_incremental_vacuum(engine: Engine) -> None:
    """Switch an existing SQLite database to ``auto_vacuum=INCREMENTAL`` (a full ``VACUUM``).

    Rewrites the whole file under an exclusive lock and needs as much free space again:
    run it while no station writes to the database.
    """
    raw = engine.raw_connection()
    try:
        raw.driver_connection.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")  # type: ignore[union-attr]
    finally:
        raw.close()


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


class _Batch:
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


class StorageRetention:
    """Purges the database (and the NG images of purged rows) by age and by size, on its own thread.

    Registered with the station's fan-out as a frame sink that wants no frame, so the station
    starts and stops it with its sinks. It takes over the archive's size and free-space
    purges (`NgArchive.hand_space_to`): an image a kept row points to goes only with its row
    or, past ``archive_max_age_days``, with the row's ``image_path`` cleared.

    Args:
        engine: The station's database.
        policy: What to keep.
        archive: The NG archive sharing the disk budget (None: no images).
    """

    name = "retention"
    needs_pixels = False

    def __init__(self, engine: Engine, policy: RetentionPolicy, archive: NgArchive | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self.archive = archive
        self._folder = (sqlite_path(engine) or Path.cwd()).expanduser().absolute().parent
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # keyset cursors (time, id): rows before them were examined this run and kept as long-lived
        self._ok_parts_after: tuple[float, int] = (float("-inf"), 0)
        self._ok_frames_after: tuple[float, int] = (float("-inf"), 0)
        self._images_after: tuple[float, int] = (float("-inf"), 0)
        self._ok_images_after: tuple[float, int] = (float("-inf"), 0)
        self._reviewed_ok_images_after: tuple[float, int] = (float("-inf"), 0)
        self.deleted_frames = 0
        self.deleted_parts = 0
        self.deleted_images = 0
        self.deleted_events = 0
        self.expired_images = 0  # past the image age: file deleted, row kept
        self.expired_ok_images = 0  # sampled OK images past their age or size limit: file deleted, row kept
        self.purged_for_space = 0  # frames and parts deleted before their age, for size
        self.batches = 0
        self.max_batch_ms = 0.0
        self.vacuumed_bytes = 0  # given back to the filesystem (SQLite incremental vacuum)
        self.passes = 0
        self.errors = 0
        self._size = DatabaseSize(0)
        self._warned_not_incremental = False
        if archive is not None:
            archive.hand_space_to(self)
        self.measure()

    @classmethod
    def for_station(cls, engine: Engine, st: StorageConfig, archive: NgArchive | None) -> StorageRetention:
        """The retention of a station's ``[storage]`` section."""
        return cls(engine, RetentionPolicy.from_config(st), archive)

    # ------------------------------------------------------------------ sink protocol
    def wants(self, result: InspectionResult) -> bool:
        """No frame is retention's business (it reads the database)."""
        return False

    def submit(self, result: InspectionResult) -> bool:
        return True

    def start(self) -> None:
        """Start the retention thread (its first pass runs at once)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sink-retention", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch in progress."""
        self._stop.set()
        self._wake.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout)

    def wake(self) -> None:
        """Run a pass now (the archive calls this when the disk is full)."""
        self._wake.set()

    def stats(self) -> dict[str, float]:
        u = self.usage()
        return {
            "db_bytes": u["db_bytes"], "db_used_bytes": u["db_used_bytes"], "archive_bytes": u["archive_bytes"],
            "budget_used": u["budget_used"], "deleted_frames": self.deleted_frames,
            "deleted_parts": self.deleted_parts, "deleted_images": self.deleted_images,
            "expired_images": self.expired_images, "expired_ok_images": self.expired_ok_images,
            "deleted_events": self.deleted_events,
            "purged_for_space": self.purged_for_space, "batches": self.batches,
            "max_batch_ms": self.max_batch_ms, "vacuumed_bytes": self.vacuumed_bytes, "errors": self.errors,
        }

    # ------------------------------------------------------------------ measuring
    def measure(self) -> DatabaseSize:
        """Measure the database now (the health reads the last measurement)."""
        try:
            size = database_size(self.engine)
        except SQLAlchemyError as exc:
            log.warning("retention: cannot measure %s (%s)", display_url(self.engine.url), exc)
            return self._size
        self._size = size
        return size

    def _archive_bytes(self) -> int:
        return int(self.archive.archive_bytes) if self.archive is not None else 0

    def usage(self) -> dict[str, Any]:
        """The last measurement: database and archive bytes against the limits (health, report, metrics)."""
        p, size = self.policy, self._size
        archive = self._archive_bytes()
        used = size.used_bytes + archive
        return {
            "db_bytes": size.file_bytes,
            "db_used_bytes": size.used_bytes,
            "db_max_bytes": p.db_max_bytes or 0,
            "archive_bytes": archive,
            "budget_bytes": p.disk_budget_bytes or 0,
            "budget_used": used / p.disk_budget_bytes if p.disk_budget_bytes else 0.0,
            "db_used": size.used_bytes / p.db_max_bytes if p.db_max_bytes else 0.0,
            "warn_fraction": p.warn_fraction,
            "incremental_vacuum": size.incremental,
        }

    def _bytes_over(self, size: DatabaseSize, target: float = 1.0) -> int:
        """How many bytes the database and archive must give up to be within every limit times ``target``."""
        p = self.policy
        over = 0
        if p.db_max_bytes:
            over = max(over, int(size.used_bytes - p.db_max_bytes * target))
        if p.disk_budget_bytes:
            over = max(over, int(size.used_bytes + self._archive_bytes() - p.disk_budget_bytes * target))
        if p.min_free_bytes:
            floor = self._floor_bytes()
            for folder in self._folders():
                # pages the database will reuse count as free: they absorb new rows first
                free = _free_bytes(folder) + size.free_bytes
                over = max(over, int(floor / target - free))
        return over

    def _folders(self) -> list[Path]:
        folders = [self._folder] if sqlite_path(self.engine) is not None else []
        if self.archive is not None:
            folders.append(self.archive.root)
        return folders

    def _floor_bytes(self) -> int:
        if self.archive is not None:
            return int(self.archive.floor_bytes())
        try:
            return min(self.policy.min_free_bytes, int(shutil.disk_usage(self._folder).total * 0.05))
        except OSError:
            return self.policy.min_free_bytes

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        if self.archive is not None:
            self.archive.enforce_retention()  # index the archive: its bytes count against the budget
        while not self._stop.is_set():
            try:
                self.run_pass()
            except SQLAlchemyError as exc:  # database away or locked: the next pass tries again
                self.errors += 1
                log.warning("retention: pass failed (%s)", str(exc).splitlines()[0])
            self._wake.wait(self.policy.interval_s)
            self._wake.clear()

    def run_pass(self, now: float | None = None) -> int:
        """One pass: age limits, then size limits, then give the space back. Returns rows deleted.

        Args:
            now: The time the ages are measured from (tests fast-forward it); default the clock.
        """
        with self._lock:
            now = time.time() if now is None else now
            p = self.policy
            n = 0
            if p.ok_max_age_days is not None:
                n += self._drain(lambda: self._short_batch(now - p.ok_max_age_days * DAY_S))  # type: ignore[operator]
            if p.ng_max_age_days is not None:
                n += self._drain(lambda: self._oldest_batch(now - p.ng_max_age_days * DAY_S))  # type: ignore[operator]
            if p.image_max_age_days is not None and self.archive is not None:
                self._drain(lambda: self._expire_images(now - p.image_max_age_days * DAY_S))  # type: ignore[operator]
            if self.archive is not None:
                self._drain(lambda: self._expire_ok_samples(now))
            n += self._purge_for_space(now)
            n += self._drain(self._events_batch)
            self._give_back_space()
            self.measure()
            self.passes += 1
            return n

    def _drain(self, batch: Any) -> int:
        """Run ``batch`` (rows it handled) until it finds nothing or the thread is stopped."""
        total = 0
        while not self._stop.is_set():
            n = batch()
            total += n
            if n == 0:
                break
            self._stop.wait(self.policy.pause_s)
        return total

    def _purge_for_space(self, now: float) -> int:
        size = self.measure()
        if self._bytes_over(size) <= 0:
            return 0
        log.warning("retention: %s over its disk limits; purging the oldest OK results first",
                    display_url(self.engine.url))
        recent = now - RECENT_S
        n = 0
        self._ok_parts_after = self._ok_frames_after = (float("-inf"), 0)  # every OK result, from the oldest
        for batch in (lambda: self._short_batch(recent), lambda: self._oldest_batch(recent)):
            while not self._stop.is_set() and self._bytes_over(self.measure(), HYSTERESIS) > 0:
                got = batch()
                if got == 0:
                    break
                n += got
                self.purged_for_space += got
                self._give_back_space()
                self._stop.wait(self.policy.pause_s)
        if self._bytes_over(self.measure()) > 0:
            log.error("retention: still over the disk limits after purging every result older than %.0f s", RECENT_S)
        return n

    # ------------------------------------------------------------------ batches
    def _short_batch(self, cutoff: float) -> int:
        """Delete the oldest short-lived results before ``cutoff``: OK parts (with their frames) and
        free-running OK frames; parts held by an NG or reviewed frame are skipped (kept)."""
        n = self._delete(self._ok_parts_batch(cutoff))
        if n == 0:
            n = self._delete(self._ok_frames_batch(cutoff))
        return n

    def _ok_parts_batch(self, cutoff: float) -> _Batch:
        b = _Batch()
        with self.engine.connect() as conn:
            while len(b.frames) < self.policy.batch_rows:
                t, pid = self._ok_parts_after
                rows = conn.execute(
                    select(_P.c.id, _P.c.part_id, _P.c.line, _P.c.triggered_at, _P.c.expected)
                    .where(_P.c.verdict == "OK", _P.c.triggered_at < cutoff, _after(_P.c.triggered_at, _P.c.id, t, pid))
                    .order_by(_P.c.triggered_at, _P.c.id)
                    .limit(64)
                ).all()
                if not rows:
                    break
                for part in rows:
                    self._ok_parts_after = (float(part.triggered_at), int(part.id))
                    frames = _part_frames(conn, part)
                    if any(f.verdict == "NG" or f.review_mark is not None for f in frames):
                        continue  # long-lived: goes at ng_max_age_days, with the NG results
                    b.parts.append(int(part.id))
                    b.add_frames(frames)
                    if len(b.frames) >= self.policy.batch_rows:
                        break
        return b

    def _ok_frames_batch(self, cutoff: float) -> _Batch:
        b = _Batch()
        with self.engine.connect() as conn:
            while not b.frames:  # a page of kept NG or reviewed frames: look further
                t, fid = self._ok_frames_after
                rows = conn.execute(
                    select(_I.c.id, _I.c.acquired_at, _I.c.image_path, _I.c.verdict, _I.c.review_mark)
                    .where(_I.c.part_id.is_(None), _I.c.acquired_at < cutoff,
                           _after(_I.c.acquired_at, _I.c.id, t, fid))
                    .order_by(_I.c.part_id, _I.c.acquired_at, _I.c.id)  # walks ix_inspections_part_id_acquired_at
                    .limit(self.policy.batch_rows)
                ).all()
                if not rows:
                    break
                self._ok_frames_after = (float(rows[-1].acquired_at), int(rows[-1].id))
                b.add_frames([r for r in rows if r.verdict == "OK" and r.review_mark is None])
        return b

    def _oldest_batch(self, cutoff: float) -> int:
        """Delete the oldest results of any kind before ``cutoff``: parts with their frames, then
        frames older than every remaining part (free-running ones, and frames whose part is gone)."""
        b = _Batch()
        with self.engine.connect() as conn:
            parts = conn.execute(
                select(_P.c.id, _P.c.part_id, _P.c.line, _P.c.triggered_at, _P.c.expected, _P.c.verdict)
                .where(_P.c.triggered_at < cutoff)
                .order_by(_P.c.triggered_at, _P.c.id)
                .limit(64)
            ).all()
            for part in parts:
                frames = _part_frames(conn, part)
                b.parts.append(int(part.id))
                b.add_frames(frames)
                b.ng += part.verdict == "NG"
                if len(b.frames) >= self.policy.batch_rows:
                    break
            if not b.parts:
                oldest_part = conn.scalar(select(func.min(_P.c.triggered_at)))
                bound = cutoff if oldest_part is None else min(cutoff, float(oldest_part) - PART_CLOCK_SLACK_S)
                b.add_frames(conn.execute(
                    select(_I.c.id, _I.c.image_path)
                    .where(_I.c.acquired_at < bound)
                    .order_by(_I.c.acquired_at, _I.c.id)
                    .limit(self.policy.batch_rows)
                ).all())
        return self._delete(b)

    def _expire_images(self, cutoff: float) -> int:
        """Delete NG images older than ``cutoff`` whose rows stay; the rows' ``image_path`` is cleared."""
        assert self.archive is not None
        t, fid = self._images_after
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_I.c.id, _I.c.acquired_at, _I.c.image_path)
                .where(_I.c.verdict == "NG", _I.c.acquired_at < cutoff, _after(_I.c.acquired_at, _I.c.id, t, fid))
                .order_by(_I.c.verdict, _I.c.acquired_at, _I.c.id)
                .limit(self.policy.batch_rows)
            ).all()
        if not rows:
            return 0
        self._images_after = (float(rows[-1].acquired_at), int(rows[-1].id))
        with_images = [r for r in rows if r.image_path]
        if with_images:
            # the row first: a crash between the two leaves an unreferenced file (the archive's own
            # age purge takes it a day later), never a row pointing to a deleted image
            t0 = time.perf_counter()
            with writing(self.engine).begin() as conn:
                conn.execute(update(_I).where(_I.c.id.in_([r.id for r in with_images])).values(image_path=None))
            self._timed(t0)
            self.expired_images += self.archive.delete_images([str(r.image_path) for r in with_images])
        return len(rows)

    def _expire_ok_samples(self, now: float) -> int:
        """Clear and delete sampled OK images past their age, or the oldest while over their size limit.

        Reviewed OK rows keep their image until ``image_max_age_days`` (NG images' age).
        Returns the rows handled (0: nothing more to do this pass).
        """
        assert self.archive is not None
        self.archive.index()
        if self.archive.ok_sample_bytes <= 0:
            return 0  # none on disk: no scan over the OK rows
        p = self.policy
        over = p.ok_images_max_bytes is not None and self.archive.ok_sample_bytes > p.ok_images_max_bytes
        age = p.ok_image_max_age_days
        rows: list[Any] = []
        if over or age is not None:
            rows = self._ok_images("_ok_images_after", now - RECENT_S if over else now - age * DAY_S,  # type: ignore[operator]
                                   _I.c.review_mark.is_(None))
        if over:  # as many of the oldest as bring the samples under the limit (with hysteresis)
            need = self.archive.ok_sample_bytes - HYSTERESIS * p.ok_images_max_bytes  # type: ignore[operator]
            for k, r in enumerate(rows):
                need -= _size(Path(r.image_path))
                if need <= 0:
                    rows = rows[:k + 1]
                    break
        if rows:
            self._ok_images_after = (float(rows[-1].acquired_at), int(rows[-1].id))
        if p.image_max_age_days is not None:
            reviewed = self._ok_images("_reviewed_ok_images_after", now - p.image_max_age_days * DAY_S,
                                       _I.c.review_mark.in_(REVIEW_MARKS))
            if reviewed:
                self._reviewed_ok_images_after = (float(reviewed[-1].acquired_at), int(reviewed[-1].id))
            rows += reviewed
        if not rows:
            return 0
        t0 = time.perf_counter()
        with writing(self.engine).begin() as conn:  # the rows first, as in _expire_images
            conn.execute(update(_I).where(_I.c.id.in_([r.id for r in rows])).values(image_path=None))
        self._timed(t0)
        self.expired_ok_images += self.archive.delete_images([str(r.image_path) for r in rows])
        return len(rows)

    def _ok_images(self, cursor: str, cutoff: float, mark: Any) -> list[Any]:
        """The next OK rows with an image before ``cutoff`` matching ``mark``, oldest first, after ``cursor``."""
        t, fid = getattr(self, cursor)
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(_I.c.id, _I.c.acquired_at, _I.c.image_path)
                .where(_I.c.verdict == "OK", mark, _I.c.acquired_at < cutoff, _I.c.image_path.is_not(None),
                       _after(_I.c.acquired_at, _I.c.id, t, fid))
                .order_by(_I.c.verdict, _I.c.acquired_at, _I.c.id)
                .limit(self.policy.batch_rows)
            ).all())

    def _events_batch(self) -> int:
        """Camera events older than every kept result (they explain gaps in a history that is gone)."""
        with self.engine.connect() as conn:
            oldest = [conn.scalar(select(func.min(_I.c.acquired_at))), conn.scalar(select(func.min(_P.c.triggered_at)))]
        known = [float(t) for t in oldest if t is not None]
        if not known:
            return 0
        bound = min(known)
        t0 = time.perf_counter()
        with writing(self.engine).begin() as conn:
            ids = conn.execute(
                select(_E.c.id).where(_E.c.at < bound).order_by(_E.c.at).limit(self.policy.batch_rows)
            ).scalars().all()
            if ids:
                conn.execute(delete(_E).where(_E.c.id.in_(ids)))
        self._timed(t0)
        self.deleted_events += len(ids)
        return len(ids)

    def _delete(self, b: _Batch) -> int:
        """Delete a batch in one transaction; then the images of its rows."""
        if not len(b):
            return 0
        t0 = time.perf_counter()
        with writing(self.engine).begin() as conn:
            for chunk in _chunks(b.frames, 500):
                conn.execute(delete(_I).where(_I.c.id.in_(chunk)))  # detections go by ON DELETE CASCADE
            if b.parts:
                conn.execute(delete(_P).where(_P.c.id.in_(b.parts)))
        self._timed(t0)
        self.deleted_frames += len(b.frames)
        self.deleted_parts += len(b.parts)
        if b.images and self.archive is not None:
            self.deleted_images += self.archive.delete_images(b.images)
        return len(b)

    def _timed(self, t0: float) -> None:
        self.batches += 1
        self.max_batch_ms = max(self.max_batch_ms, (time.perf_counter() - t0) * 1000.0)

    # ------------------------------------------------------------------ space back
    def _give_back_space(self) -> None:
        """SQLite: hand free pages back to the filesystem in steps, pausing between them."""
        if self.engine.dialect.name != "sqlite" or sqlite_path(self.engine) is None:
            return
        size = self.measure()
        if not size.free_bytes:
            return
        if not size.incremental:
            if not self._warned_not_incremental:
                self._warned_not_incremental = True
                log.warning("retention: %s was created without auto_vacuum=INCREMENTAL: purged rows' pages are "
                            "reused but the file does not shrink (see enable_incremental_vacuum)",
                            display_url(self.engine.url))
            return
        while not self._stop.is_set():
            t0 = time.perf_counter()
            raw = self.engine.raw_connection()
            try:
                # executescript steps the PRAGMA to completion (execute frees one page per call)
                raw.driver_connection.executescript(  # type: ignore[union-attr]
                    f"PRAGMA incremental_vacuum({int(self.policy.vacuum_pages)})"
                )
            finally:
                raw.close()
            self._timed(t0)
            before = size.free_bytes
            size = self.measure()
            self.vacuumed_bytes += max(0, before - size.free_bytes)
            if not size.free_bytes or size.free_bytes >= before:
                break
            self._stop.wait(self.policy.pause_s)


def _after(t_col: Any, id_col: Any, t: float, row_id: int) -> Any:
    """Rows after the keyset position (t, id)."""
    if t == float("-inf"):
        return t_col.is_not(None)
    return or_(t_col > t, and_(t_col == t, id_col > row_id))


def _part_frames(conn: Any, part: Any) -> Sequence[Any]:
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


def _chunks(ids: list[int], n: int) -> list[list[int]]:
    return [ids[i:i + n] for i in range(0, len(ids), n)]


def _free_bytes(folder: Path) -> int:
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                break
    return 1 << 62


__all__ = [
    "DatabaseSize",
    "RetentionPolicy",
    "StorageRetention",
    "database_size",
    "enable_incremental_vacuum",
]
