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

The policy is `retention_policy`, the sizes and limits `retention_budget`, the rows of each
transaction `retention_batches`; this module runs them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table
from sqlalchemy.exc import SQLAlchemyError

from inspector.pipeline.results import InspectionResult
from inspector.storage import retention_batches as batches
from inspector.storage.db import display_url, sqlite_path
from inspector.storage.models import REVIEW_MARKS, InspectionRecord
from inspector.storage.retention_batches import START, Keyset, PurgeBatch
from inspector.storage.retention_budget import (
    DatabaseSize,
    DiskBudget,
    database_size,
    enable_incremental_vacuum,
    file_size,
)
from inspector.storage.retention_policy import DAY_S, HYSTERESIS, RECENT_S, RetentionPolicy

if TYPE_CHECKING:  # pragma: no cover
    from inspector.archive import NgArchive
    from inspector.config import StorageConfig

log = logging.getLogger(__name__)

_I: Table = InspectionRecord.__table__  # type: ignore[assignment]


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
        self.budget = DiskBudget(engine, policy, archive)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # keyset cursors (time, id): rows before them were examined this run and kept as long-lived
        self._ok_parts_after: Keyset = START
        self._ok_frames_after: Keyset = START
        self._images_after: Keyset = START
        self._ok_images_after: Keyset = START
        self._reviewed_ok_images_after: Keyset = START
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

    def usage(self) -> dict[str, Any]:
        """The last measurement: database and archive bytes against the limits (health, report, metrics)."""
        return self.budget.usage(self._size)

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
        if self.budget.bytes_over(size) <= 0:
            return 0
        log.warning("retention: %s over its disk limits; purging the oldest OK results first",
                    display_url(self.engine.url))
        recent = now - RECENT_S
        n = 0
        self._ok_parts_after = self._ok_frames_after = (float("-inf"), 0)  # every OK result, from the oldest
        for batch in (lambda: self._short_batch(recent), lambda: self._oldest_batch(recent)):
            while not self._stop.is_set() and self.budget.bytes_over(self.measure(), HYSTERESIS) > 0:
                got = batch()
                if got == 0:
                    break
                n += got
                self.purged_for_space += got
                self._give_back_space()
                self._stop.wait(self.policy.pause_s)
        if self.budget.bytes_over(self.measure()) > 0:
            log.error("retention: still over the disk limits after purging every result older than %.0f s", RECENT_S)
        return n

    # ------------------------------------------------------------------ batches
    def _short_batch(self, cutoff: float) -> int:
        """Delete the oldest short-lived results before ``cutoff``: OK parts (with their frames) and
        free-running OK frames; parts held by an NG or reviewed frame are skipped (kept)."""
        b, self._ok_parts_after = batches.ok_parts(self.engine, cutoff, self._ok_parts_after, self.policy.batch_rows)
        n = self._delete(b)
        if n == 0:
            b, self._ok_frames_after = batches.ok_frames(self.engine, cutoff, self._ok_frames_after,
                                                         self.policy.batch_rows)
            n = self._delete(b)
        return n

    def _oldest_batch(self, cutoff: float) -> int:
        """Delete the oldest results of any kind before ``cutoff`` (`retention_batches.oldest`)."""
        return self._delete(batches.oldest(self.engine, cutoff, self.policy.batch_rows))

    def _expire_images(self, cutoff: float) -> int:
        """Delete NG images older than ``cutoff`` whose rows stay; the rows' ``image_path`` is cleared."""
        rows = batches.ng_image_rows(self.engine, cutoff, self._images_after, self.policy.batch_rows)
        if not rows:
            return 0
        self._images_after = (float(rows[-1].acquired_at), int(rows[-1].id))
        with_images = [r for r in rows if r.image_path]
        if with_images:
            self.expired_images += self._clear_images(with_images)
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
            rows = batches.ok_image_rows(self.engine, now - RECENT_S if over else now - age * DAY_S,  # type: ignore[operator]
                                         _I.c.review_mark.is_(None), self._ok_images_after, p.batch_rows)
        if over:  # as many of the oldest as bring the samples under the limit (with hysteresis)
            need = self.archive.ok_sample_bytes - HYSTERESIS * p.ok_images_max_bytes  # type: ignore[operator]
            for k, r in enumerate(rows):
                need -= file_size(Path(r.image_path))
                if need <= 0:
                    rows = rows[:k + 1]
                    break
        if rows:
            self._ok_images_after = (float(rows[-1].acquired_at), int(rows[-1].id))
        if p.image_max_age_days is not None:
            reviewed = batches.ok_image_rows(self.engine, now - p.image_max_age_days * DAY_S,
                                             _I.c.review_mark.in_(REVIEW_MARKS), self._reviewed_ok_images_after,
                                             p.batch_rows)
            if reviewed:
                self._reviewed_ok_images_after = (float(reviewed[-1].acquired_at), int(reviewed[-1].id))
            rows += reviewed
        if not rows:
            return 0
        self.expired_ok_images += self._clear_images(rows)
        return len(rows)

    def _events_batch(self) -> int:
        """Camera events older than every kept result (they explain gaps in a history that is gone)."""
        bound = batches.oldest_result_time(self.engine)
        if bound is None:
            return 0
        t0 = time.perf_counter()
        n = batches.delete_events_before(self.engine, bound, self.policy.batch_rows)
        self._timed(t0)
        self.deleted_events += n
        return n

    def _delete(self, b: PurgeBatch) -> int:
        """Delete a batch in one transaction; then the images of its rows."""
        if not len(b):
            return 0
        t0 = time.perf_counter()
        batches.delete_rows(self.engine, b)
        self._timed(t0)
        self.deleted_frames += len(b.frames)
        self.deleted_parts += len(b.parts)
        if b.images:
            self.deleted_images += self._delete_images(b.images)
        return len(b)

    def _clear_images(self, rows: list[Any]) -> int:
        """Clear the rows' ``image_path`` (the rows first), then delete their images; returns images deleted."""
        t0 = time.perf_counter()
        batches.clear_image_paths(self.engine, rows)
        self._timed(t0)
        return self._delete_images([str(r.image_path) for r in rows])

    def _delete_images(self, paths: list[str]) -> int:
        """The one place retention deletes image files (the archive deletes what goes with an image)."""
        return self.archive.delete_images(paths) if self.archive is not None else 0

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


__all__ = [
    "DAY_S",
    "HYSTERESIS",
    "RECENT_S",
    "DatabaseSize",
    "RetentionPolicy",
    "StorageRetention",
    "database_size",
    "enable_incremental_vacuum",
]
