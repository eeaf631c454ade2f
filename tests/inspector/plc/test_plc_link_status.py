"""What the PLC view reads of the links, a PLC that stops taking results, and registers that follow the station."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from inspector.config import parse_config
from inspector.ops.health import assess
from inspector.plc import result_fifo
from inspector.plc.link_status import PlcStatus, plc_status
from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import BY_NAME, Command, ErrorCode, StationState
from inspector.plc.modbus_server import ModbusPlc
from tests.inspector.ops.test_health import _station as health_station
from tests.inspector.plc.test_modbus import FakeStation, free_port, part

pytest.importorskip("pymodbus")


class _Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The FIFO's and the server's clock, moved by the test (nothing else's)."""
    import inspector.plc.modbus_server as server_module

    c = _Clock()
    fake = SimpleNamespace(monotonic=c.monotonic)
    monkeypatch.setattr(result_fifo, "time", fake)
    monkeypatch.setattr(server_module, "time", fake)
    return c


def test_a_full_fifo_never_hides_a_command_error(plc) -> None:
    """Before: each overflowing part wrote error_code 3 over the refusal the PLC was about to read."""
    _station, server, client = plc
    for i in range(server.fifo.depth + 1):
        server.submit_part(part(str(i + 1)))
    assert client.read("error_code") == ErrorCode.FIFO_FULL and client.read("fifo_overflows") == 1
    assert client.command(Command.ACK_ERROR) == 0
    # a refused command: its error is bound to it, whatever overflows meanwhile
    client.client.write_registers(BY_NAME["command_arg"].address, [0, 9])
    client.client.write_register(BY_NAME["command"].address, int(Command.SELECT_RECIPE))
    deadline = time.monotonic() + 2
    while client.read("command_status") != 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(5):  # the line goes on: every part overflows
        server.submit_part(part(str(1000 + i)))
    r = client.registers()
    assert r["command_status"] == 3 and r["command_error"] == ErrorCode.COMMAND_FAILED
    assert r["error_code"] == ErrorCode.COMMAND_FAILED  # the command's error takes precedence over FIFO full
    assert r["fifo_overflows"] == 6 and r["fifo_count"] == server.fifo.depth
    client.client.write_register(BY_NAME["command"].address, 0)
    assert client.read("command_error") == 0  # cleared with the handshake
    # the PLC's client reads the command's own error, never the FIFO's
    assert client.command(Command.SELECT_RECIPE, 9) == ErrorCode.COMMAND_FAILED
    assert client.command(Command.ACK_ERROR) == 0
    server.submit_part(part("2000"))
    assert client.read("error_code") == ErrorCode.FIFO_FULL  # nothing else pending: the overflow shows again
    assert client.command(Command.DEQUEUE_RESULT) == 0  # done, though error_code says FIFO full


def test_overflows_are_logged_once_per_10_s_with_a_count(clock: _Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Before: one error line per part (a PLC gone for 3 minutes: ~900 lines)."""
    server = ModbusPlc(FakeStation(), port=free_port())
    caplog.set_level(logging.ERROR, logger="inspector.plc")
    for i in range(server.fifo.depth):
        assert server.submit_part(part(str(i + 1)))
    for i in range(50):  # 5 parts a second for 10 s
        clock.now += 0.2
        assert not server.submit_part(part(str(100 + i)))
    lines = [r.getMessage() for r in caplog.records if "FIFO full" in r.getMessage()]
    assert len(lines) == 1 and "1 part not queued" in lines[0] and "part 100" in lines[0]
    clock.now += 0.2
    server.submit_part(part("150"))  # 10 s after the first line: one line counting them
    server._overflow_log.flush(server.fifo.depth)
    lines = [r.getMessage() for r in caplog.records if "FIFO full" in r.getMessage()]
    assert len(lines) == 2 and "50 parts not queued" in lines[1] and "part 150" in lines[1]
    assert server.stats()["fifo_overflows"] == 51


def test_link_status_shows_clients_last_command_and_fifo(plc) -> None:
    _station, server, client = plc
    local = client.client.socket.getsockname()
    _wait(lambda: server.link_status().clients, "the client in the list", 2.0)
    s = server.link_status()
    assert s.serving and s.listening == f"127.0.0.1:{server.port}" and s.last_command is None
    assert s.clients == (f"127.0.0.1:{local[1]}",)
    assert client.command(Command.TRIGGER_PART, 4711) == 0
    assert client.command(Command.SELECT_RECIPE, 9) == ErrorCode.COMMAND_FAILED
    server.submit_part(part("4711"))
    server.submit_part(part("4712", "NG"))
    s = server.link_status()
    assert s.last_command is not None
    assert (s.last_command.name, s.last_command.arg, s.last_command.status) == ("select_recipe", "9", "refused")
    assert s.last_command.error == "command_failed" and s.last_command.error_code == ErrorCode.COMMAND_FAILED
    assert (s.fifo_count, s.fifo_depth, s.fifo_overflows) == (2, 64, 0) and s.head_wait_s is not None
    assert (s.parts_ok, s.parts_ng, s.error_name, s.state) == (1, 1, "command_failed", "running")
    assert s.errors == {"command_failed": 1} and s.commands == 1
    status = PlcStatus.from_wire(plc_status(SimpleNamespace(plc_modbus=server, plc_opcua=None)).to_wire())
    assert status.modbus is not None and status.opcua is None
    assert status.modbus.clients == s.clients and status.modbus.errors == s.errors
    assert status.modbus.last_command == dataclasses.replace(s.last_command, age_s=status.modbus.last_command.age_s)
    client.close()
    deadline = time.monotonic() + 2
    while server.link_status().clients and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.link_status().clients == ()  # a client that left is gone from the list


def _with_modbus(server: ModbusPlc, running: bool = True) -> object:
    st = health_station(cameras=1)
    st.plc_modbus = server
    st.running = running
    return st


def test_a_plc_that_stops_taking_results_is_degraded_then_alarm(clock: _Clock) -> None:
    """Before: a full FIFO for minutes and health OK."""
    server = ModbusPlc(FakeStation(), port=free_port())
    for i in range(4):  # a PLC that takes every result: OK
        clock.now += 0.2
        server.submit_part(part(str(i)))
        server.fifo.pop()
    assert assess(_with_modbus(server))["level"] == "OK"
    clock.now += 0.2
    server.submit_part(part("10"))  # the PLC stops reading
    clock.now += 0.5
    assert assess(_with_modbus(server))["level"] == "OK"  # within a second: a PLC's scan
    clock.now += 0.6
    h = assess(_with_modbus(server))
    assert h["level"] == "DEGRADED" and "PLC result waiting 1.1 s" in h["summary"], h["summary"]
    for i in range(33):
        clock.now += 0.2
        server.submit_part(part(str(100 + i)))
    h = assess(_with_modbus(server))
    assert h["level"] == "DEGRADED" and "PLC result FIFO 34 of 64 waiting" in h["summary"]
    assert h["plc"]["fifo_count"] == 34
    for i in range(31):
        clock.now += 0.2
        server.submit_part(part(str(200 + i)))
    h = assess(_with_modbus(server))
    assert h["level"] == "ALARM" and "1 results not queued for the PLC" in h["summary"], h["summary"]
    # the PLC takes them all again: ALARM for a minute after the last overflow, then OK
    while server.fifo.pop() is not None:
        pass
    clock.now += 30
    assert assess(_with_modbus(server))["level"] == "ALARM"
    clock.now += 31
    assert assess(_with_modbus(server))["level"] == "OK"
    assert assess(_with_modbus(server, running=False))["level"] == "ALARM"  # the run had overflows


# ---------------------------------------------------------------------------- registers follow the station
def test_registers_follow_the_station_whoever_changed_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the recipe register kept the number the PLC had selected after a switch from the GUI."""
    from inspector.access.control import StationControl
    from inspector.station import Station
    from tests.inspector.line.test_line_station import line_config
    from tests.inspector.recipes.helpers import write_recipes

    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    recipes = write_recipes(tmp_path)
    port = free_port()
    text = (line_config(trigger="external", n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'
            + f'[plc]\nmodbus = "127.0.0.1:{port}"\n')
    st = Station(parse_config(text), db_url=f"sqlite:///{tmp_path / 'plc.db'}", archive=False)
    with st, PlcClient(port=port) as plc:
        control = StationControl(st)  # the GUI's session
        control.create_admin("admin-pass")
        control.login("admin", "admin-pass")
        assert plc.read("recipe") == 1
        assert control.select_recipe(2)
        _wait(lambda: st.recipe_number == 2, "the switch")
        assert plc.read("recipe") == 2
        for pid in range(1, 7):
            assert plc.command(Command.TRIGGER_PART, pid) == 0
            time.sleep(0.06)
        _wait(lambda: plc.read("fifo_count") == 6, "6 results")
        r = plc.registers()
        rep = st.line.report()
        assert (r["parts_ok"], r["parts_ng"], r["parts_incomplete"]) == (rep["ok"], rep["ng"], rep["incomplete"])
        control.pause(True)
        _wait(lambda: plc.read("state") == StationState.STOPPED, "state stopped after a GUI pause")
        control.pause(False)
        _wait(lambda: plc.read("state") != StationState.STOPPED, "state running after the GUI resumed")


def _wait(cond, what: str, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
