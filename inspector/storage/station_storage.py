"""A station's storage, opened in one step: database (migrated), NG archive, writer and retention.

Part of building a station (`inspector.station`): the database must keep what it is given
(an in-memory or read-only one is refused, `open_database(durable=True)`), the archive sits
beside a SQLite file unless configured elsewhere, and retention keeps both in one disk budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inspector.archive import NgArchive
from inspector.storage.db import default_db_url, migrate, open_database, sqlite_path
from inspector.storage.retention import StorageRetention
from inspector.storage.writer import DbWriter


@dataclass(frozen=True)
class StationStorage:
    """What a station stores through."""

    url: str
    engine: Engine
    writer: DbWriter
    archive: NgArchive | None
    retention: StorageRetention

    def attach(self, fan_out: Any) -> None:
        """Into the station's `SinkFanOut`: the writer as the store, the archive, retention (takes no frame)."""
        fan_out.add_store(self.writer)
        if self.archive is not None:
            fan_out.add_frame_sink(self.archive)
        fan_out.add_frame_sink(self.retention)  # started and stopped with the sinks


def open_station_storage(url: str, config: Any, *, archive: bool) -> StationStorage:
    """Open the database at ``url`` ("" for the default file) with ``config`` (the ``[storage]`` section).

    Raises:
        StorageError: The database cannot be opened or would not keep results, or the spool's
            reserve cannot be allocated (one line each).
    """
    url = url or default_db_url()
    engine = open_database(url, durable=True)
    migrate(engine)
    ng_archive = None
    if archive:
        base = Path(config.archive_dir) if config.archive_dir else archive_dir_for(sqlite_path(engine))
        ng_archive = NgArchive(
            base,
            fmt=config.archive_format,
            max_age_days=config.archive_max_age_days,
            max_total_bytes=int(config.archive_max_gb * 1e9),
            min_free_bytes=int(config.archive_min_free_mb * 1e6),
            ok_sample_every=int(config.ok_sample_every),
        )
    writer = DbWriter(
        engine,
        image_path_for=ng_archive.path_for if ng_archive else None,
        spool_reserve_bytes=int(config.spool_reserve_mb * 2**20),
        linger_s=config.commit_interval_ms / 1000.0,
    )
    retention = StorageRetention.for_station(engine, config, ng_archive)  # database and archive in one budget
    return StationStorage(url, engine, writer, ng_archive, retention)


def archive_dir_for(db_file: Path | None) -> Path:
    """``ng_images`` beside a SQLite file, else in the user data folder."""
    if db_file is not None:
        return Path(db_file).parent / "ng_images"
    import platformdirs

    return Path(platformdirs.user_data_dir("inspector")) / "ng_images"
