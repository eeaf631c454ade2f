"""A full disk for NG images: a real 2 MiB tmpfs, so ENOSPC comes from the kernel."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from inspector.archive import NgArchive
from inspector.station import Station
from tests.inspector.factories import make_result
from tests.reliability.conftest import fill
from tests.reliability.helpers import station_config, use_paced_backend, wait_until


def test_full_disk_drops_images_but_inspection_and_db_go_on(
    tmp_path: Path, small_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_paced_backend(monkeypatch, ng=True)  # every part NG: every frame wants its image saved
    archive_root = small_filesystem / "ng"
    archive_root.mkdir()
    filler = fill(small_filesystem)
    db = tmp_path / "r.db"  # the database lives on another, healthy filesystem
    st = Station(station_config(2, fps=10, archive_dir=archive_root), db_url=f"sqlite:///{db}")
    assert st.archive is not None
    with st:
        wait_until(lambda: st.archive.dropped_disk_full >= 10, 15, "images dropped for a full disk")
        assert st.archive.alarm and st.archive.written == 0
        assert "archive ALARM" in st.status_line()
        inspected, rows = st.stats.camera("c0").inspected, st.db_writer.rows_written
        time.sleep(1.0)
        assert st.stats.camera("c0").inspected > inspected + 5  # inspection goes on
        assert st.db_writer.rows_written > rows + 5  # and so does the database
        filler.unlink()  # an operator frees space: writing resumes by itself
        wait_until(lambda: st.archive.written >= 5 and not st.archive.alarm, 15, "writing to resume")
        assert st.health()["archive"]["alarm"] is False
    rep = st.report()
    a = rep["archive"]
    assert a["dropped_disk_full"] >= 10 and a["written"] >= 5 and a["alarm"] == 0
    assert rep["db"]["rows_written"] == rep["totals"]["inspected"]  # every result logged
    con = sqlite3.connect(db)
    ng_rows = con.execute("SELECT count(*) FROM inspections WHERE verdict = 'NG'").fetchone()[0]
    paths = [Path(p) for (p,) in con.execute("SELECT image_path FROM inspections WHERE verdict = 'NG'")]
    con.close()
    assert ng_rows == rep["totals"]["inspected"]
    assert sum(p.is_file() for p in paths) == a["written"] - a["deleted"] - a["purged"]


def test_emergency_purge_makes_room_on_a_really_full_disk(small_filesystem: Path) -> None:
    root = small_filesystem / "ng"
    archive = NgArchive(root, fmt="png", min_free_bytes=300 * 1024)
    archive.start()
    shape = (256, 256, 3)  # random pixels: ~200 kB a PNG
    old = [make_result("cam1", i, "NG", [("scratch", 0.9)], with_frame=True, shape=shape,
                       acquired_at=1_700_000_000.0 + i) for i in range(4)]
    for r in old:
        assert archive.submit(r)
    wait_until(lambda: archive.written == 4, 5, "old images written")
    fill(small_filesystem)  # the disk fills up with something else
    new = [make_result("cam1", 100 + i, "NG", [("scratch", 0.9)], with_frame=True, shape=shape)
           for i in range(3)]
    for r in new:
        assert archive.submit(r)
    archive.stop()
    # the archive gave up its own oldest images to stay below the limit, and kept writing
    assert archive.written == 7 and archive.dropped_disk_full == 0 and not archive.alarm
    assert archive.purged >= 2
    assert Path(archive.path_for(new[-1]) or "").is_file()
    assert not Path(archive.path_for(old[0]) or "").exists()  # the oldest went first


def test_age_retention_runs_while_the_line_is_idle(tmp_path: Path) -> None:
    archive = NgArchive(tmp_path / "ng", fmt="png", max_age_days=1.0 / 86400, retention_interval_s=0.2)
    archive.start()
    try:
        results = [make_result("cam1", i, "NG", [("scratch", 0.9)], with_frame=True) for i in range(3)]
        for r in results:
            assert archive.submit(r)
        wait_until(lambda: archive.written == 3, 5, "images written")
        # no more parts come: the timer alone must delete the images once they are 1 s old
        wait_until(lambda: archive.deleted == 3, 5, "age retention while idle")
        assert not any(Path(archive.path_for(r) or "").exists() for r in results)
    finally:
        archive.stop()


def test_default_free_space_floor_keeps_every_image_on_a_small_disk(small_filesystem: Path) -> None:
    archive = NgArchive(small_filesystem / "ng", fmt="png", min_free_bytes=500_000_000)  # the default 500 MB
    archive.start()
    results = [make_result("cam1", i, "NG", [("scratch", 0.9)], with_frame=True, acquired_at=1_700_000_000.0 + i)
               for i in range(4)]
    for r in results:
        assert archive.submit(r)
    archive.stop()
    assert archive.written == 4 and archive.purged == 0
    assert all(Path(archive.path_for(r) or "").is_file() for r in results)
