"""The disk budget: how much room the database and the NG archive take, against the limits.

The database's size (`database_size`: SQLite's file, its WAL and free pages; PostgreSQL's database)
and the archive's bytes count against ``db_max_gb`` and ``disk_budget_gb`` together, and the free
space of their filesystems against the archive's free-space floor (`DiskBudget.bytes_over`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from inspector.storage.db import sqlite_path
from inspector.storage.retention_policy import RetentionPolicy

if TYPE_CHECKING:  # pragma: no cover
    from inspector.archive import NgArchive

#: Most of a filesystem the free-space floor may ask to keep free (as `inspector.archive.FLOOR_FRACTION`).
FLOOR_FRACTION = 0.05


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
                on_disk = sum(file_size(Path(f"{path}{suffix}")) for suffix in ("", "-wal", "-shm")) or on_disk
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


class DiskBudget:
    """The limits of a `RetentionPolicy` against the database's last measured size and the archive's bytes.

    Args:
        engine: The station's database.
        policy: Its limits.
        archive: The NG archive sharing the budget (None: no images).
    """

    def __init__(self, engine: Engine, policy: RetentionPolicy, archive: NgArchive | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self.archive = archive
        self._folder = (sqlite_path(engine) or Path.cwd()).expanduser().absolute().parent

    def archive_bytes(self) -> int:
        """The archive's bytes (0 without one)."""
        return int(self.archive.archive_bytes) if self.archive is not None else 0

    def usage(self, size: DatabaseSize) -> dict[str, Any]:
        """Database ``size`` and archive bytes against the limits (health, report, metrics)."""
        p = self.policy
        archive = self.archive_bytes()
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

    def bytes_over(self, size: DatabaseSize, target: float = 1.0) -> int:
        """How many bytes the database and archive must give up to be within every limit times ``target``."""
        p = self.policy
        over = 0
        if p.db_max_bytes:
            over = max(over, int(size.used_bytes - p.db_max_bytes * target))
        if p.disk_budget_bytes:
            over = max(over, int(size.used_bytes + self.archive_bytes() - p.disk_budget_bytes * target))
        if p.min_free_bytes:
            for folder in self.folders():
                # pages the database will reuse count as free: they absorb new rows first
                free = free_bytes(folder) + size.free_bytes
                over = max(over, int(self.floor_bytes(folder) / target - free))
        return over

    def folders(self) -> list[Path]:
        """The folders whose filesystems must keep the floor free: the SQLite file's and the archive's."""
        folders = [self._folder] if sqlite_path(self.engine) is not None else []
        if self.archive is not None:
            folders.append(self.archive.root)
        return folders

    def floor_bytes(self, folder: Path | None = None) -> int:
        """Free space to keep on the filesystem of ``folder`` (default the database's): ``min_free_bytes``,
        at most `FLOOR_FRACTION` of that filesystem (a small disk keeps its images).

        Not the archive's own floor: an archive that handed its space to retention has none left.
        """
        try:
            total = shutil.disk_usage(folder or self._folder).total
        except OSError:
            return self.policy.min_free_bytes
        return min(self.policy.min_free_bytes, int(total * FLOOR_FRACTION))


def file_size(p: Path) -> int:
    """``p``'s size; 0 where it is not there."""
    try:
        return p.stat().st_size
    except OSError:
        return 0


def free_bytes(folder: Path) -> int:
    """Free space on the filesystem of ``folder`` (or of its nearest existing parent)."""
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                break
    return 1 << 62
