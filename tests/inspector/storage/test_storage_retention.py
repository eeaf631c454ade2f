"""Database retention (issue 26, item 7): by age and by size, NG and reviewed results kept longer,
a part's frames with the part, NG images with their rows, one disk budget for the database and
the archive, space given back, purges that never stall the writer."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import platformdirs
import pytest
from sqlalchemy import Engine, text

from inspector.archive import NgArchive
from inspector.config import StorageConfig, parse_config
from inspector.ops.health import assess
from inspector.pipeline.results import InspectionResult
from inspector.storage.db import migrate, open_database
from inspector.storage.history import get_part, set_review
from inspector.storage.retention import DAY_S, RetentionPolicy, StorageRetention, database_size
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result, wait_until
from tests.inspector.storage.test_storage_parts import make_part

NOW = 1_750_000_000.0


@pytest.fixture(autouse=True)
def _no_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECTOR_DB_URL", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "userdata"))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_database(f"sqlite:///{tmp_path / 'station.db'}", durable=True)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def archive(tmp_path: Path) -> NgArchive:
    return NgArchive(tmp_path / "ng", max_age_days=30.0, max_total_bytes=10**9, min_free_bytes=0)


def _frame(cam: str, seq: int, days_ago: float, ng: bool = False) -> InspectionResult:
    return make_result(cam, seq, "NG" if ng else "OK", [("scratch", 0.9)] if ng else [],
                       acquired_at=NOW - days_ago * DAY_S)


def _write(engine: Engine, frames: Sequence[InspectionResult] = (), parts: Sequence[object] = (),
           archive: NgArchive | None = None, image_bytes: int = 0) -> None:
    """Store frames and parts with the real writer; with ``archive``, each NG frame's image file too."""
    writer = DbWriter(engine, image_path_for=archive.path_for if archive else None, linger_s=0.0)
    writer.start()
    for i, f in enumerate(frames):
        if i % 5000 == 4999:  # within the writer's queue
            wait_until(lambda i=i: writer.rows_written >= i - 4000, 60, "the writer")
        assert writer.submit(f)
    for p in parts:
        for f in p.frames:  # type: ignore[attr-defined]
            assert writer.submit(f)
        assert writer.submit_part(p)  # type: ignore[arg-type]
    writer.stop()
    assert writer.rows_written == len(frames) + sum(len(p.frames) for p in parts)  # type: ignore[attr-defined]
    if archive is not None:
        every = [*frames, *(f for p in parts for f in p.frames)]  # type: ignore[attr-defined]
        for f in every:
            path = archive.path_for(f)
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_bytes(b"\xff" * (image_bytes or 100))


def _rows(engine: Engine, where: str = "1=1") -> list[tuple[str, str, float, str | None]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(
            f"SELECT camera_id, verdict, acquired_at, image_path FROM inspections WHERE {where} ORDER BY acquired_at"
        ))]  # type: ignore[misc]


def _policy(**kw: object) -> RetentionPolicy:
    base: dict[str, object] = {"ok_max_age_days": 30.0, "ng_max_age_days": 90.0, "image_max_age_days": None,
                               "pause_s": 0.0, "batch_rows": 50}
    base.update(kw)
    return RetentionPolicy(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- by age
def test_ok_results_go_at_their_age_ng_and_reviewed_ones_later(engine: Engine) -> None:
    days = [1, 10, 29, 31, 45, 60, 89, 91, 120]
    frames = [_frame("cam1", i, d, ng=False) for i, d in enumerate(days)]
    frames += [_frame("cam2", 100 + i, d, ng=True) for i, d in enumerate(days)]
    _write(engine, frames)
    reviewed = next(r for r in _ids(engine) if r[1] == "cam1" and r[2] == pytest.approx(NOW - 45 * DAY_S))
    set_review(engine, reviewed[0], "missed", "qe")
    ret = StorageRetention(engine, _policy())
    ret.run_pass(now=NOW)
    ok_days = sorted(round((NOW - t) / DAY_S) for _, v, t, _ in _rows(engine, "camera_id = 'cam1'"))
    ng_days = sorted(round((NOW - t) / DAY_S) for _, v, t, _ in _rows(engine, "camera_id = 'cam2'"))
    assert ok_days == [1, 10, 29, 45]  # 45: reviewed, kept as long as NG results
    assert ng_days == [1, 10, 29, 31, 45, 60, 89]
    assert ret.deleted_frames == 5 + 2  # OK: 31, 60, 89, 91, 120 days; NG: 91, 120


def _ids(engine: Engine) -> list[tuple[int, str, float]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text("SELECT id, camera_id, acquired_at FROM inspections"))]  # type: ignore[misc]


def test_a_parts_frames_go_with_it_and_an_ng_part_keeps_all_of_them(engine: Engine) -> None:
    old = NOW - 40 * DAY_S
    parts = [
        make_part("P-ok", at=old, trigger_id=1, seq0=0),
        make_part("P-ng", at=old + 10, trigger_id=2, seq0=10, ng_camera="line-cam3"),
        make_part("P-rev", at=old + 20, trigger_id=3, seq0=20),
        make_part("P-new", at=NOW - DAY_S, trigger_id=4, seq0=30),
    ]
    _write(engine, parts=parts)
    rev = get_part(engine, "P-rev")
    assert rev is not None
    set_review(engine, rev.frames[0].id, "false_call", "qe")
    StorageRetention(engine, _policy()).run_pass(now=NOW)
    assert get_part(engine, "P-ok") is None
    for pid in ("P-ng", "P-rev", "P-new"):
        kept = get_part(engine, pid)
        assert kept is not None and len(kept.frames) == 8, pid  # the OK frames of the NG part too
    assert len(_rows(engine)) == 24  # no frame of the deleted part is left behind
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM detections")).scalar_one() == 1  # P-ng's box only


def test_images_go_with_their_rows_and_expire_before_them(engine: Engine, archive: NgArchive) -> None:
    frames = [_frame("cam1", i, d, ng=True) for i, d in enumerate([5, 40, 100])]
    _write(engine, frames, archive=archive)
    paths = {round((NOW - f.acquired_at) / DAY_S): Path(archive.path_for(f) or "") for f in frames}
    assert all(p.exists() for p in paths.values())
    ret = StorageRetention(engine, _policy(image_max_age_days=30.0), archive)
    ret.run_pass(now=NOW)
    rows = {round((NOW - t) / DAY_S): path for _, _, t, path in _rows(engine)}
    assert rows == {5: str(paths[5]), 40: None}  # 100 days: row and image gone; 40: image expired, row kept
    assert paths[5].exists() and not paths[40].exists() and not paths[100].exists()
    assert ret.deleted_images == 1 and ret.expired_images == 1


def test_the_archive_hands_its_size_purge_to_retention(engine: Engine, tmp_path: Path) -> None:
    """Before, the archive deleted the oldest images past archive_max_gb whatever the rows said."""
    archive = NgArchive(tmp_path / "ng", max_age_days=30.0, max_total_bytes=1000, min_free_bytes=10**9)
    frames = [_frame("cam1", i, 1 + i / 100, ng=True) for i in range(20)]
    _write(engine, frames, archive=archive, image_bytes=200)  # 4000 bytes > 1000
    StorageRetention(engine, _policy(db_max_bytes=None, disk_budget_bytes=None), archive)
    archive.enforce_retention()
    assert all(Path(archive.path_for(f) or "").exists() for f in frames)
    assert archive.max_age_days == 31.0  # its own age purge only takes images no row points to any more


# ---------------------------------------------------------------------- by size
def _fill(engine: Engine, archive: NgArchive | None, n_parts: int, ng_every: int, image_bytes: int = 0) -> None:
    parts = [make_part(f"P-{i}", at=NOW - 10 * DAY_S + i * 60, trigger_id=i, seq0=8 * i,
                       ng_camera="line-cam2" if i % ng_every == 0 else None) for i in range(n_parts)]
    _write(engine, parts=parts, archive=archive, image_bytes=image_bytes)


def _parts(engine: Engine) -> list[tuple[str, str, float]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(  # type: ignore[misc]
            "SELECT part_id, verdict, triggered_at FROM parts ORDER BY triggered_at"))]


def test_over_the_database_limit_the_oldest_ok_results_go_first(engine: Engine) -> None:
    _fill(engine, None, 400, ng_every=5)
    used = database_size(engine).used_bytes
    ret = StorageRetention(engine, _policy(ok_max_age_days=None, ng_max_age_days=None, db_max_bytes=int(used * 0.7)))
    ret.run_pass(now=NOW)
    assert database_size(engine).used_bytes <= used * 0.7
    kept = _parts(engine)
    assert sum(v == "NG" for _, v, _ in kept) == 80  # every NG part is still there
    ok_times = [t for _, v, t in kept if v == "OK"]
    assert ok_times and len(ok_times) < 320
    assert min(ok_times) > max(t for _, v, t in _parts_deleted(kept, 400))  # the oldest went
    assert ret.purged_for_space > 0


def _parts_deleted(kept: list[tuple[str, str, float]], n: int) -> list[tuple[str, str, float]]:
    names = {p for p, _, _ in kept}
    return [(f"P-{i}", "OK", NOW - 10 * DAY_S + i * 60) for i in range(n) if f"P-{i}" not in names]


def test_over_the_disk_budget_ok_rows_first_then_ng_rows_with_their_images(engine: Engine, archive: NgArchive) -> None:
    _fill(engine, archive, 300, ng_every=3, image_bytes=20_000)  # 100 NG parts: 2 MB of images
    archive.enforce_retention()  # index the images (the archive's worker does at its start)
    db = database_size(engine).used_bytes
    images = archive.archive_bytes
    budget = int((db + images) * 0.5)  # more than every OK row could free
    ret = StorageRetention(engine, _policy(ok_max_age_days=None, ng_max_age_days=None, disk_budget_bytes=budget),
                           archive)
    ret.run_pass(now=NOW)
    assert database_size(engine).used_bytes + archive.archive_bytes <= budget
    kept = _parts(engine)
    assert all(v == "NG" for _, v, _ in kept)  # every OK part went before the first NG one
    assert 0 < len(kept) < 100
    first_kept = kept[0][2]
    for _, _, t, path in _rows(engine):
        assert path is None or Path(path).exists()  # no kept row points to a deleted image
    ng_images = sorted(archive.root.rglob("*.jpg"))
    assert len(ng_images) == len(kept)  # the deleted NG rows' images went with them
    assert first_kept > NOW - 10 * DAY_S


def test_space_is_given_back_to_the_filesystem(engine: Engine, tmp_path: Path) -> None:
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == 2  # INCREMENTAL: a new database
    _write(engine, [_frame(f"cam{i % 8}", i, 50 + i / 1000) for i in range(3000)])
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    before = (tmp_path / "station.db").stat().st_size
    ret = StorageRetention(engine, _policy())
    ret.run_pass(now=NOW)
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    after = (tmp_path / "station.db").stat().st_size
    assert after < before / 2 and ret.vacuumed_bytes > 0
    assert database_size(engine).free_bytes == 0


# ---------------------------------------------------------------------- never stall the writer
def test_purging_never_stalls_the_writer(engine: Engine) -> None:
    _write(engine, [_frame(f"cam{i % 8}", i, 40 + i / 10_000) for i in range(20_000)])
    writer = DbWriter(engine, linger_s=0.2)
    writer.start()
    ret = StorageRetention(engine, _policy(batch_rows=500, pause_s=0.05))
    stop = threading.Event()
    submitted = 0

    def produce() -> None:
        nonlocal submitted
        seq = 1_000_000
        while not stop.wait(0.005):
            seq += 1
            assert writer.submit(_frame("cam9", seq, 0.0))
            submitted += 1

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    ret.run_pass(now=NOW)
    stop.set()
    t.join()
    wait_until(lambda: writer.rows_written == submitted, 30, "the writer's rows")
    writer.stop()
    stats = writer.stats()
    assert stats["spool_size"] == 0 and stats.get("lost", 0) == 0  # never locked out long enough to spool
    assert ret.deleted_frames == 20_000 and ret.max_batch_ms < 1000.0


# ---------------------------------------------------------------------- health and config
def test_health_warns_before_the_disk_budget_is_reached(engine: Engine, archive: NgArchive) -> None:
    _fill(engine, archive, 50, ng_every=2, image_bytes=10_000)
    archive.enforce_retention()
    used = database_size(engine).used_bytes + archive.archive_bytes
    st = SimpleNamespace(config=parse_config('name = "h"\n[[cameras]]\nid = "c0"\nkind = "simulated"\n'),
                         running=False, paused=False, cameras={}, watchdog=SimpleNamespace(window_s=10.0),
                         transitions={}, stats=None, db_writer=None, archive=None, line=None)
    st.retention = StorageRetention(engine, _policy(disk_budget_bytes=int(used / 0.93)), archive)
    h = assess(st)  # type: ignore[arg-type]
    assert h["level"] == "DEGRADED" and "disk budget 93% used" in h["summary"]
    assert h["storage"]["db_bytes"] > 0 and h["storage"]["archive_bytes"] == archive.archive_bytes
    st.retention = StorageRetention(engine, _policy(disk_budget_bytes=int(used / 0.5)), archive)
    assert assess(st)["level"] == "OK"  # type: ignore[arg-type]


def test_storage_keys_and_their_checks() -> None:
    st = StorageConfig(db_max_gb=4, archive_max_gb=2, ok_max_age_days=7, ng_max_age_days=60)
    p = RetentionPolicy.from_config(st)
    assert p.db_max_bytes == 4 * 10**9 and p.disk_budget_bytes == 6 * 10**9  # the budget defaults to the sum
    assert p.ok_max_age_days == 7 and p.ng_max_age_days == 60 and p.batch_rows == 500
    assert RetentionPolicy.from_config(StorageConfig(ok_max_age_days=0, ng_max_age_days=0)).ok_max_age_days is None
    with pytest.raises(ValueError, match="ng_max_age_days"):
        StorageConfig(ok_max_age_days=30, ng_max_age_days=7)



def test_a_station_reports_its_database_size_and_budget(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    cfg = tmp_path / "station.toml"
    cfg.write_text('name = "ret"\n[storage]\ndb_max_gb = 1\narchive_max_gb = 1\n[[cameras]]\nid = "c"\n'
                   'kind = "simulated"\nfps = 10\nwidth = 160\nheight = 160\nbank_size = 2\n')
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "INSPECTOR_DB_URL"}
    res = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom inspector.cli import run_cli\nrun_cli(sys.argv[1:])\n", "run",
         "--headless", "--config", str(cfg), "--db", f"sqlite:///{tmp_path / 's.db'}", "--duration", "2",
         "--quiet", "--report", str(report)],
        cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=180, env=env, check=False,
    )
    assert res.returncode == 0, res.stderr
    storage = json.loads(report.read_text())["health"]["storage"]
    assert storage["db_bytes"] >= (tmp_path / "s.db").stat().st_size > 0
    assert storage["budget_bytes"] == 2 * 10**9 and 0 < storage["budget_used"] < 0.01


# ---------------------------------------------------------------------- 30 days, fast-forwarded
def test_thirty_days_at_a_reduced_rate_stay_within_the_database_limit(engine: Engine, archive: NgArchive,
                                                                      tmp_path: Path) -> None:
    """30 simulated days of an 8-camera line (1 part in 10 NG, each with its image), written by the real
    writer with the days' timestamps and a retention pass after each day: the database file stays within
    db_max_gb, OK results go at 7 days, NG results stay (20 days), and every image a kept row points to
    exists."""
    per_day, days = 60, 30
    db_max = 3 * per_day * 8 * 600  # about 3 days of this line's rows: the size limit bites before the OK age
    policy = _policy(ok_max_age_days=7.0, ng_max_age_days=20.0, image_max_age_days=20.0, db_max_bytes=db_max,
                     disk_budget_bytes=None, batch_rows=100)
    ret = StorageRetention(engine, policy, archive)
    start = NOW - days * DAY_S
    sizes = []
    for day in range(days):
        parts = [make_part(f"D{day}-{i}", at=start + day * DAY_S + i * DAY_S / per_day, trigger_id=day * per_day + i,
                           seq0=8 * (day * per_day + i), ng_camera="line-cam5" if i % 10 == 0 else None)
                 for i in range(per_day)]
        _write(engine, parts=parts, archive=archive, image_bytes=2000)
        archive.enforce_retention()  # index the new images, as the archive's worker does when it writes them
        ret.run_pass(now=start + (day + 1) * DAY_S)
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes.append((tmp_path / "station.db").stat().st_size)
    assert max(sizes[3:]) <= db_max  # the file, once the first days filled it
    assert ret.purged_for_space > 0  # the size limit was what held it
    kept = _parts(engine)
    assert {v for _, v, _ in kept} == {"OK", "NG"}
    oldest_ok = min(t for _, v, t in kept if v == "OK")
    oldest_ng = min(t for _, v, t in kept if v == "NG")
    assert oldest_ng < oldest_ok  # NG parts kept longer than OK ones
    assert NOW - oldest_ng <= 20 * DAY_S + 1
    for _, verdict, _, path in _rows(engine):
        assert path is None or Path(path).exists()  # no image of a kept row deleted
    on_disk = {str(p) for p in archive.root.rglob("*.jpg")}
    referenced = {path for _, _, _, path in _rows(engine) if path}
    assert on_disk == referenced  # and none left behind by a deleted row
