"""Durable before visible: a part reaches the part sinks (the PLC links) only once it and its frames
are committed or in the fsynced spool, in trigger order, and never held back when it cannot be stored."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

from inspector.pipeline.results import PartResult, Verdict
from inspector.pipeline.sinks import FrameSink, PartSink, PartStore, SinkFanOut
from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result


def _part(n: int, cams: tuple[str, ...] = ("cam1", "cam2")) -> PartResult:
    frames = tuple(
        dataclasses.replace(make_result(c, seq=n), part_id=f"P-{n}", trigger_id=n) for c in cams
    )
    return PartResult(part_id=f"P-{n}", line="line", trigger_id=n, triggered_at=time.time(), verdict=Verdict.OK,
                      reason="no defect", frames=frames, expected=cams)


class StoredWhenSeen:
    """A part sink that, as each part arrives, looks into the database file itself (its own connection)."""

    name = "spy"

    def __init__(self, db: Path, spool: Path | None = None) -> None:
        self.db, self.spool = db, spool
        #: part id, part row, its frames' rows stored, in the spool file, frames the part carries
        self.seen: list[tuple[str, bool, int, bool, int]] = []
        self.lock = threading.Lock()

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def stats(self) -> dict[str, float]:
        return {"seen": len(self.seen)}

    def submit_part(self, part: PartResult) -> bool:
        con = sqlite3.connect(self.db, timeout=0.05)
        try:
            try:
                has_part = con.execute("select count(*) from parts where part_id = ?", (part.part_id,)).fetchone()[0]
                frames = con.execute("select count(*) from inspections where part_id = ?",
                                     (part.part_id,)).fetchone()[0]
            except sqlite3.OperationalError:  # locked by the test: only the spool can hold it
                has_part, frames = 0, 0
        finally:
            con.close()
        spooled = self.spool is not None and self.spool.exists() and part.part_id in self.spool.read_text(errors="replace")
        with self.lock:
            self.seen.append((part.part_id, bool(has_part), int(frames), spooled, len(part.frames)))
        return True


def _writer(tmp_path: Path, **kw: object) -> tuple[DbWriter, Path]:
    db = tmp_path / "d.db"
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    return DbWriter(engine, spool_reserve_bytes=2**20, **kw), db  # type: ignore[arg-type]


def test_the_sinks_are_declared_protocols(tmp_path: Path) -> None:
    writer, _db = _writer(tmp_path)  # the writer is the store; the PLC links are part sinks
    assert isinstance(writer, PartStore) and isinstance(writer, FrameSink)
    spy = StoredWhenSeen(tmp_path / "x.db")
    assert isinstance(spy, PartSink) and not isinstance(spy, FrameSink)


def test_a_part_reaches_the_part_sinks_only_after_it_and_its_frames_are_committed(tmp_path: Path) -> None:
    writer, db = _writer(tmp_path, linger_s=0.2)
    spy = StoredWhenSeen(db)
    fan = SinkFanOut()
    fan.add_store(writer)
    fan.add_part_sink(spy)
    fan.start()
    try:
        for n in range(1, 21):
            p = _part(n)
            fan.frames(p.frames)
            fan.part(p)
            time.sleep(0.005)
        assert writer.flush(10.0)
    finally:
        fan.stop()
        fan.stop_store()
    assert [s[0] for s in spy.seen] == [f"P-{n}" for n in range(1, 21)]  # every part, in order
    assert all(has_part and frames == n == 2 for _pid, has_part, frames, _sp, n in spy.seen), spy.seen


def test_a_part_waiting_for_the_plc_cuts_the_commit_linger_short(tmp_path: Path) -> None:
    writer, _db = _writer(tmp_path, linger_s=2.0)  # a commit interval far longer than a cycle
    got = threading.Event()
    fan = SinkFanOut(on_published=lambda p: got.set())
    fan.add_store(writer)
    fan.start()
    try:
        p = _part(1)
        t0 = time.monotonic()
        fan.frames(p.frames)
        fan.part(p)
        assert got.wait(5.0)
        assert time.monotonic() - t0 < 1.0  # one commit, not the 2 s linger
    finally:
        fan.stop()
        fan.stop_store()


def test_with_the_database_locked_a_part_is_handed_on_once_it_is_in_the_spool(tmp_path: Path) -> None:
    writer, db = _writer(tmp_path, linger_s=0.01, retry_s=0.2)
    spy = StoredWhenSeen(db, spool=writer.spool.path)
    fan = SinkFanOut()
    fan.add_store(writer)
    fan.add_part_sink(spy)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    fan.start()
    try:
        p = _part(7)
        fan.frames(p.frames)
        fan.part(p)
        deadline = time.monotonic() + 10
        while not spy.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        [(pid, _has, _frames, spooled, _n)] = spy.seen
        assert pid == "P-7" and spooled  # durable in the journal while the database is away
    finally:
        locker.execute("COMMIT")
        locker.close()
        fan.stop()
        fan.stop_store()
    con = sqlite3.connect(db)
    try:
        assert con.execute("select count(*) from parts where part_id = 'P-7'").fetchone()[0] == 1
    finally:
        con.close()


def test_a_part_the_store_cannot_queue_is_published_at_once(tmp_path: Path) -> None:
    writer, _db = _writer(tmp_path, maxsize=1)
    published: list[str] = []
    fan = SinkFanOut(on_published=lambda p: published.append(p.part_id))
    fan.add_store(writer)  # not started: its queue of one fills up
    fan.part(_part(1))
    fan.part(_part(2))
    assert published == ["P-2"] and fan.not_stored == 1 and writer.parts_skipped == 1


def test_a_station_without_a_database_publishes_parts_as_they_are_released() -> None:
    fan = SinkFanOut()
    got: list[str] = []

    class Plc:
        name = "plc"

        def start(self) -> None: ...

        def stop(self, timeout: float = 10.0) -> None: ...

        def stats(self) -> dict[str, float]:
            return {}

        def submit_part(self, part: PartResult) -> bool:
            got.append(part.part_id)
            return True

    fan.add_part_sink(Plc())
    fan.part(_part(3))
    assert got == ["P-3"] and fan.published == 1


def test_a_triggered_station_shows_the_plc_only_parts_already_stored(tmp_path: Path) -> None:
    """The whole station: every part a part sink sees is already in the database with all its frames."""
    from inspector.config import parse_config
    from inspector.station import Station
    from tests.inspector.line.test_line_station import line_config

    db = tmp_path / "line.db"
    st = Station(parse_config(line_config()), db_url=f"sqlite:///{db}", archive=False)
    spy = StoredWhenSeen(db)
    st.fan_out.add_part_sink(spy)
    with st:
        time.sleep(3.0)
    rep = st.report()
    assert rep["parts"]["verdicts"] >= 10 and len(spy.seen) == rep["parts"]["verdicts"]
    # every frame the part carries (an incomplete part under load carries fewer) is stored before it is seen
    assert all(has_part and frames == n for _pid, has_part, frames, _sp, n in spy.seen), spy.seen
    assert rep["parts"]["verdict_to_visible_ms"]["p50"] > 0.0
