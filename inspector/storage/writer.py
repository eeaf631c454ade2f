"""`DbWriter`: the result sink that stores every inspection in the database.

One worker thread turns results into rows and commits them in batches (one transaction per
batch; on SQLite multi-row statements through the driver, elsewhere Core ``insert()`` executemany). When a commit fails because the
database is locked or unreachable (or its disk is full), the batch is appended to the
writer's spool journal (fdatasync'ed; its space reserved when the writer is built, see
`inspector.storage.spool`) and replayed every ``retry_s`` until the database takes it:
nothing accepted is lost, and each result's uid makes the replay idempotent.

Only when the journal's reserve is used up and the disk cannot give it more do results
wait in a bounded in-memory backlog, written out as soon as space or the database is
back. What does not fit, or is still only in memory when the writer stops, is counted in
``lost`` (never silently): the health verdict, the run report and the exit status of
``inspector run`` say so.

Each writer process holds its own journal (``flock``): a second station on the same
database takes the next slot, and the journals of stations that died are drained at start.

Camera state transitions travel the same way (`DbWriter.record_camera_event`): through
the queue, into the ``camera_events`` table, or into the spool while the database is
away. So do part verdicts (`DbWriter.submit_part`): a `PartResult` becomes a ``parts`` row
in the same batched transaction as the inspections around it, and its frames (submitted
before it, as usual) carry its ``part_id``. A part's key ``(line, part_id, triggered_at)``
makes its replay idempotent as a uid does for an inspection.

Durable before visible: a part is handed to `on_durable`'s receiver (the fan-out, which gives it
to the PLC links) only after the batch holding it, and so its frames queued before it, is
committed or appended to the fsynced spool. A part waiting for that cuts the batch's linger
short (`QueuedSink.hurry`): trigger to PLC costs one commit, not a commit interval.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import platformdirs
from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from inspector.pipeline.results import InspectionResult, PartResult
from inspector.pipeline.sinks import QueuedSink
from inspector.storage.db import StorageError, display_url, sqlite_path, writing
from inspector.storage.event_models import CameraEventRecord
from inspector.storage.models import CameraRecord, DetectionRecord, InspectionRecord, ModelRecord, PartRecord
from inspector.storage.spool import (
    JournalFull,
    SpoolJournal,
    append_jsonl,
    open_journal,
    orphaned_journals,
)
from inspector.storage.uids import new_uid

log = logging.getLogger(__name__)

#: A record as stored and spooled: ``{"row": inspection columns, "model_name": str,
#: "detections": [[class_id, class_name, score, x1, y1, x2, y2, accepted], ...]}``, a
#: camera event ``{"event": camera_events columns}``, or a part ``{"part": parts columns}``.
Record = dict[str, Any]

_INSPECTIONS: Table = InspectionRecord.__table__  # type: ignore[assignment]
_DETECTIONS: Table = DetectionRecord.__table__  # type: ignore[assignment]
_CAMERAS: Table = CameraRecord.__table__  # type: ignore[assignment]
_MODELS: Table = ModelRecord.__table__  # type: ignore[assignment]
_EVENTS: Table = CameraEventRecord.__table__  # type: ignore[assignment]
_PARTS: Table = PartRecord.__table__  # type: ignore[assignment]
#: What makes a part unique (its replay idempotent): the columns of uq_parts_line_part_id_triggered_at.
_PART_KEY = ("line", "part_id", "triggered_at")
#: Inspection columns a record spooled by an older inspector lacks (before migration 0005).
_ROW_DEFAULTS: dict[str, Any] = {"part_id": None, "late": False}
_CAMERA_INFO = ("kind", "vendor", "model", "serial")
_DETECTION_COLUMNS = ("inspection_id", "class_id", "class_name", "score", "x1", "y1", "x2", "y2", "accepted")
_DETECTIONS_SQL = (f"INSERT INTO {_DETECTIONS.name} ({', '.join(_DETECTION_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(_DETECTION_COLUMNS))})")

#: Default spool reserve: 64 MiB, ~90,000 results (see `RECORD_BYTES_ESTIMATE`).
DEFAULT_SPOOL_RESERVE_BYTES = 64 * 2**20


def default_spool_path(engine: Engine) -> Path:
    """``<database file>.spool.jsonl`` for SQLite files, else one in the user data folder."""
    db = sqlite_path(engine)
    if db is not None:
        return db.with_name(db.name + ".spool.jsonl")
    return Path(platformdirs.user_data_dir("inspector")) / f"{engine.dialect.name}-spool.jsonl"


def _is_inspection(rec: Record) -> bool:
    return "row" in rec


def _uid(rec: Record) -> str:
    part = rec.get("part")
    if part is not None:  # a part has no uid: its natural key, which cannot collide with a uuid
        return "part:" + json.dumps([part.get(k) for k in _PART_KEY])
    return str((rec.get("row") or rec.get("event") or {}).get("uid", ""))


def _transient(exc: SQLAlchemyError) -> bool:
    """True if retrying later may succeed (lock, lost connection), False for bad data."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class DbWriter(QueuedSink):
    """Stores inspection results in the database, in batches, from one thread.

    Args:
        engine: From `inspector.storage.db.open_database`, schema migrated.
        image_path_for: Gives the archived image path of a result (e.g.
            ``NgArchive.path_for``), or None when no image is kept.
        spool_path: Where results wait while the database is unavailable (default:
            `default_spool_path`).
        name: Sink name (logs, metrics).
        maxsize: Queue capacity; a full queue is a counted skip.
        max_batch: Most results per transaction.
        linger_s: How long a batch waits to fill up.
        retry_s: Seconds between attempts to replay the spool.
        on_commit: Called from the writer thread with the uids of the inspections of
            each transaction, after it committed (e.g. to acknowledge them elsewhere).
        spool_reserve_bytes: Space reserved for the spool journal when the writer is built
            (None: `DEFAULT_SPOOL_RESERVE_BYTES`).
        max_backlog: Most records held in memory once the journal is full and cannot grow.

    Raises:
        StorageError: The spool journal cannot be opened or its reserve allocated.

    Attributes:
        rows_written: Inspections committed (replayed ones included, duplicates not).
        parts_written: Parts committed (replayed ones included, duplicates not).
        events_written: Camera events committed.
        spooled: Records (results, parts, events) that went to the spool (cumulative).
        rejected: Records the database refused as invalid data; they are kept in
            ``<spool>.rejected.jsonl`` for a person to look at.
        lost: Results accepted but never made durable (journal full and the disk with
            it, then the backlog full or the writer stopped), parts included: a lost part
            verdict raises the same alarm. Zero unless the disk fails.
        parts_skipped: Parts refused because the queue was full (also in ``skipped_full``).
        parts_lost: The parts among ``lost``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        image_path_for: Callable[[InspectionResult], str | None] | None = None,
        spool_path: Path | None = None,
        name: str = "db",
        maxsize: int = 10_000,
        max_batch: int = 1000,
        linger_s: float = 0.05,
        retry_s: float = 2.0,
        on_commit: Callable[[list[str]], None] | None = None,
        spool_reserve_bytes: int | None = None,
        max_backlog: int = 10_000,
    ) -> None:
        super().__init__(name, maxsize=maxsize, max_batch=max_batch, linger_s=linger_s)
        self._on_commit = on_commit
        self._engine = engine
        self._image_path_for = image_path_for
        base = Path(spool_path if spool_path is not None else default_spool_path(engine))
        if spool_reserve_bytes is None:
            spool_reserve_bytes = DEFAULT_SPOOL_RESERVE_BYTES
        try:
            self.spool: SpoolJournal = open_journal(base, spool_reserve_bytes)
        except OSError as exc:
            raise StorageError(
                f"cannot reserve {spool_reserve_bytes / 2**20:.1f} MiB for the result spool at {base} "
                f"({exc.strerror or exc}); free disk space there or lower [storage] spool_reserve_mb"
            ) from None
        self._orphans = orphaned_journals(base, self.spool)
        self._rejects_path = base.with_name(base.stem + ".rejected.jsonl")
        self._max_backlog = max_backlog
        self._retry_s = retry_s
        self._next_drain = 0.0  # monotonic; a spool left by a previous run drains at once
        self._known_cameras: set[str] = set()
        self._known_models: set[str] = set()
        self._camera_info: dict[str, dict[str, str]] = {}
        self._info_lock = threading.Lock()
        self._backlog: list[Record] = []  # only when even the spool cannot be written
        self._deliver: Callable[[list[PartResult]], None] | None = None
        self.parts_delivered = 0
        self.parts_not_durable = 0  # parts handed on from the in-memory backlog or lost (the disk is full)
        self.rows_written = 0
        self.parts_written = 0
        self.parts_accepted = 0
        self.parts_skipped = 0
        self.parts_lost = 0
        self.events_written = 0
        self.events_skipped = 0
        self.spooled = 0
        self.rejected = 0
        self.lost = 0
        self.events_lost = 0
        for j in (self.spool, *self._orphans):
            if len(j):
                log.warning("db: %d results wait in spool %s; they will be written first", len(j), j.path)

    @property
    def pending(self) -> int:
        """Records waiting for the database: in the journals and in the in-memory backlog."""
        return len(self.spool) + sum(len(j) for j in self._orphans) + len(self._backlog)

    @property
    def durable(self) -> bool:
        """False while a result exists only in memory or once one was lost."""
        return not self._backlog and not self.lost

    def not_durable_reason(self) -> str | None:
        """Why results are not being kept now (a line then fails its OK parts safe), or None."""
        if self.durable:
            return None
        return ("results cannot be stored (database and spool full)" if self.lost == 0
                else f"{self.lost} results lost (no room to store them)")

    # ------------------------------------------------------------------ producer side
    def submit_part(self, part: PartResult) -> bool:
        """Enqueue a part's verdict for the ``parts`` table; never blocks.

        Submit the part's frames (`submit`) before or with it; they are stored with its
        ``part_id``. The part is turned into a row on the writer thread, in the same batch
        and transaction as the inspections queued around it.

        Returns:
            False (counted in ``parts_skipped`` and ``skipped_full``) when the queue is full.
        """
        try:
            self._q.put_nowait(part)  # type: ignore[arg-type]
        except queue.Full:
            self.parts_skipped += 1
            self.skipped_full += 1  # the health alarm "db queue full" covers parts too
            return False
        self.parts_accepted += 1
        if self._deliver is not None:
            self.hurry()  # someone waits for this part: commit now, not after the linger
        return True

    def on_durable(self, deliver: Callable[[list[PartResult]], None]) -> None:
        """Hand each part, in submission order, to ``deliver`` once its batch is committed or in
        the fsynced spool; called on the writer thread. A part whose records could only be held
        in memory or were lost (the disk full) is handed on too, counted in ``parts_not_durable``:
        its verdict must still reach the line."""
        self._deliver = deliver

    def record_camera_event(
        self, camera_id: str, old_state: str, new_state: str, *, reason: str = "", at: float | None = None
    ) -> bool:
        """Queue a camera state transition for the ``camera_events`` table; never blocks.

        Returns:
            False (counted in ``events_skipped``) when the queue is full.
        """
        record: Record = {
            "event": {
                "uid": new_uid(),
                "at": time.time() if at is None else at,
                "camera_id": camera_id[:64],
                "old_state": old_state[:16],
                "new_state": new_state[:16],
                "reason": reason,
            }
        }
        try:
            self._q.put_nowait(record)  # type: ignore[arg-type]
        except queue.Full:
            self.events_skipped += 1
            return False
        return True

    def register_camera(
        self, camera_id: str, *, kind: str = "", vendor: str = "", model: str = "", serial: str = ""
    ) -> None:
        """Describe a camera; the ``cameras`` row is written or updated with the next batch."""
        with self._info_lock:
            self._camera_info[camera_id] = {"kind": kind, "vendor": vendor, "model": model, "serial": serial}

    def stats(self) -> dict[str, float]:
        out = super().stats()
        out.update(
            rows_written=self.rows_written,
            parts_written=self.parts_written,
            parts_skipped=self.parts_skipped,
            parts_lost=self.parts_lost,
            parts_delivered=self.parts_delivered,
            parts_not_durable=self.parts_not_durable,
            events_written=self.events_written,
            events_skipped=self.events_skipped,
            spooled=self.spooled,
            spool_size=self.pending,
            spool_reserve_used=round(self.spool.used_fraction, 4),
            spool_reserve_bytes=self.spool.reserve_bytes,
            backlog=len(self._backlog),
            rejected=self.rejected,
            lost=self.lost,
            events_lost=self.events_lost,
        )
        return out

    # ------------------------------------------------------------------ worker thread
    def idle_timeout(self) -> float | None:
        # while the spool holds results, wake up every retry_s so it drains on an idle line
        if self.pending:
            return max(0.0, self._next_drain - time.monotonic())
        return None

    def on_idle(self) -> None:
        self._drain()

    def count_handled(self, batch: list[InspectionResult]) -> int:
        return sum(isinstance(item, InspectionResult) for item in batch)  # not events (dicts) nor parts

    def on_stopped(self) -> None:
        if self.pending:
            self._drain()  # one last try; what stays in the spool is written at next start
            if len(self.spool):
                log.warning("db: stopping with %d results in spool %s", len(self.spool), self.spool.path)
        if self._backlog:  # only in memory: gone with this process
            self._count_lost(self._backlog, "the station stopped before the disk had room for them")
            self._backlog = []
        for j in (*self._orphans, self.spool):
            j.close()

    def handle_batch(self, batch: list[InspectionResult]) -> None:
        queued = cast("list[object]", batch)  # the queue also carries parts (submit_part) and spooled rows
        parts = [r for r in queued if isinstance(r, PartResult)] if self._deliver is not None else []
        lost_before, backlog_before = self.lost, len(self._backlog)
        try:
            self._handle_records(batch)
        finally:  # even if storing failed in a way nobody foresaw: a verdict is never held back
            if parts:
                if self.lost > lost_before or len(self._backlog) > backlog_before:
                    self.parts_not_durable += len(parts)
                self._hand_on(parts)

    def _hand_on(self, parts: list[PartResult]) -> None:
        assert self._deliver is not None
        try:
            self._deliver(parts)
        except Exception:
            log.exception("db: handing on %d durable parts failed", len(parts))
        self.parts_delivered += len(parts)

    def _handle_records(self, batch: list[InspectionResult]) -> None:
        records = [
            r if isinstance(r, dict) else self._part_record(r) if isinstance(r, PartResult) else self._record(r)
            for r in batch
        ]
        if self.pending:
            if time.monotonic() >= self._next_drain:
                self._drain()
            if self.pending:  # the database is still away: keep order
                self._to_spool(records)
                return
        try:
            self._store(records)
        except SQLAlchemyError as exc:
            log.warning(
                "db: cannot write %d results to %s (%s); spooling to %s",
                len(records),
                display_url(self._engine.url),
                str(getattr(exc, "orig", exc) or exc).splitlines()[0],
                self.spool.path,
            )
            self._to_spool(records)
            self._next_drain = time.monotonic() + self._retry_s

    def _record(self, r: InspectionResult) -> Record:
        # made here, on the writer thread, in queue order (uids sort as the frames were inspected): the record is
        # what is stored or spooled, once; the inspecting thread only queues the result (`QueuedSink.submit`)
        uid = new_uid()
        image_path = None
        if self._image_path_for is not None:
            try:
                image_path = self._image_path_for(r)
            except Exception:
                log.exception("db: image_path_for failed for %s#%d", r.camera_id, r.sequence)
        t, p = r.times, r.provenance
        dets = [[d.class_id, d.class_name[:64], d.score, d.x1, d.y1, d.x2, d.y2, True] for d in r.detections]
        dets += [[d.class_id, d.class_name[:64], d.score, d.x1, d.y1, d.x2, d.y2, False] for d in r.rejected]
        return {
            "row": {
                "uid": uid,
                "camera_id": r.camera_id[:64],
                "sequence": r.sequence,
                "acquired_at": r.acquired_at,
                "verdict": str(getattr(r.verdict, "value", r.verdict)),
                "rule": r.rule,
                "model_sha256": p.model_sha256[:64],
                "backend": p.backend[:32],
                "wait_ms": t.wait_ms,
                "preprocess_ms": t.preprocess_ms,
                "inference_ms": t.inference_ms,
                "postprocess_ms": t.postprocess_ms,
                "verdict_ms": t.verdict_ms,
                "total_ms": t.total_ms,
                "frame_width": r.frame_width,
                "frame_height": r.frame_height,
                "settings_digest": p.camera_settings_digest[:128],
                "image_path": image_path,
                "part_id": r.part_id[:64] if r.part_id is not None else None,
                "late": bool(r.late),
            },
            "model_name": p.model_name[:128],
            "detections": dets,
        }

    @staticmethod
    def _part_record(p: PartResult) -> Record:
        t = p.times
        return {
            "part": {
                "part_id": p.part_id[:64],
                "line": p.line[:64],
                "trigger_id": int(p.trigger_id),
                "triggered_at": float(p.triggered_at),
                "verdict": str(getattr(p.verdict, "value", p.verdict)),
                "reason": p.reason,
                "deciding_camera": p.deciding_camera[:64] if p.deciding_camera is not None else None,
                "expected": ",".join(p.expected),
                "missing": ",".join(p.missing),
                "deadline_met": bool(p.deadline_met),
                "budget_ms": float(p.budget_ms),
                "acquired_ms": float(t.acquired_ms),
                "inspected_ms": float(t.inspected_ms),
                "verdict_ms": float(t.verdict_ms),
                "truth_ng": None if p.truth_ng is None else bool(p.truth_ng),
                "recipe": p.recipe[:128],
            }
        }

    # ------------------------------------------------------------------ database
    def _store(self, records: list[Record]) -> int:
        """Write ``records`` in one transaction; uids already stored are skipped.

        Returns:
            How many inspections were new.

        Raises:
            SQLAlchemyError: A transient failure (nothing committed). A batch the
                database refuses as bad data is split up and the bad records set aside.
        """
        try:
            return self._commit(records)
        except SQLAlchemyError as exc:
            if _transient(exc):
                raise
            # a cached camera/model row may have been deleted under us: look again
            self._known_cameras.clear()
            self._known_models.clear()
            if len(records) == 1:
                self._reject(records, exc)
                return 0
            log.warning("db: batch of %d refused (%s); retrying one by one", len(records), exc.__class__.__name__)
            return sum(self._store([rec]) for rec in records)

    def _commit(self, records: list[Record]) -> int:
        # a replayed spool may hold the same record twice: keep the first of each uid
        unique: dict[str, Record] = {}
        for rec in records:
            unique.setdefault(_uid(rec), rec)
        events = [rec["event"] for rec in unique.values() if "event" in rec]
        parts = [rec["part"] for rec in unique.values() if "part" in rec]
        records = [rec for rec in unique.values() if "row" in rec]
        for rec in records:  # one set of columns for executemany, whatever wrote the record
            row = rec["row"]
            if "late" not in row or "part_id" not in row:
                rec["row"] = {**_ROW_DEFAULTS, **row}
        with self._info_lock:
            info, self._camera_info = self._camera_info, {}
        try:
            with writing(self._engine).begin() as conn:
                n_events = self._insert_events(conn, events) if events else 0
                n_parts = self._insert_parts(conn, parts) if parts else 0
                new_cameras, new_models = self._upsert_references(conn, records, info)
                ids = self._insert_inspections(conn, [rec["row"] for rec in records]) if records else {}
                if ids:
                    self._insert_detections(conn, records, ids)
        except BaseException:
            with self._info_lock:  # try the camera descriptions again with the next batch
                self._camera_info = {**info, **self._camera_info}
            raise
        self._known_cameras |= new_cameras
        self._known_models |= new_models
        self.rows_written += len(ids)
        self.events_written += n_events
        self.parts_written += n_parts
        if self._on_commit is not None and records:
            try:
                self._on_commit([rec["row"]["uid"] for rec in records])
            except Exception:
                log.exception("db: on_commit callback failed")
        return len(ids)

    @staticmethod
    def _insert_detections(conn: Connection, records: list[Record], ids: dict[str, int]) -> None:
        """Insert the detections of the inspections just stored (``ids``: uid -> row id of the new ones)."""
        dets = [
            (ids[uid], d[0], d[1], d[2], d[3], d[4], d[5], d[6], bool(d[7]))
            for rec in records
            if (uid := rec["row"]["uid"]) in ids
            for d in rec["detections"]
        ]
        if not dets:
            return
        if conn.dialect.name == "sqlite":
            # the driver's executemany with positional rows: SQLAlchemy's per-row parameter processing cost more
            # than the insert itself (what it would bind is what sqlite3 binds: no type here has a processor)
            conn.exec_driver_sql(_DETECTIONS_SQL, dets)
            return
        conn.execute(insert(_DETECTIONS), [dict(zip(_DETECTION_COLUMNS, d)) for d in dets])

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert camera events, skipping uids already present; returns how many were new."""
        dialect = conn.dialect.name
        t = _EVENTS
        if dialect in ("sqlite", "postgresql"):
            mod = sqlite if dialect == "sqlite" else postgresql
            stmt = mod.insert(t).on_conflict_do_nothing(index_elements=["uid"]).returning(t.c.uid)
            return len(conn.execute(stmt, rows).all())
        have = set(conn.scalars(select(t.c.uid).where(t.c.uid.in_([r["uid"] for r in rows]))))
        fresh = [r for r in rows if r["uid"] not in have]
        if fresh:
            conn.execute(insert(t), fresh)
        return len(fresh)

    def _insert_parts(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert parts, skipping those whose key is already stored; returns how many were new."""
        dialect = conn.dialect.name
        t = _PARTS
        if dialect in ("sqlite", "postgresql"):
            mod = sqlite if dialect == "sqlite" else postgresql
            stmt = mod.insert(t).on_conflict_do_nothing(index_elements=list(_PART_KEY)).returning(t.c.id)
            return len(conn.execute(stmt, rows).all())
        # other dialects: one probe per part (parts are few: one per 8 frames at most)
        fresh = [
            r for r in rows if conn.scalar(select(t.c.id).where(*(t.c[k] == r[k] for k in _PART_KEY)).limit(1)) is None
        ]
        if fresh:
            conn.execute(insert(t), fresh)
        return len(fresh)

    def _upsert_references(
        self, conn: Connection, records: list[Record], info: dict[str, dict[str, str]]
    ) -> tuple[set[str], set[str]]:
        cameras: dict[str, dict[str, Any]] = {}
        models: dict[str, dict[str, Any]] = {}
        for rec in records:
            row = rec["row"]
            if row["camera_id"] not in self._known_cameras and row["camera_id"] not in cameras:
                cameras[row["camera_id"]] = {"id": row["camera_id"], "first_seen": row["acquired_at"]}
            if row["model_sha256"] not in self._known_models and row["model_sha256"] not in models:
                models[row["model_sha256"]] = {
                    "sha256": row["model_sha256"],
                    "name": rec["model_name"],
                    "backend": row["backend"],
                    "first_seen": row["acquired_at"],
                }
        if cameras:
            rows = [{**dict.fromkeys(_CAMERA_INFO, ""), **c} for c in cameras.values()]
            self._insert_missing(conn, _CAMERAS, "id", rows)
        if models:
            self._insert_missing(conn, _MODELS, "sha256", list(models.values()))
        for camera_id, fields in info.items():
            camera_id = camera_id[:64]
            self._insert_missing(conn, _CAMERAS, "id", [{"id": camera_id, "first_seen": time.time(), **fields}])
            conn.execute(update(_CAMERAS).where(_CAMERAS.c.id == camera_id).values(**fields))
            cameras[camera_id] = {}
        return set(cameras), set(models)

    def _insert_missing(self, conn: Connection, table: Table, key: str, rows: list[dict[str, Any]]) -> None:
        """Insert the rows whose ``key`` is not in ``table`` yet."""
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            mod = sqlite if dialect == "sqlite" else postgresql
            conn.execute(mod.insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
            return
        col = table.c[key]
        have = set(conn.scalars(select(col).where(col.in_([r[key] for r in rows]))))
        fresh = [r for r in rows if r[key] not in have]
        if fresh:
            conn.execute(insert(table), fresh)

    def _insert_inspections(self, conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert inspections, skipping uids already present; returns uid -> id of new rows."""
        dialect = conn.dialect.name
        t = _INSPECTIONS
        if dialect == "sqlite":
            return dict(_sqlite_insert_returning(conn, t, rows, "uid", "id"))
        if dialect == "postgresql":
            stmt = postgresql.insert(t).on_conflict_do_nothing(index_elements=["uid"]).returning(t.c.uid, t.c.id)
            return {uid: id_ for uid, id_ in conn.execute(stmt, rows)}
        uids = [r["uid"] for r in rows]
        have = set(conn.scalars(select(t.c.uid).where(t.c.uid.in_(uids))))
        fresh = [r for r in rows if r["uid"] not in have]
        if not fresh:
            return {}
        conn.execute(insert(t), fresh)
        wanted = [r["uid"] for r in fresh]
        return {uid: id_ for uid, id_ in conn.execute(select(t.c.uid, t.c.id).where(t.c.uid.in_(wanted)))}

    # ------------------------------------------------------------------ spool
    def _to_spool(self, records: list[Record]) -> None:
        pending = self._backlog + records
        was_empty = not len(self.spool)
        try:
            n = self._append_what_fits(pending)
            if n < len(pending):
                self.spooled += n
                self._backlog, records = [], pending[n:]
                raise JournalFull(errno.ENOSPC, "reserve used up and the disk is full")
        except OSError as exc:
            room = max(0, self._max_backlog - len(self._backlog))
            if not self._backlog:
                log.error(
                    "db: spool %s cannot take more (%s): holding up to %d results in memory until the disk "
                    "or the database has room; results LOST if the station stops first",
                    self.spool.path, exc.strerror or exc, self._max_backlog,
                )
            self._backlog.extend(records[:room])
            if records[room:]:
                self._count_lost(records[room:], f"the in-memory backlog of {self._max_backlog} is full")
            return
        if was_empty and pending:
            log.error(
                "db: results go to the spool journal %s (reserve %.1f MiB, %.0f%% used)",
                self.spool.path, self.spool.reserve_bytes / 2**20, 100 * self.spool.used_fraction,
            )
        self.spooled += len(pending)
        self._backlog = []

    def _append_what_fits(self, records: list[Record]) -> int:
        """Append as many of ``records`` (in order) as the journal can take; returns how many."""
        try:
            self.spool.append(records)
            return len(records)
        except JournalFull:
            if len(records) <= 1:
                return 0
        half = len(records) // 2
        n = self._append_what_fits(records[:half])
        return n if n < half else n + self._append_what_fits(records[half:])

    def _count_lost(self, records: list[Record], why: str) -> None:
        rows = sum(_is_inspection(r) for r in records)
        parts = sum("part" in r for r in records)
        self.lost += rows + parts
        self.parts_lost += parts
        self.events_lost += len(records) - rows - parts
        log.error("db: %d results and %d parts LOST (%s); %d lost in all", rows, parts, why, self.lost)

    def _drain(self) -> None:
        """Replay orphaned journals, the spool and the in-memory backlog into the database."""
        self._next_drain = time.monotonic() + self._retry_s
        if self._backlog:
            self._to_spool([])  # space may be back before the database is
        current: SpoolJournal | None = None
        try:
            for current in [*self._orphans, self.spool]:
                if not len(current):
                    continue
                n, written = len(current), self._replay(current)
                current.clear()
                log.info("db: spool %s drained: %d results, %d new", current.path, n, written)
            current = None
            for j in self._orphans:
                j.discard()
            self._orphans = []
            if self._backlog:
                self._store(self._backlog)
                self._backlog = []
        except SQLAlchemyError as exc:
            log.info("db: spool replay paused (%s)", exc.__class__.__name__)
        except OSError as exc:
            log.error("db: cannot replay spool %s (%s)", current.path if current else "backlog", exc)
        except Exception:  # e.g. a malformed record: keep the spool, keep the worker alive
            log.exception("db: spool replay of %s failed; it stays for the next try", current.path if current else "")

    def _replay(self, journal: SpoolJournal) -> int:
        return sum(self._store(chunk) for chunk in journal.replay(self._max_batch))

    def _reject(self, records: Iterable[Record], exc: SQLAlchemyError) -> None:
        records = list(records)
        self.rejected += len(records)
        first = records[0].get("row") or records[0].get("event") or {}
        part = records[0].get("part")
        log.error(
            "db: %s#%s refused by the database (%s); kept in %s",
            part.get("line") if part else first.get("camera_id"),
            f"part {part.get('part_id')}" if part else first.get("sequence", "event"),
            str(getattr(exc, "orig", exc)).splitlines()[0],
            self._rejects_path,
        )
        try:
            append_jsonl(self._rejects_path, records)
        except OSError:
            log.exception("db: cannot write %s", self._rejects_path)


def _sqlite_insert_returning(conn: Connection, table: Table, rows: list[dict[str, Any]], key: str,
                             returned: str) -> list[tuple[Any, Any]]:
    """Insert ``rows`` (dicts with the same columns) into ``table`` on SQLite, skipping those whose ``key`` is
    already stored; returns ``(key, returned)`` of the new rows. Multi-row ``VALUES`` statements with positional
    parameters through the driver, as many rows each as SQLite binds variables: SQLAlchemy's insertmanyvalues
    builds the same statements but processes every row's parameters in Python, which cost more than the insert
    (no column type here has a bind processor on SQLite: what it would bind is what sqlite3 binds)."""
    if not rows:
        return []
    cols = list(rows[0])
    for c in cols:
        if c not in table.c:  # the names go into the statement's text
            raise ValueError(f"{table.name}: no column {c!r}")
    limit = conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    per = max(1, min(500, limit // len(cols)))
    one = f"({', '.join('?' * len(cols))})"
    head = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES "
    tail = f" ON CONFLICT ({key}) DO NOTHING RETURNING {key}, {returned}"
    out: list[tuple[Any, Any]] = []
    for first in range(0, len(rows), per):
        chunk = rows[first : first + per]
        params = [r[c] for r in chunk for c in cols]
        out.extend(conn.exec_driver_sql(head + ", ".join([one] * len(chunk)) + tail, tuple(params)).all())
    return out
