"""The Modbus TCP server with a real pymodbus client on 127.0.0.1: handshake, FIFO, errors."""

from __future__ import annotations

import socket
import time

import pytest

from inspector.pipeline.results import PartResult, PartTimes, Verdict
from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import BY_NAME, Command, ErrorCode, ResultState, StationState
from inspector.plc.modbus_server import ModbusPlc, PlcError
from tests.inspector.factories import make_detection, make_result

pytest.importorskip("pymodbus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeStation:
    def __init__(self) -> None:
        self.triggered: list[str] = []
        self.running = True
        self.recipes: list[int] = []

    def trigger_part(self, part_id: str) -> str:
        self.triggered.append(part_id)
        return part_id

    def set_running(self, running: bool) -> None:
        self.running = running

    def select_recipe(self, number: int) -> None:
        if number > 3:
            raise ValueError(f"no recipe {number}")
        self.recipes.append(number)

    def state(self) -> StationState:
        return StationState.RUNNING if self.running else StationState.STOPPED

    def recipe_number(self) -> int:
        return self.recipes[-1] if self.recipes else 0


def part(pid: str, verdict: str = "OK", missing: tuple[str, ...] = ()) -> PartResult:
    frames = []
    for cam in ("cam1", "cam2"):
        if cam in missing:
            continue
        ng = verdict == "NG" and cam == "cam2"
        frames.append(make_result(cam, 1, Verdict.NG if ng else Verdict.OK, [make_detection("dent")] if ng else []))
    v = Verdict.NG if verdict == "NG" or missing else Verdict.OK
    return PartResult(pid, "line", 7, time.time(), v, "x", tuple(frames), ("cam1", "cam2"), missing,
                      times=PartTimes(verdict_ms=123.4))


def test_trigger_handshake_and_results_in_order(plc) -> None:
    station, server, client = plc
    assert client.read("state") == StationState.RUNNING
    for pid in (4711, 4712, 4713):
        assert client.command(Command.TRIGGER_PART, pid) == 0
        assert client.read("command_ack") == 0  # cleared once the PLC wrote 0
    assert station.triggered == ["4711", "4712", "4713"]
    server.submit_part(part("4711"))
    server.submit_part(part("4712", "NG"))
    server.submit_part(part("4713", missing=("cam1",)))
    got = []
    while client.read("fifo_count"):
        r = client.registers()
        got.append((r["result_part_id"], r["result_state"], r["result_cameras_ng"], r["result_defects"]))
        assert r["result_time_ms"] == 123
        assert client.command(Command.DEQUEUE_RESULT) == 0
    dent = 1 << 1  # class ids of tests/inspector/factories: scratch 0, dent 1
    assert got == [(4711, ResultState.OK, 0, 0), (4712, ResultState.NG, 0b10, dent),
                   (4713, ResultState.INCOMPLETE, 0b01, 0)]
    r = client.registers()
    assert (r["parts_ok"], r["parts_ng"], r["parts_incomplete"]) == (1, 2, 1)
    assert r["result_state"] == ResultState.NONE
    assert client.command(Command.DEQUEUE_RESULT) == ErrorCode.FIFO_EMPTY
    assert client.command(Command.ACK_ERROR) == 0 and client.read("error_code") == 0
    assert client.command(Command.RESET_COUNTERS) == 0 and client.read("parts_ng") == 0


def test_a_full_fifo_is_an_error_never_an_overwrite(plc) -> None:
    _station, server, client = plc
    for i in range(server.fifo.depth):
        assert server.submit_part(part(str(i + 1)))
    assert not server.submit_part(part("9999"))
    r = client.registers()
    assert r["error_code"] == ErrorCode.FIFO_FULL and r["fifo_count"] == server.fifo.depth
    assert r["result_part_id"] == 1  # the oldest is still at the head
    assert server.stats()["fifo_overflows"] == 1


def test_unknown_codes_malformed_writes_and_a_busy_handshake(plc) -> None:
    station, _server, client = plc
    client.client.write_register(BY_NAME["command"].address, 99)
    assert client.read("error_code") == ErrorCode.UNKNOWN_COMMAND and client.read("command_ack") == 0
    client.client.write_register(BY_NAME["command"].address, 0)
    client.command(Command.ACK_ERROR)
    rr = client.write_raw(BY_NAME["parts_ok"].address, [5, 5])  # a read-only register
    assert rr.isError() and client.read("error_code") == ErrorCode.READ_ONLY and client.read("parts_ok") == 0
    client.command(Command.ACK_ERROR)
    assert client.command(Command.SELECT_RECIPE, 9) == ErrorCode.COMMAND_FAILED
    client.command(Command.ACK_ERROR)
    assert client.command(Command.SELECT_RECIPE, 2) == 0 and client.read("recipe") == 2
    # a client that vanishes mid-handshake: command written, never cleared
    gone = PlcClient(port=_server.port)
    gone.client.write_registers(BY_NAME["command_arg"].address, [0, 77])
    gone.client.write_register(BY_NAME["command"].address, int(Command.TRIGGER_PART))
    gone.close()
    assert station.triggered == ["77"] and client.read("command_ack") == Command.TRIGGER_PART
    client.client.write_register(BY_NAME["command"].address, int(Command.STOP))  # before clearing: busy
    assert client.read("error_code") == ErrorCode.BUSY and station.running
    client.client.write_register(BY_NAME["command"].address, 0)  # the next PLC clears first, then it works
    client.command(Command.ACK_ERROR)
    assert client.command(Command.STOP) == 0 and not station.running
    assert client.read("state") == StationState.STOPPED


def test_heartbeat_counts_and_a_taken_port_is_one_line() -> None:
    station = FakeStation()
    server = ModbusPlc(station, port=free_port())
    server.start()
    try:
        with PlcClient(port=server.port) as c:
            first = c.read("heartbeat")
            time.sleep(2.2)
            assert c.read("heartbeat") >= first + 2
        twin = ModbusPlc(station, port=server.port)
        with pytest.raises(PlcError) as err:
            twin.start()
        assert f"127.0.0.1:{server.port}" in str(err.value) and "\n" not in str(err.value)
    finally:
        server.stop()


