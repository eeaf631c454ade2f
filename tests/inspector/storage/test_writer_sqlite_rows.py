"""The database writer's SQLite inserts (multi-row statements through the driver) store what SQLAlchemy's
generic inserts store: every column of every inspection and detection, duplicates skipped, batches larger
than SQLite binds in one statement."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest
from sqlalchemy import Engine, text

from inspector.pipeline.results import InspectionResult, Verdict
from inspector.storage import writer as writer_module
from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result

COLUMNS = ("uid", "camera_id", "sequence", "acquired_at", "verdict", "rule", "model_sha256", "backend", "wait_ms",
           "preprocess_ms", "inference_ms", "postprocess_ms", "verdict_ms", "total_ms", "frame_width",
           "frame_height", "settings_digest", "image_path", "part_id", "late", "review_mark")


@pytest.fixture(autouse=True)
def _no_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECTOR_DB_URL", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "userdata"))


def _engine(path: Path) -> Engine:
    eng = open_database(f"sqlite:///{path}")
    migrate(eng)
    return eng


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    fast, generic = _engine(tmp_path / "fast.db"), _engine(tmp_path / "generic.db")
    yield fast, generic
    fast.dispose()
    generic.dispose()


def _results(n: int) -> list[InspectionResult]:
    out = []
    for i in range(n):
        ng = i % 3 == 0
        r = make_result(f"cam{i % 4 + 1}", i, Verdict.NG if ng else Verdict.OK,
                        [("scratch", 0.81), ("dent", 0.55)] if ng else [], rejected=[("stain", 0.2)] if i % 5 == 0 else [],
                        acquired_at=1_700_000_000.0 + i / 100)
        out.append(dataclasses.replace(r, part_id=f"p{i // 8}" if i % 2 else None, late=i % 7 == 0))
    return out


def _store(engine: Engine, records: list[dict], **kwargs: object) -> DbWriter:
    w = DbWriter(engine, **kwargs)  # type: ignore[arg-type]
    w._store(records)
    w.on_stopped()
    return w


def _contents(engine: Engine) -> tuple[list[tuple], list[tuple]]:
    with engine.connect() as c:
        rows = [tuple(r) for r in c.execute(text(f"SELECT {', '.join(COLUMNS)} FROM inspections ORDER BY uid"))]
        dets = [tuple(r) for r in c.execute(text(
            "SELECT i.uid, d.class_id, d.class_name, d.score, d.x1, d.y1, d.x2, d.y2, d.accepted FROM detections d "
            "JOIN inspections i ON i.id = d.inspection_id ORDER BY i.uid, d.id"))]
    return rows, dets


def test_sqlite_rows_equal_the_generic_inserts_across_statements_and_with_duplicates(
        engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    fast_engine, generic_engine = engines
    maker = DbWriter(fast_engine)
    records = [maker._record(r) for r in _results(1234)]  # as its thread makes them (uids fresh: none queued)
    maker.on_stopped()
    fast = _store(fast_engine, records[:1000])
    assert fast.rows_written == 1000  # more rows than one statement binds (500 a statement)
    fast = _store(fast_engine, records[900:])  # 100 already stored: skipped, their detections not doubled
    assert fast.rows_written == 234

    # the same records through SQLAlchemy's own inserts (the path of every other database): the engine's dialect
    # answers another name, and the SQLite statements are gone
    monkeypatch.setattr(writer_module, "_sqlite_insert_returning", None)
    monkeypatch.setattr(writer_module, "_DETECTIONS_SQL", None)
    monkeypatch.setattr(generic_engine.dialect, "name", "other")
    generic = _store(generic_engine, records[:1000])
    assert generic.rows_written == 1000
    generic = _store(generic_engine, records[900:])
    assert generic.rows_written == 234
    monkeypatch.undo()
    fast_rows, fast_dets = _contents(fast_engine)
    generic_rows, generic_dets = _contents(generic_engine)
    assert len(fast_rows) == 1234 and len(fast_dets) == len(generic_dets) > 800
    assert fast_rows == generic_rows
    assert fast_dets == generic_dets


def test_a_column_not_in_the_table_is_refused_before_it_reaches_the_statement(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "x.db")
    try:
        with eng.begin() as conn, pytest.raises(ValueError, match="no column 'nope'"):
            writer_module._sqlite_insert_returning(conn, writer_module._INSPECTIONS, [{"uid": "u", "nope": 1}],
                                                   "uid", "id")
    finally:
        eng.dispose()


def test_uids_are_made_on_the_writer_thread_in_the_order_results_were_queued(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inspecting thread only queues a result (its uid costs it nothing); the writer makes each uid as it
    turns the result into a record, in queue order, so uids still sort as the frames were inspected."""
    made_on: list[str] = []
    real = writer_module.new_uid

    def recorded() -> str:
        made_on.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(writer_module, "new_uid", recorded)
    eng = _engine(tmp_path / "u.db")
    try:
        w = DbWriter(eng)
        for r in _results(50):
            assert w.submit(r)
        assert made_on == []  # nothing made by the thread that submitted
        w.start()
        w.stop()
        assert made_on == ["sink-db"] * 50
        with eng.connect() as c:
            by_uid = [seq for (seq,) in c.execute(text("SELECT sequence FROM inspections ORDER BY uid"))]
        assert by_uid == list(range(50))
    finally:
        eng.dispose()
