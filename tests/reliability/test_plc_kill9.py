"""kill -9 of a PLC-triggered line: every result the PLC saw is in the database after restart.

A PLC (`PlcClient` over Modbus TCP on 127.0.0.1) triggers parts with its own ids and dequeues
their results, writing down each one it read. The station (`inspector run --headless`, a child
process) is killed with SIGKILL at a random moment, started again on the same database, and so
on. At the end the spool left by the last kill is replayed as the next start would; every part
id the PLC read must then have its ``parts`` row and a frame row from each camera.

``PLC_KILL9_CYCLES`` sets the number of kills (3 here; the issue's check runs 20).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.inspector.line.test_line_station import line_config
from tests.inspector.plc.test_modbus import free_port

pytest.importorskip("pymodbus")

CAMERAS = 2


def _start_station(cfg: Path, db: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "from inspector.cli import run_cli; run_cli()"
    args = ["run", "--headless", "--config", str(cfg), "--db", f"sqlite:///{db}", "--duration", "600", "--quiet"]
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _connect(port: int, child: subprocess.Popen[bytes], log: Path) -> object:
    from inspector.plc.modbus_client import PlcClient

    end = time.monotonic() + 60
    while time.monotonic() < end:
        if child.poll() is not None:
            raise AssertionError(f"station exited with {child.returncode}: {log.read_text()[-2000:]}")
        try:
            client = PlcClient(port=port, timeout=2.0)
            client.__enter__()
            if client.read("state") != 0:  # the link answers once the station is built
                return client
            client.close()
        except Exception:  # noqa: BLE001, S110 - not listening yet
            pass
        time.sleep(0.2)
    raise AssertionError("the station's Modbus link did not come up within 60 s")


def _drive_until_killed(client: object, child: subprocess.Popen[bytes], next_id: int, seen: list[int],
                        rng: random.Random) -> int:
    """Trigger parts and read results for a random while, then SIGKILL the station mid-stream."""
    from inspector.plc.modbus_map import Command

    kill_at = time.monotonic() + rng.uniform(1.0, 3.0)
    while time.monotonic() < kill_at:
        try:
            if client.command(Command.TRIGGER_PART, next_id) == 0:  # type: ignore[attr-defined]
                next_id += 1
            while client.read("fifo_count"):  # type: ignore[attr-defined]
                pid = client.read("result_part_id")  # type: ignore[attr-defined]
                seen.append(pid)  # the PLC saw this result: from now on it must survive
                client.command(Command.DEQUEUE_RESULT)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001, S110 - a busy answer or a timeout: try again
            pass
        time.sleep(rng.uniform(0.03, 0.08))
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    client.close()  # type: ignore[attr-defined]
    return next_id


def _replay_spool(db: Path) -> None:
    """What the next start does first: the journals of the killed stations into the database."""
    from inspector.storage.db import migrate, open_database
    from inspector.storage.writer import DbWriter

    engine = open_database(f"sqlite:///{db}")
    migrate(engine)
    writer = DbWriter(engine, spool_reserve_bytes=2**20)
    writer.start()
    writer.stop(timeout=30)
    engine.dispose()


def test_every_result_the_plc_saw_survives_kill_9(tmp_path: Path) -> None:
    cycles = int(os.environ.get("PLC_KILL9_CYCLES", "3"))
    port = free_port()
    cfg = tmp_path / "line.toml"
    cfg.write_text(line_config(trigger="external", n=CAMERAS) + f'[plc]\nmodbus = "127.0.0.1:{port}"\n')
    db, log = tmp_path / "plc.db", tmp_path / "station.log"
    rng = random.Random(26)
    seen: list[int] = []
    next_id = 500_001
    for _ in range(cycles):
        child = _start_station(cfg, db, log)
        try:
            client = _connect(port, child, log)
            next_id = _drive_until_killed(client, child, next_id, seen, rng)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    _replay_spool(db)
    assert len(seen) >= 3 * cycles, f"the PLC read only {len(seen)} results: {log.read_text()[-2000:]}"
    con = sqlite3.connect(db)
    try:
        # frames each stored part owes: its cameras less those it was missing at its deadline
        stored = {pid: CAMERAS - len([m for m in missing.split(",") if m])
                  for pid, missing in con.execute("select part_id, missing from parts")}
        frames = dict(con.execute("select part_id, count(*) from inspections where part_id is not null "
                                  "and not late group by part_id").fetchall())
        assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    missing = [pid for pid in seen if str(pid) not in stored]
    assert not missing, f"{len(missing)} of {len(seen)} results the PLC saw are not stored: {missing[:10]}"
    short = [pid for pid in seen if frames.get(str(pid), 0) < stored[str(pid)]]
    assert not short, f"parts the PLC saw without all their frames stored: {short[:10]}"
    print(f"{cycles} kills, {len(seen)} results seen by the PLC, all stored with their frames")
