"""The Modbus handshake binds each acknowledgement to the command it answers (issue 26.3, 26.8).

Two real clients over TCP on 127.0.0.1: one that vanishes mid-handshake, and the next one,
a raw-socket client with hand-built MBAP frames (not pymodbus) as an independent PLC would be.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import BY_NAME, Command, ErrorCode
from inspector.plc.modbus_server import ModbusPlc
from tests.inspector.plc.test_modbus import FakeStation, free_port

pytest.importorskip("pymodbus")


class RawModbus:
    """A Modbus TCP client of hand-built MBAP frames (function codes 3, 6 and 16 only)."""

    def __init__(self, port: int, unit: int = 1, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unit = unit
        self.tid = 0

    def close(self) -> None:
        self.sock.close()

    def frame(self, pdu: bytes, unit: int | None = None) -> bytes:
        """One ADU: transaction id, protocol 0, length, unit id, then the PDU."""
        self.tid = self.tid % 0xFFFF + 1
        return struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, self.unit if unit is None else unit) + pdu

    @staticmethod
    def read_pdu(address: int, count: int) -> bytes:
        return struct.pack(">BHH", 3, address, count)

    @staticmethod
    def write_one_pdu(address: int, value: int) -> bytes:
        return struct.pack(">BHH", 6, address, value)

    @staticmethod
    def write_many_pdu(address: int, values: list[int]) -> bytes:
        return struct.pack(f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values)

    def recv_adu(self) -> tuple[int, int, bytes]:
        """One response: (transaction id, unit id, PDU)."""
        head = self._recv_exact(7)
        tid, _pid, length, unit = struct.unpack(">HHHB", head)
        return tid, unit, self._recv_exact(length - 1)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        return buf

    def request(self, pdu: bytes) -> bytes:
        self.sock.sendall(self.frame(pdu))
        tid, _unit, answer = self.recv_adu()
        assert tid == self.tid
        return answer

    def read(self, name: str) -> int:
        r = BY_NAME[name]
        answer = self.request(self.read_pdu(r.address, r.words))
        assert answer[0] == 3, f"exception {answer!r}"
        words = struct.unpack(f">{r.words}H", answer[2:])
        return (words[0] << 16 | words[1]) if r.words == 2 else words[0]

    def write(self, name: str, value: int) -> None:
        r = BY_NAME[name]
        if r.words == 2:
            answer = self.request(self.write_many_pdu(r.address, [(value >> 16) & 0xFFFF, value & 0xFFFF]))
        else:
            answer = self.request(self.write_one_pdu(r.address, value))
        assert answer[0] in (6, 16), f"exception {answer!r}"


@pytest.fixture
def link():
    station = FakeStation()
    server = ModbusPlc(station, port=free_port(), cameras=("cam1", "cam2"))
    server.start()
    yield station, server
    server.stop()


def vanish_mid_handshake(port: int, part_id: int) -> None:
    """Client A: writes a trigger, and disconnects before it clears ``command``."""
    a = PlcClient(port=port)
    a.client.write_registers(BY_NAME["command_arg"].address, [(part_id >> 16) & 0xFFFF, part_id & 0xFFFF])
    a.client.write_register(BY_NAME["command"].address, int(Command.TRIGGER_PART))
    a.close()


def test_a_stale_ack_is_never_taken_for_the_next_clients_command(link) -> None:
    station, server = link
    vanish_mid_handshake(server.port, 77)
    assert station.triggered == ["77"]
    b = RawModbus(server.port)
    try:
        # client B's naive handshake for part 78: the old ack must not answer it
        b.write("command_arg", 78)
        b.write("command", int(Command.TRIGGER_PART))
        assert b.read("command_ack") != Command.TRIGGER_PART, "the stale ack of part 77 answered part 78"
        assert b.read("error_code") == ErrorCode.BUSY  # the last handshake was never cleared
        assert station.triggered == ["77"]
        # as the register map says: clear, then the same command again is carried out and bound to 78
        b.write("command", 0)
        assert b.read("command_ack") == 0 and b.read("command_status") == 0
        b.write("command", int(Command.TRIGGER_PART))
        assert b.read("command_ack") == Command.TRIGGER_PART and b.read("ack_arg") == 78
        assert b.read("command_status") == 2  # done
        b.write("command", 0)
    finally:
        b.close()
    assert station.triggered == ["77", "78"]


def test_plc_client_clears_a_stale_handshake_and_checks_its_own_ack(link) -> None:
    station, server = link
    vanish_mid_handshake(server.port, 77)
    with PlcClient(port=server.port) as b:
        assert b.command(Command.ACK_ERROR) == 0
        assert b.command(Command.TRIGGER_PART, 78) == 0
        assert b.read("error_code") == 0
    assert station.triggered == ["77", "78"]


def test_a_new_argument_before_clearing_is_busy_and_a_repeat_is_done_once(link) -> None:
    station, server = link
    b = RawModbus(server.port)
    try:
        b.write("command_arg", 5)
        b.write("command", int(Command.TRIGGER_PART))
        assert b.read("command_ack") == Command.TRIGGER_PART and b.read("ack_arg") == 5
        b.write("command", int(Command.TRIGGER_PART))  # the same command written again: already done
        assert station.triggered == ["5"] and b.read("error_code") == 0
        b.write("command_arg", 6)
        b.write("command", int(Command.TRIGGER_PART))  # a new argument, not cleared: busy
        assert b.read("error_code") == ErrorCode.BUSY and b.read("command_ack") == 0
        assert station.triggered == ["5"]
    finally:
        b.close()
    assert server.stats()["error_busy"] == 1


def test_a_trigger_while_stopped_is_refused_with_stopped(link) -> None:
    station, server = link
    with PlcClient(port=server.port) as plc:
        assert plc.command(Command.STOP) == 0
        assert plc.command(Command.TRIGGER_PART, 41) == ErrorCode.STOPPED
        assert plc.read("command_ack") == 0
        assert plc.command(Command.ACK_ERROR) == 0
        assert plc.command(Command.START) == 0
        assert plc.command(Command.TRIGGER_PART, 42) == 0
    assert station.triggered == ["42"]


class SlowRecipes(FakeStation):
    """A changeover that loads a model for a while."""

    def select_recipe(self, number: int) -> None:
        time.sleep(0.3)
        super().select_recipe(number)


def test_recipe_changes_share_one_worker_and_a_select_meanwhile_is_busy() -> None:
    import threading

    station = SlowRecipes()
    server = ModbusPlc(station, port=free_port())
    server.start()
    b = RawModbus(server.port)
    try:
        before = threading.active_count()
        for i in range(50):  # a PLC that hammers select_recipe, clearing each time
            b.write("command_arg", 1 + i % 3)
            b.write("command", int(Command.SELECT_RECIPE))
            b.write("command", 0)
        assert threading.active_count() - before <= 2  # was one thread per write: +50
        b.write("command_arg", 2)
        b.write("command", int(Command.SELECT_RECIPE))
        assert b.read("command_status") == 3 and b.read("error_code") == ErrorCode.BUSY  # the first still loads
        b.write("command", 0)
        time.sleep(0.5)
        b.write("command", int(Command.SELECT_RECIPE))
        deadline = time.monotonic() + 3
        while b.read("command_status") == 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.read("command_status") == 2 and b.read("recipe") == 2
    finally:
        b.close()
        server.stop()
    assert station.recipes[0] == 1 and len(station.recipes) == 2  # the first select and the last, none queued
