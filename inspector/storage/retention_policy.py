"""`RetentionPolicy`: what the database retention keeps, by age and by size (``[storage]`` keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from inspector.config import StorageConfig

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
