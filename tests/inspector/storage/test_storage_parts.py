"""Storage of parts: migration 0005, `DbWriter.submit_part` (batched, spooled), history by part."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import platformdirs
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, inspect, text

from inspector.pipeline.results import InspectionResult, PartResult, PartTimes, Verdict
from inspector.storage.db import MIGRATIONS, migrate, open_database
from inspector.storage.history import HistoryFilter, count_parts, get_part, query_history, query_parts
from inspector.storage.writer import DbWriter
from tests.inspector.factories import MODEL_SHA, make_result, wait_until
from tests.reliability.conftest import PostgresServer, postgres  # noqa: F401  (the PostgreSQL fixture)

T0 = 1_700_000_000.0
CAMS = tuple(f"line-cam{i}" for i in range(8))


@pytest.fixture(autouse=True)
def _no_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "userdata"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "parts.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    eng = open_database(f"sqlite:///{db_path}")
    migrate(eng)
    yield eng
    eng.dispose()


def make_part(
    part_id: str = "P-1",
    *,
    line: str = "line1",
    trigger_id: int = 1,
    at: float = T0,
    ng_camera: str | None = None,
    missing: Sequence[str] = (),
    seq0: int = 0,
    cameras: tuple[str, ...] = CAMS,
) -> PartResult:
    """A part of the 8 cameras with its frames (tagged as the tracker tags them)."""
    frames = tuple(
        dataclasses.replace(
            make_result(
                cam,
                seq0 + i,
                "NG" if cam == ng_camera else "OK",
                [("scratch", 0.8)] if cam == ng_camera else [],
                acquired_at=at + 0.05 + 0.01 * i,
            ),
            trigger_id=trigger_id,
            part_id=part_id,
        )
        for i, cam in enumerate(cameras)
        if cam not in missing
    )
    if missing:
        verdict, reason, deciding = Verdict.NG, f"incomplete: {', '.join(missing)} no image", missing[0]
    elif ng_camera is not None:
        verdict, reason, deciding = Verdict.NG, f"{ng_camera}: scratch>=0.40", ng_camera
    else:
        verdict, reason, deciding = Verdict.OK, "no defect", None
    return PartResult(
        part_id=part_id,
        line=line,
        trigger_id=trigger_id,
        triggered_at=at,
        verdict=verdict,
        reason=reason,
        frames=frames,
        expected=cameras,
        missing=tuple(missing),
        deciding_camera=deciding,
        budget_ms=1000.0,
        deadline_met=not missing,
        times=PartTimes(120.0, 180.0, 1000.5 if missing else 181.0),
        truth_ng=ng_camera is not None,
        recipe="housing-a",
    )


def _submit(writer: DbWriter, part: PartResult, extra: Sequence[InspectionResult] = ()) -> None:
    for f in part.frames:
        assert writer.submit(f)
    assert writer.submit_part(part)
    for f in extra:
        assert writer.submit(f)


def _write(engine: Engine, parts: Sequence[PartResult], **kwargs: object) -> DbWriter:
    writer = DbWriter(engine, **kwargs)  # type: ignore[arg-type]
    for p in parts:
        _submit(writer, p)
    writer.start()
    writer.stop()
    return writer


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            int(conn.scalar(text("SELECT count(*) FROM parts")) or 0),
            int(conn.scalar(text("SELECT count(*) FROM inspections")) or 0),
        )


# ---------------------------------------------------------------------- writer and get_part
def test_part_with_its_8_frames_round_trips_in_one_transaction(engine: Engine) -> None:
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    part = make_part("P-42", ng_camera="line-cam2")
    writer = _write(engine, [part])
    assert (writer.rows_written, writer.parts_written, writer.handled) == (8, 1, 8)
    assert writer.stats()["parts_written"] == 1 and writer.failed_batches == 0
    assert len(commits) == 1  # the frames and their part in the same batch

    detail = get_part(engine, "P-42")
    assert detail is not None
    p = detail.part
    assert (p.part_id, p.line, p.trigger_id, p.triggered_at, p.verdict) == ("P-42", "line1", 1, T0, "NG")
    assert (p.reason, p.deciding_camera, p.expected, p.missing) == ("line-cam2: scratch>=0.40", "line-cam2", CAMS, ())
    assert (p.deadline_met, p.budget_ms, p.acquired_ms, p.inspected_ms, p.verdict_ms) == (
        True,
        1000.0,
        120.0,
        180.0,
        181.0,
    )
    assert (p.truth_ng, p.recipe, p.incomplete) == (True, "housing-a", False)
    assert [f.camera_id for f in detail.frames] == list(CAMS)
    assert {f.part_id for f in detail.frames} == {"P-42"} and detail.late_frames == ()
    (ng,) = [f for f in detail.frames if f.verdict == "NG"]
    assert (ng.camera_id, ng.classes) == ("line-cam2", "scratch")
    assert get_part(engine, "P-42", line="line2") is None
    assert get_part(engine, "nope") is None
    # the inspection history can show the part of a frame and filter on it
    assert {r.part_id for r in query_history(engine, HistoryFilter(part_id="P-42"))} == {"P-42"}


def test_incomplete_part_stores_its_missing_cameras_and_reason(engine: Engine) -> None:
    _write(engine, [make_part("P-7", missing=("line-cam3", "line-cam6"))])
    detail = get_part(engine, "P-7")
    assert detail is not None
    p = detail.part
    assert (p.verdict, p.reason) == ("NG", "incomplete: line-cam3, line-cam6 no image")
    assert (p.missing, p.deciding_camera, p.deadline_met, p.incomplete) == (
        ("line-cam3", "line-cam6"),
        "line-cam3",
        False,
        True,
    )
    assert len(detail.frames) == 6
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT missing FROM parts")) == "line-cam3,line-cam6"


def test_late_frame_is_stored_late_under_its_part(engine: Engine) -> None:
    part = make_part("P-9", missing=("line-cam5",))
    late = dataclasses.replace(
        make_result("line-cam5", 5, acquired_at=T0 + 1.4), trigger_id=1, part_id="P-9", late=True
    )
    writer = DbWriter(engine)
    _submit(writer, part, extra=[late])  # after its part, as the station submits it
    writer.start()
    writer.stop()
    detail = get_part(engine, "P-9")
    assert detail is not None
    assert detail.part.missing == ("line-cam5",)  # a late frame never completes its part
    assert len(detail.frames) == 8
    assert [(f.camera_id, f.part_id, f.late) for f in detail.late_frames] == [("line-cam5", "P-9", True)]
    assert detail.frames[-1].late  # on-time frames first
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*), sum(late) FROM inspections WHERE part_id = 'P-9'")).one() == (8, 1)


def test_a_repeated_part_id_keeps_its_frames_apart(engine: Engine) -> None:
    # the station's own ids start at "1" again after a restart
    first, again = make_part("1", at=T0), make_part("1", at=T0 + 60.0, seq0=100, ng_camera="line-cam0")
    line2_cams = tuple(c.replace("line-", "line2-") for c in CAMS)  # camera ids are unique in a station
    other_line = make_part("1", line="line2", at=T0 + 30.0, seq0=200, cameras=line2_cams)
    _write(engine, [first, other_line, again])
    assert count_parts(engine) == 3
    newest = get_part(engine, "1")
    assert newest is not None and newest.part.triggered_at == T0 + 60.0
    assert sorted(f.sequence for f in newest.frames) == list(range(100, 108))
    on_line2 = get_part(engine, "1", line="line2")
    assert on_line2 is not None and [f.sequence for f in on_line2.frames] == list(range(200, 208))


def test_queue_full_part_is_refused_and_counted(engine: Engine) -> None:
    writer = DbWriter(engine, maxsize=1)  # not started: nothing drains the queue
    assert writer.submit(make_result("line-cam0", 1))
    assert not writer.submit_part(make_part())
    s = writer.stats()
    assert (writer.parts_skipped, s["skipped_full"], s["parts_written"]) == (1, 1, 0)
    writer.on_stopped()


# ---------------------------------------------------------------------- spool
def test_part_accepted_while_the_database_is_locked_is_written_later_exactly_once(
    db_path: Path, tmp_path: Path
) -> None:
    engine = open_database(f"sqlite:///{db_path}", busy_timeout_ms=20)
    migrate(engine)
    spool = tmp_path / "spool.jsonl"
    lock = sqlite3.connect(db_path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    first = DbWriter(engine, spool_path=spool, retry_s=0.05)
    first.start()
    _submit(first, make_part("P-1"))
    _submit(first, make_part("P-2", trigger_id=2, at=T0 + 0.2, seq0=10, missing=("line-cam1",)))
    wait_until(lambda: first.spooled == 17, what="8 + 7 frames and 2 parts spooled")
    first.stop()  # the database is still away: the records stay in the journal
    lock.execute("ROLLBACK")
    lock.close()
    assert (first.rows_written, first.parts_written, first.lost) == (0, 0, 0)
    # a crash between commit and clearing the journal replays the same lines again
    records = spool.read_bytes().rstrip(b"\0")
    assert records.count(b'"part":') == 2
    spool.write_bytes(records * 2)

    second = DbWriter(engine, spool_path=spool, retry_s=0.05)
    assert second.stats()["spool_size"] == 34
    second.start()
    second.stop()
    assert (second.rows_written, second.parts_written) == (15, 2)
    assert _counts(engine) == (2, 15)
    assert spool.read_bytes().strip(b"\0") == b""
    detail = get_part(engine, "P-2")
    assert detail is not None and detail.part.missing == ("line-cam1",) and len(detail.frames) == 7
    engine.dispose()


def test_spool_of_an_older_inspector_without_part_columns_is_written(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    template = DbWriter(engine, spool_path=tmp_path / "template.jsonl", spool_reserve_bytes=1 << 16)
    old = template._record(make_result("cam1", 1))
    del old["row"]["part_id"], old["row"]["late"]  # what 0004's writer spooled
    new = template._record(dataclasses.replace(make_result("cam1", 2), part_id="P-1", trigger_id=1))
    part = template._part_record(make_part("P-1"))
    template.on_stopped()
    spool.write_text("".join(json.dumps(r) + "\n" for r in (new, old, part)))  # mixed in one batch
    writer = DbWriter(engine, spool_path=spool)
    writer.start()
    writer.stop()
    assert (writer.rows_written, writer.parts_written, writer.rejected) == (2, 1, 0)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sequence, part_id, late FROM inspections ORDER BY sequence")).all()
    assert [tuple(r) for r in rows] == [(1, None, 0), (2, "P-1", 0)]


# ---------------------------------------------------------------------- history
@pytest.fixture
def parts(engine: Engine) -> tuple[Engine, list[PartResult]]:
    made = []
    for i in range(24):
        made.append(
            make_part(
                f"P-{i}",
                line=f"line{i % 2 + 1}",
                trigger_id=i + 1,
                at=T0 + 10.0 * (i // 2),  # pairs share a time: ties broken by id
                ng_camera="line-cam1" if i % 5 == 0 else None,
                missing=("line-cam7",) if i % 7 == 3 else (),
                seq0=10 * i,
            )
        )
    _write(engine, made)
    return engine, made


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({}, lambda p: True),
        ({"line": "line2"}, lambda p: p.line == "line2"),
        ({"verdict": "NG"}, lambda p: p.ng),
        ({"verdict": Verdict.OK, "line": "line1"}, lambda p: not p.ng and p.line == "line1"),
        ({"since": T0 + 30, "until": T0 + 70}, lambda p: T0 + 30 <= p.triggered_at < T0 + 70),
        ({"incomplete": True}, lambda p: p.incomplete),
        ({"incomplete": False, "verdict": "NG"}, lambda p: not p.incomplete and p.ng),
        ({"line": "line3"}, lambda p: False),
    ],
    ids=["all", "line", "verdict", "verdict+line", "time", "incomplete", "complete-NG", "none"],
)
def test_query_parts_filters(parts: tuple[Engine, list[PartResult]], kwargs: dict, want) -> None:  # type: ignore[no-untyped-def,type-arg]
    engine, made = parts
    rows = query_parts(engine, **kwargs, limit=1000)
    assert sorted(r.part_id for r in rows) == sorted(p.part_id for p in made if want(p))
    assert count_parts(engine, **kwargs) == len(rows)
    keys = [(r.triggered_at, r.id) for r in rows]
    assert keys == sorted(keys, reverse=True)  # newest first


def test_query_parts_pages_by_offset_and_by_cursor(parts: tuple[Engine, list[PartResult]]) -> None:
    engine, _ = parts
    everything = [r.id for r in query_parts(engine, limit=1000)]
    by_offset = [r.id for o in range(0, 24, 5) for r in query_parts(engine, limit=5, offset=o)]
    by_cursor, before = [], None
    while page := query_parts(engine, limit=5, before=before):
        by_cursor += [r.id for r in page]
        before = page[-1].cursor
    assert by_offset == by_cursor == everything and len(set(everything)) == 24


def test_query_parts_rejects_a_bad_verdict(engine: Engine) -> None:
    with pytest.raises(ValueError, match="verdict"):
        query_parts(engine, verdict="MAYBE")


# ---------------------------------------------------------------------- migration
def _alembic(conn: object) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = conn
    return cfg


def _old_inspection(conn: object) -> None:
    """A camera, a model, an inspection and a detection as a 0004 database holds them."""
    for sql in (
        "INSERT INTO cameras (id, kind, vendor, model, serial, first_seen) VALUES ('cam1', '', '', '', '', 1)",
        f"INSERT INTO models (sha256, name, backend, first_seen) VALUES ('{MODEL_SHA}', 'm', 'openvino', 1)",
        (
            "INSERT INTO inspections (uid, camera_id, sequence, acquired_at, verdict, rule, model_sha256, backend, "
            "wait_ms, preprocess_ms, inference_ms, postprocess_ms, verdict_ms, total_ms, frame_width, frame_height, "
            f"settings_digest) VALUES ('u-old', 'cam1', 7, {T0}, 'NG', 'r', '{MODEL_SHA}', 'openvino', "
            "0, 0, 0, 0, 0, 0, 32, 32, '')"
        ),
        (
            "INSERT INTO detections (inspection_id, class_id, class_name, score, x1, y1, x2, y2, accepted) "
            "SELECT id, 0, 'scratch', 0.9, 0, 0, 1, 1, true FROM inspections WHERE uid = 'u-old'"
        ),
    ):
        conn.execute(text(sql))  # type: ignore[attr-defined]


def _check_upgraded(engine: Engine) -> None:
    insp = inspect(engine)
    cols = {c["name"]: c for c in insp.get_columns("inspections")}
    assert cols["part_id"]["nullable"] and not cols["late"]["nullable"]
    assert "ix_inspections_part_id_acquired_at" in {i["name"] for i in insp.get_indexes("inspections")}
    assert [u["column_names"] for u in insp.get_unique_constraints("parts")] == [["line", "part_id", "triggered_at"]]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT part_id, late FROM inspections WHERE uid = 'u-old'")).one() == (None, False)
        assert conn.scalar(text("SELECT count(*) FROM detections")) == 1
        # at least 0005; later revisions follow it (0006: reviewed boxes)
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) >= "0005"


def test_migrate_upgrades_a_0004_database_and_downgrade_keeps_its_rows(db_path: Path) -> None:
    engine = open_database(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0004")
        _old_inspection(conn)
    assert "parts" not in inspect(engine).get_table_names()
    migrate(engine)
    _check_upgraded(engine)
    _write(engine, [make_part()])  # the writer works on the upgraded file
    assert _counts(engine) == (1, 9)
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0004")
    assert "parts" not in inspect(engine).get_table_names()
    with engine.connect() as conn:  # no table rebuild: detections did not cascade away
        assert conn.scalar(text("SELECT count(*) FROM detections")) == 1
        assert conn.scalar(text("SELECT count(*) FROM inspections")) == 9
    engine.dispose()


# ---------------------------------------------------------------------- PostgreSQL
def test_parts_on_postgresql_through_an_outage(tmp_path: Path, postgres: PostgresServer) -> None:  # noqa: F811
    engine = open_database(postgres.url)
    try:
        migrate(engine)
        with engine.begin() as conn:  # from 0004 with a row in it, as a plant database is upgraded
            command.downgrade(_alembic(conn), "0004")
            for table in ("detections", "inspections", "cameras", "models"):
                conn.execute(text(f"DELETE FROM {table}"))
            _old_inspection(conn)
        migrate(engine)
        _check_upgraded(engine)

        writer = DbWriter(engine, spool_path=tmp_path / "pg-spool.jsonl", retry_s=0.2, linger_s=0.01)
        writer.start()
        try:
            _submit(writer, make_part("P-1", ng_camera="line-cam4"))
            wait_until(lambda: writer.parts_written == 1, 10, what="the first part written")
            postgres.stop("immediate")
            _submit(writer, make_part("P-2", trigger_id=2, at=T0 + 1.0, seq0=10, missing=("line-cam0",)))
            wait_until(lambda: writer.spooled >= 8, 20, what="part 2 spooled while the server is down")
            postgres.start()
            wait_until(lambda: writer.parts_written == 2 and writer.pending == 0, 30, what="the spool to drain")
        finally:
            writer.stop()
        assert (writer.rows_written, writer.lost) == (15, 0)
        assert _counts(engine) == (2, 16)
        # replaying the same records again stores nothing twice
        again = [writer._part_record(make_part("P-2", trigger_id=2, at=T0 + 1.0, seq0=10, missing=("line-cam0",)))]
        assert writer._store(again) == 0 and _counts(engine) == (2, 16)
        detail = get_part(engine, "P-2")
        assert detail is not None and detail.part.missing == ("line-cam0",) and len(detail.frames) == 7
        one = get_part(engine, "P-1", line="line1")
        assert one is not None and one.part.deciding_camera == "line-cam4" and len(one.frames) == 8
        assert [r.part_id for r in query_parts(engine, incomplete=True)] == ["P-2"]
    finally:
        engine.dispose()


def test_a_part_the_database_refuses_is_set_aside_not_its_frames(engine: Engine, tmp_path: Path) -> None:
    bad = dataclasses.replace(make_part("P-bad"), verdict="MAYBE")  # violates the verdict CHECK
    writer = _write(engine, [bad, make_part("P-ok", trigger_id=2, at=T0 + 1, seq0=10)], spool_path=tmp_path / "s.jsonl")
    assert (writer.rows_written, writer.parts_written, writer.rejected, writer.spooled) == (16, 1, 1, 0)
    rejects = (tmp_path / "s.rejected.jsonl").read_text().splitlines()
    assert len(rejects) == 1 and '"part_id":"P-bad"' in rejects[0]
    assert [r.part_id for r in query_parts(engine)] == ["P-ok"]
