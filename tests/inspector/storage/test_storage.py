"""Storage: schema migration, SQLite settings, the batch writer, its spool, history queries."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, inspect, text

from inspector.pipeline.results import InspectionResult
from inspector.storage.db import MIGRATIONS, StorageError, default_db_url, migrate, open_database, sqlite_path
from inspector.storage.history import (
    HistoryFilter,
    count_history,
    get_inspection,
    pareto,
    query_history,
    set_review,
    yield_by_hour,
)
from inspector.storage.writer import DbWriter
from tests.inspector.factories import MODEL_SHA, make_result, wait_until

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture(autouse=True)
def _no_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's real data folder and database URL out of every test."""
    monkeypatch.delenv("INSPECTOR_DB_URL", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "userdata"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "inspector.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    eng = open_database(f"sqlite:///{db_path}")
    migrate(eng)
    yield eng
    eng.dispose()


def _write(engine: Engine, results: list[InspectionResult], **kwargs: object) -> DbWriter:
    writer = DbWriter(engine, **kwargs)  # type: ignore[arg-type]
    for r in results:
        assert writer.submit(r)
    writer.start()
    writer.stop()
    return writer


# ---------------------------------------------------------------------- schema and settings
def test_migrate_creates_schema(engine: Engine) -> None:
    migrate(engine)  # a second run is a no-op
    insp = inspect(engine)
    assert {"cameras", "models", "inspections", "detections", "alembic_version"} <= set(insp.get_table_names())
    assert {i["name"] for i in insp.get_indexes("inspections")} == {
        "ix_inspections_acquired_at_id",
        "ix_inspections_camera_id_acquired_at",
        "ix_inspections_verdict_acquired_at",
        "ix_inspections_review_mark",
        "ix_inspections_part_id_acquired_at",
    }
    assert {i["name"] for i in insp.get_indexes("detections")} == {
        "ix_detections_inspection_id",
        "ix_detections_class_name_inspection_id",
    }
    assert [u["column_names"] for u in insp.get_unique_constraints("inspections")] == [["uid"]]
    fk = insp.get_foreign_keys("detections")[0]
    assert fk["referred_table"] == "inspections" and fk["options"].get("ondelete") == "CASCADE"
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # later revisions may follow 0001
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head


def test_sqlite_pragmas_on_every_connection(engine: Engine) -> None:
    with engine.connect() as a, engine.connect() as b:  # two pooled connections
        for conn in (a, b):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_default_db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = default_db_url()
    assert url == f"sqlite:///{tmp_path / 'userdata' / 'inspector.db'}"
    assert (tmp_path / "userdata").is_dir()
    monkeypatch.setenv("INSPECTOR_DB_URL", "postgresql+psycopg://line@db/inspector")
    assert default_db_url() == "postgresql+psycopg://line@db/inspector"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("foo://x", "'foo://x'"),
        ("not a url", "'not a url'"),
        ("sqlite:////nonexistent-folder/x.db", "'sqlite:////nonexistent-folder/x.db'"),
        ("postgresql+psycopg://line:secret@127.0.0.1:1/x", "'postgresql+psycopg://line:***@127.0.0.1:1/x'"),
    ],
)
def test_bad_url_is_a_one_line_storage_error(url: str, shown: str) -> None:
    with pytest.raises(StorageError) as info:
        open_database(url)
    msg = str(info.value)
    assert msg.startswith(f"db: cannot open {shown}: ")
    assert "\n" not in msg and "secret" not in msg
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------- writer
def test_writer_round_trip_in_batches(engine: Engine, tmp_path: Path) -> None:
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    results = [
        make_result(
            f"cam{i % 3}",
            i,
            "NG" if i % 4 == 0 else "OK",
            [("scratch", 0.8), ("dent", 0.6)] if i % 4 == 0 else [],
            rejected=[("stain", 0.1)],
        )
        for i in range(250)
    ]
    writer = _write(engine, results, max_batch=50, image_path_for=lambda r: f"/img/{r.sequence}" if r.ng else None)
    assert writer.rows_written == 250 and writer.handled == 250
    assert writer.stats()["spooled"] == 0 and writer.failed_batches == 0
    assert len(commits) == 5  # 250 results queued before start: five batches of 50
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(DISTINCT uid) FROM inspections")) == 250
        assert conn.scalar(text("SELECT count(*) FROM detections WHERE accepted")) == 2 * 63
        assert conn.scalar(text("SELECT count(*) FROM detections WHERE NOT accepted")) == 250
        assert sorted(conn.scalars(text("SELECT id FROM cameras"))) == ["cam0", "cam1", "cam2"]
        assert conn.execute(text("SELECT sha256, name, backend FROM models")).all() == [
            (MODEL_SHA, "defect-yolo11n", "openvino")
        ]
        row = conn.execute(
            text("SELECT verdict, rule, image_path, total_ms, frame_width FROM inspections WHERE sequence = 8")
        ).one()
    assert tuple(row) == ("NG", "scratch>=0.40", "/img/8", 11.1, 32)


def test_writer_describes_registered_cameras(engine: Engine) -> None:
    writer = DbWriter(engine)
    writer.register_camera("cam1", kind="gentl", vendor="Viky", model="VikyTL_DEV_red", serial="42")
    _write_with(writer, [make_result("cam1", 1), make_result("cam2", 2)])
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, kind, vendor, model, serial FROM cameras ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("cam1", "gentl", "Viky", "VikyTL_DEV_red", "42"), ("cam2", "", "", "", "")]


def _write_with(writer: DbWriter, results: list[InspectionResult]) -> None:
    writer.start()
    for r in results:
        writer.submit(r)
    writer.stop()


def test_bad_record_is_set_aside_not_the_batch(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    bad = dataclasses.replace(make_result("cam1", 2), verdict="MAYBE")  # violates the verdict CHECK
    writer = _write(engine, [make_result("cam1", i) for i in (0, 1)] + [bad, make_result("cam1", 3)], spool_path=spool)
    assert (writer.rows_written, writer.rejected, writer.spooled) == (3, 1, 0)
    rejects = (tmp_path / "spool.rejected.jsonl").read_text().splitlines()
    assert len(rejects) == 1 and '"verdict":"MAYBE"' in rejects[0]


def test_locked_database_spools_then_drains_without_duplicates(db_path: Path, tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{db_path}", busy_timeout_ms=50)
    migrate(engine)
    spool = tmp_path / "spool.jsonl"
    writer = DbWriter(engine, spool_path=spool, retry_s=0.1, linger_s=0.01, max_batch=20)
    writer.start()
    lock = sqlite3.connect(db_path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(100):
            assert writer.submit(make_result("cam1", i, "NG", [("scratch", 0.9)]))
        wait_until(lambda: writer.spooled == 100, what="100 results spooled")
        assert writer.rows_written == 0
        assert len(spool.read_bytes().rstrip(b"\0").splitlines()) == 100  # records, then the zeroed reserve
        assert writer.stats()["spool_size"] == 100
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_until(lambda: writer.rows_written == 100, what="spool drained")
    writer.submit(make_result("cam1", 100))
    writer.stop()
    assert writer.rows_written == 101 and writer.stats()["spool_size"] == 0
    assert spool.read_bytes().strip(b"\0") == b""  # drained: zeroed, the reservation kept
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM inspections")) == 101
        assert conn.scalar(text("SELECT count(DISTINCT uid) FROM inspections")) == 101
        assert conn.scalar(text("SELECT count(*) FROM detections")) == 100
    engine.dispose()


def test_spool_survives_restart_and_replays_idempotently(db_path: Path, tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{db_path}", busy_timeout_ms=20)
    migrate(engine)
    spool = tmp_path / "spool.jsonl"
    lock = sqlite3.connect(db_path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    first = DbWriter(engine, spool_path=spool, retry_s=0.05)
    _write_with(first, [make_result("cam1", i, "NG", [("dent", 0.7)]) for i in range(30)])
    lock.execute("ROLLBACK")
    lock.close()
    assert first.rows_written == 0 and first.spooled == 30
    # a crash between commit and truncation replays the same lines again
    records = spool.read_bytes().rstrip(b"\0")
    spool.write_bytes(records * 2)  # (the reserve is taken again at the next start)

    second = DbWriter(engine, spool_path=spool, retry_s=0.05)
    assert second.stats()["spool_size"] == 60
    _write_with(second, [])
    assert second.rows_written == 30 and spool.read_bytes().strip(b"\0") == b""
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM inspections")) == 30
        assert conn.scalar(text("SELECT count(*) FROM detections")) == 30
    engine.dispose()


# ---------------------------------------------------------------------- history
def _dataset() -> list[InspectionResult]:
    """60 results, three cameras, pairs sharing a timestamp (ties broken by id)."""
    out = []
    for i in range(60):
        ng = i % 3 == 0
        dets = [("scratch", 0.9)] if ng and i % 2 == 0 else [("dent", 0.7), ("dent", 0.5)] if ng else []
        out.append(make_result(f"cam{i % 3}", i, "NG" if ng else "OK", dets, acquired_at=T0 + 600.0 * (i // 2)))
    return out


@pytest.fixture
def history(engine: Engine) -> tuple[Engine, list[InspectionResult]]:
    results = _dataset()
    _write(engine, results)
    return engine, results


def _keys(rows: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(r.camera_id, r.sequence) for r in rows]


@pytest.mark.parametrize(
    ("flt", "want"),
    [
        (HistoryFilter(), lambda r: True),
        (HistoryFilter(camera_id="cam1"), lambda r: r.camera_id == "cam1"),
        (HistoryFilter(verdict="NG"), lambda r: r.ng),
        (HistoryFilter(verdict="OK", camera_id="cam2"), lambda r: not r.ng and r.camera_id == "cam2"),
        (HistoryFilter(since=T0 + 3000, until=T0 + 6000), lambda r: T0 + 3000 <= r.acquired_at < T0 + 6000),
        (HistoryFilter(class_name="dent"), lambda r: any(d.class_name == "dent" for d in r.detections)),
        (HistoryFilter(class_name="stain"), lambda r: False),
    ],
    ids=["all", "camera", "verdict", "verdict+camera", "time", "class", "class-none"],
)
def test_history_filters(history: tuple[Engine, list[InspectionResult]], flt: HistoryFilter, want) -> None:  # type: ignore[no-untyped-def]
    engine, results = history
    expected = [r for r in results if want(r)]
    rows = query_history(engine, flt, limit=1000)
    assert sorted(_keys(rows)) == sorted((r.camera_id, r.sequence) for r in expected)
    assert count_history(engine, flt) == len(expected)


@pytest.mark.parametrize("flt", [HistoryFilter(), HistoryFilter(verdict="OK"), HistoryFilter(camera_id="cam0")])
def test_keyset_pages_are_consistent_and_disjoint(
    history: tuple[Engine, list[InspectionResult]], flt: HistoryFilter
) -> None:
    engine, _ = history
    everything = query_history(engine, flt, limit=1000)
    pages, before = [], None
    while page := query_history(engine, flt, limit=7, before=before):
        assert len(page) <= 7
        pages.append(page)
        before = page[-1].cursor
    seen = [r.id for p in pages for r in p]
    assert seen == [r.id for r in everything] and len(set(seen)) == len(seen)
    keys = [(r.acquired_at, r.id) for r in everything]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)


def test_history_row_summary_and_detail(history: tuple[Engine, list[InspectionResult]]) -> None:
    engine, _ = history
    (row,) = [r for r in query_history(engine, HistoryFilter(camera_id="cam0"), limit=100) if r.sequence == 3]
    assert (row.verdict, row.classes, row.n_detections, row.max_score) == ("NG", "dent×2", 2, 0.7)
    detail, dets = get_inspection(engine, row.id)
    assert detail == row
    assert [(d["class_name"], d["score"], d["accepted"]) for d in dets] == [("dent", 0.7, True), ("dent", 0.5, True)]
    with pytest.raises(KeyError):
        get_inspection(engine, 10_000)


def test_set_review_persists_and_filters(history: tuple[Engine, list[InspectionResult]]) -> None:
    engine, results = history
    ng = query_history(engine, HistoryFilter(verdict="NG"), limit=3)
    set_review(engine, ng[0].id, "confirmed", "alice")
    set_review(engine, ng[1].id, "false_call", "bob")
    assert get_inspection(engine, ng[0].id)[0].review_mark == "confirmed"
    with engine.connect() as conn:
        by, at = conn.execute(
            text("SELECT reviewed_by, reviewed_at FROM inspections WHERE id = :i"), {"i": ng[1].id}
        ).one()
    assert by == "bob" and at > T0
    assert count_history(engine, HistoryFilter(reviewed=True)) == 2
    assert count_history(engine, HistoryFilter(reviewed=False)) == len(results) - 2
    assert _keys(query_history(engine, HistoryFilter(review_mark="false_call"))) == _keys([ng[1]])
    set_review(engine, ng[1].id, None, "bob")  # clearing a review
    assert count_history(engine, HistoryFilter(reviewed=True)) == 1


@pytest.mark.parametrize(
    ("mark", "user", "match"),
    [("bogus", "alice", "review_mark: 'bogus'"), ("missed", "  ", "reviewed_by")],
)
def test_set_review_rejects_bad_input(
    history: tuple[Engine, list[InspectionResult]], mark: str, user: str, match: str
) -> None:
    engine, _ = history
    with pytest.raises(ValueError, match=match):
        set_review(engine, 1, mark, user)
    with pytest.raises(ValueError, match="review_mark"):
        HistoryFilter(review_mark="bogus")
    with pytest.raises(KeyError):
        set_review(engine, 10_000, "missed", "alice")


def test_statistics(history: tuple[Engine, list[InspectionResult]]) -> None:
    engine, results = history
    hours = yield_by_hour(engine, HistoryFilter())
    assert sum(h.total for h in hours) == 60 and sum(h.ng for h in hours) == 20
    assert all(h.hour_start % 3600 == 0 for h in hours)
    assert [h.hour_start for h in hours] == sorted(h.hour_start for h in hours)
    first = min(hours, key=lambda h: h.hour_start)
    in_first = [r for r in results if first.hour_start <= r.acquired_at < first.hour_start + 3600]
    assert first.total == len(in_first) and first.yield_ratio == pytest.approx(
        1 - sum(r.ng for r in in_first) / len(in_first)
    )
    p = pareto(engine, HistoryFilter())
    assert p.by_class == [("dent", 20), ("scratch", 10)]
    assert p.by_camera == [("cam0", 20)]  # i % 3 == 0 is always camera 0
    assert pareto(engine, HistoryFilter(class_name="scratch")).by_class == [("scratch", 10)]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////data/line/inspector.db", Path("/data/line/inspector.db")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://line@db/inspector", None),
        ("not a url", None),
    ],
)
def test_sqlite_path(url: str, path: Path | None) -> None:
    assert sqlite_path(url) == path


def test_in_memory_database_is_shared_by_threads() -> None:
    engine = open_database("sqlite://")
    migrate(engine)
    writer = _write(engine, [make_result("cam1", i) for i in range(5)], spool_path=None)
    assert writer.rows_written == 5 and count_history(engine, HistoryFilter()) == 5
