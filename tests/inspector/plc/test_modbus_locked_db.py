"""A locked database never stalls the Modbus link (issue 26.2, Modbus side).

Another connection holds SQLite's write lock for seconds while one client commands the
station and another polls: reads keep answering, the heartbeat ticks, and the command is
acknowledged with its audit row or refused with an error code, never changed unaudited.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from inspector.access.audit import AuditLog
from inspector.access.control import StationControl
from inspector.plc.commands import StationCommands
from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import Command, ErrorCode, StationState
from inspector.plc.modbus_server import ModbusPlc
from inspector.storage.db import migrate, open_database
from tests.inspector.plc.test_modbus import free_port
from tests.inspector.plc.test_modbus_handshake import RawModbus

pytest.importorskip("pymodbus")

LOCK_S = 3.0
BUSY_TIMEOUT_MS = 1500  # the audit write's bound in this test: shorter than the lock


class PausableStation:
    """What `StationControl` and `StationCommands` need of a station."""

    def __init__(self) -> None:
        self.paused = False
        self.running = True
        self.triggered: list[str] = []

    def pause(self, paused: bool) -> None:
        self.paused = paused

    def trigger_part(self, part_id: str | None = None) -> str:
        self.triggered.append(str(part_id))
        return str(part_id)

    def health(self) -> dict[str, str]:
        return {"level": "OK"}


def hold_write_lock(path: str, seconds: float, held: threading.Event) -> None:
    con = sqlite3.connect(path, timeout=10)
    con.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    con.commit()
    con.close()


def poll(port: int, stop: threading.Event, latencies: list[float], beats: list[int]) -> None:
    """Another PLC connection reading all the time."""
    c = RawModbus(port)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            beats.append(c.read("heartbeat"))
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.005)
    finally:
        c.close()


def test_a_locked_database_never_stalls_the_link_and_nothing_changes_unaudited(tmp_path) -> None:
    db = tmp_path / "station.db"
    engine = open_database(f"sqlite:///{db}", busy_timeout_ms=BUSY_TIMEOUT_MS)
    migrate(engine)
    station = PausableStation()
    control = StationControl.service(station, engine, "plc-modbus")
    server = ModbusPlc(StationCommands(station, control), port=free_port())
    server.start()
    stop, latencies, beats = threading.Event(), [], []
    reader = threading.Thread(target=poll, args=(server.port, stop, latencies, beats))
    reader.start()
    try:
        with PlcClient(port=server.port, timeout=3.0) as plc:
            time.sleep(0.3)
            held = threading.Event()
            locker = threading.Thread(target=hold_write_lock, args=(str(db), LOCK_S, held))
            locker.start()
            held.wait(5)
            t0 = time.perf_counter()
            error = plc.command(Command.STOP, timeout=LOCK_S + 2)  # raises on a Modbus exception
            answered_s = time.perf_counter() - t0
            # refused within its bound: no change without an audit row
            assert error == ErrorCode.NOT_AUDITED and not station.paused
            assert answered_s < LOCK_S
            assert plc.command(Command.ACK_ERROR) == 0  # carried out while the lock is still held
            locker.join()
            assert plc.command(Command.STOP) == 0 and station.paused
            assert plc.read("state") == StationState.STOPPED
    finally:
        stop.set()
        reader.join()
        server.stop()
    actions = [(e.action, e.new) for e in AuditLog(engine).list()]
    engine.dispose()
    assert actions.count(("station.pause", "true")) == 1  # the refused stop left no row, the second one did
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    assert len(latencies) > 100 and p99 < 0.050 and latencies[-1] < 0.5, (p99, latencies[-1])
    assert beats[-1] - beats[0] >= 2  # the heartbeat kept ticking through the lock
