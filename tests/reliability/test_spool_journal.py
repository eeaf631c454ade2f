"""Nothing lost, nothing forged: the spool journal on a full disk and with two stations."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import inspector.storage.writer as writer_mod
from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result
from tests.reliability.conftest import fill
from tests.reliability.helpers import wait_until


def _rows(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {u for (u,) in con.execute("SELECT uid FROM inspections")}
    finally:
        con.close()


def test_second_writer_on_the_same_database_gets_its_own_journal(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'two.db'}")
    migrate(engine)
    a = DbWriter(engine, spool_reserve_bytes=1 << 16)
    b = DbWriter(engine, spool_reserve_bytes=1 << 16)
    try:
        assert a.spool.path != b.spool.path  # one replaying never truncates the other's records
    finally:
        a.on_stopped()
        b.on_stopped()


def test_journal_of_a_dead_station_is_drained_at_start(tmp_path: Path) -> None:
    db = tmp_path / "orphan.db"
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    template = DbWriter(engine, spool_reserve_bytes=1 << 16)
    records = [template._record(make_result("cam1", i)) for i in range(5)]
    template.on_stopped()
    orphan = db.with_name(db.name + ".spool-1.jsonl")  # slot 1 of a station that died
    orphan.write_text("".join(json.dumps(r) + "\n" for r in records))
    w = DbWriter(engine, spool_reserve_bytes=1 << 16)
    w.start()
    w.stop()
    assert _rows(db) == {r["row"]["uid"] for r in records}
    assert not orphan.exists()


def test_database_on_a_full_disk_loses_no_accepted_result_across_a_restart(
    small_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_mod, "DEFAULT_SPOOL_RESERVE_BYTES", 512 * 1024, raising=False)
    db = small_filesystem / "full.db"
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    w = DbWriter(engine, retry_s=0.2, linger_s=0.01)
    w.start()
    results = [make_result("cam1", i, "NG", [("scratch", 0.9)]) for i in range(300)]
    for r in results[:20]:
        assert w.submit(r)
    wait_until(lambda: w.rows_written == 20, 10, "rows before the disk fills")
    filler = fill(small_filesystem)
    for r in results[20:]:
        assert w.submit(r)
    w.stop()  # the station stops while the disk is still full
    assert getattr(w, "lost", 0) == 0
    engine.dispose()
    filler.unlink()  # space is back: a restart writes everything spooled
    engine = open_database(f"sqlite:///{db}")
    w2 = DbWriter(engine)
    w2.start()
    w2.stop()
    engine.dispose()
    assert len(_rows(db)) == 300


def test_results_that_cannot_be_made_durable_are_counted_lost(small_filesystem: Path) -> None:
    db = small_filesystem / "lost.db"
    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    w = DbWriter(engine, retry_s=0.2, linger_s=0.01, spool_reserve_bytes=16 * 1024, max_backlog=50)
    w.start()
    fill(small_filesystem)
    for i in range(400):
        assert w.submit(make_result("cam1", i))
    wait_until(lambda: w.lost > 0, 10, "results lost")
    assert w.stats()["backlog"] == 50 and not w.durable
    w.stop()
    spooled = len(w.spool)
    assert spooled > 0 and w.lost + spooled + w.rows_written == 400  # every accepted result accounted for


def test_station_that_lost_results_says_so_in_health_report_and_exit_code(
    tmp_path: Path, small_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from typer.testing import CliRunner

    from inspector.cli import app
    from tests.reliability.helpers import use_paced_backend

    use_paced_backend(monkeypatch)
    db = small_filesystem / "station.db"
    cfg = tmp_path / "station.toml"
    cams = "".join(f'[[cameras]]\nid = "c{i}"\nkind = "simulated"\nfps = 20\nwidth = 160\nheight = 160\n'
                   f"seed = {3_000_000 + i}\nbank_size = 4\n" for i in range(2))
    cfg.write_text(f'name = "lossy"\n[storage]\nspool_reserve_mb = 0.02\narchive_min_free_mb = 0\n{cams}')
    report = tmp_path / "report.json"

    def fill_soon() -> None:
        wait_until(lambda: db.exists(), 60, "the database")
        wait_until(lambda: (small_filesystem / "station.db.spool.jsonl").exists(), 60, "the journal")
        # the disk fills while the station inspects, not while it starts (a start on a full disk is refused:
        # test_a_station_started_on_a_full_disk_is_refused_in_one_line)
        wait_until(lambda: bool(_rows(db)), 60, "the first stored results")
        fill(small_filesystem)

    threading.Thread(target=fill_soon, daemon=True).start()
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", f"sqlite:///{db}",
                                   "--duration", "4", "--no-archive", "--quiet", "--report", str(report)])
    assert res.exit_code == 3, res.output
    assert "LOST" in res.output
    rep = json.loads(report.read_text())
    assert rep["lost"] > 0 and rep["db"]["lost"] == rep["lost"]
    assert rep["health"]["level"] == "ALARM" and "LOST" in rep["health"]["summary"]


def test_a_station_started_on_a_full_disk_is_refused_in_one_line(tmp_path: Path, small_filesystem: Path) -> None:
    """The database's disk full while the station starts (its first audit row cannot be written): one line naming
    the database and exit 2, never a traceback."""
    from typer.testing import CliRunner

    from inspector.cli import app

    db = small_filesystem / "station.db"
    cfg = tmp_path / "station.toml"
    cfg.write_text('name = "full"\n[storage]\nspool_reserve_mb = 0.02\narchive_min_free_mb = 0\n'
                   '[[cameras]]\nid = "c0"\nkind = "simulated"\nfps = 5\nwidth = 160\nheight = 160\n')
    migrate(open_database(f"sqlite:///{db}"))  # the database exists; then its disk fills
    fill(small_filesystem)
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", f"sqlite:///{db}",
                                   "--duration", "1", "--no-archive", "--quiet"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "station.db" in lines[0] and "space" in lines[0], res.output


def test_a_disk_that_fills_during_the_start_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills after the spool is reserved and before the start's audit row (the model card) is written:
    the same one line and exit 2 (it was a traceback and exit 1, seen once in CI)."""
    import sqlalchemy.exc
    from typer.testing import CliRunner

    from inspector.access import card_audit
    from inspector.cli import app

    def disk_full(*_: object) -> None:
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(card_audit, "audit_card_change", disk_full)
    db = tmp_path / "station.db"
    cfg = tmp_path / "station.toml"
    cfg.write_text('name = "full"\n[[cameras]]\nid = "c0"\nkind = "simulated"\nfps = 5\nwidth = 160\n'
                   'height = 160\n')
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", f"sqlite:///{db}",
                                   "--duration", "1", "--no-archive", "--quiet"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "station.db" in lines[0] and "disk is full" in lines[0], res.output
