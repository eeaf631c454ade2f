"""The Modbus TCP transport: pipelined requests, garbage frames, who may connect, unit ids (issues 26.6, 26.8, 30.3).

Raw sockets with hand-built MBAP frames, as a PLC or an attacker would send them.
"""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest

from inspector.plc.modbus_map import BY_NAME, Command
from inspector.plc.modbus_server import ModbusPlc
from tests.inspector.plc.test_modbus import FakeStation, free_port
from tests.inspector.plc.test_modbus_handshake import RawModbus

pytest.importorskip("pymodbus")


@pytest.fixture
def link():
    station = FakeStation()
    server = ModbusPlc(station, port=free_port())
    server.start()
    yield station, server
    server.stop()


def test_requests_pipelined_in_one_segment_are_each_answered_in_order(link) -> None:
    station, server = link
    c = RawModbus(server.port)
    try:
        arg = BY_NAME["command_arg"].address
        frames = [c.frame(c.write_many_pdu(arg, [0, 4711])),
                  c.frame(c.write_one_pdu(BY_NAME["command"].address, int(Command.TRIGGER_PART))),
                  c.frame(c.read_pdu(BY_NAME["command_ack"].address, 1))]
        c.sock.sendall(b"".join(frames))  # one segment, three requests
        answers = [c.recv_adu() for _ in frames]
        assert [a[0] for a in answers] == [1, 2, 3]  # every transaction answered, in order
        assert answers[2][2] == struct.pack(">BBH", 3, 2, int(Command.TRIGGER_PART))
        assert station.triggered == ["4711"]
        many = b"".join(c.frame(c.read_pdu(0, 8)) for _ in range(100))  # 1,200 bytes at once
        c.sock.sendall(many)
        tids = [c.recv_adu()[0] for _ in range(100)]
        assert tids == list(range(4, 104))
    finally:
        c.close()


GARBAGE = {
    "protocol id 7": struct.pack(">HHHB", 1, 7, 6, 1) + struct.pack(">BHH", 3, 0, 1),
    "length 1": struct.pack(">HHHB", 1, 0, 1, 1) + b"\x03",
    "unknown function": struct.pack(">HHHB", 1, 0, 2, 1) + b"\x55",
    "truncated read": struct.pack(">HHHB", 1, 0, 3, 1) + b"\x03\x00",
    "count 0": struct.pack(">HHHB", 1, 0, 6, 1) + struct.pack(">BHH", 3, 0, 0),
    "odd record": struct.pack(">HHHB", 1, 0, 10, 1) + b"\x14\x07\x06\x00\x01\x00\x00\x00\x01",
    "random bytes": bytes(range(200, 256)) * 3,
    "length 2000": struct.pack(">HHHB", 1, 0, 2000, 1) + b"\x03" * 40,
}


def test_garbage_frames_are_one_log_line_each_and_the_link_goes_on(link, caplog) -> None:
    _station, server = link
    caplog.set_level(logging.DEBUG)
    for payload in GARBAGE.values():
        s = socket.create_connection(("127.0.0.1", server.port), timeout=0.5)
        s.sendall(payload)
        try:
            s.recv(300)
        except OSError:
            pass
        s.close()
    time.sleep(0.2)
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith(("pymodbus", "inspector"))]
    assert len(noisy) <= len(GARBAGE), [r.getMessage() for r in noisy]
    for r in caplog.records:
        text = r.getMessage()
        assert r.exc_info is None and "Traceback" not in text and "\n" not in text, text
        assert "0x0 0x1" not in text and "0xc8" not in text, text  # no hex dumps, at any level
    c = RawModbus(server.port)
    try:
        assert c.read("state") == 1  # still serving
    finally:
        c.close()


def test_bad_frame_lines_are_rate_limited(caplog) -> None:
    from inspector.plc.modbus_transport import LineLimiter

    caplog.set_level(logging.WARNING, logger="inspector.plc.modbus_transport")
    limiter = LineLimiter(per_window=10, window_s=60.0)
    for i in range(25):
        limiter.warn("plc: bad frame %d", i)
    assert limiter.total == 25 and len(caplog.records) == 10


def test_only_allowed_clients_connect_refusals_counted_and_logged_once(caplog) -> None:
    server = ModbusPlc(FakeStation(), port=free_port(), clients=["10.20.30.40", "192.168.7.0/24"])
    server.start()
    caplog.set_level(logging.WARNING, logger="inspector.plc.modbus_transport")
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=1.0)
            s.sendall(struct.pack(">HHHB", 1, 0, 6, 1) + RawModbus.read_pdu(0, 1))
            try:
                assert s.recv(100) == b""  # closed at accept: no answer
            except ConnectionResetError:
                pass
            s.close()
        time.sleep(0.1)
        assert server.stats()["refused_connections"] == 3
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1 and "127.0.0.1" in lines[0]
    finally:
        server.stop()


def test_a_command_allow_list_and_a_read_only_link() -> None:
    from inspector.plc.modbus_client import PlcClient
    from inspector.plc.modbus_map import ErrorCode

    station = FakeStation()
    server = ModbusPlc(station, port=free_port(), allowed_commands=[Command.TRIGGER_PART, Command.ACK_ERROR])
    server.start()
    try:
        with PlcClient(port=server.port) as plc:
            assert plc.command(Command.STOP) == ErrorCode.NOT_PERMITTED and station.running
            assert plc.command(Command.ACK_ERROR) == 0
            assert plc.command(Command.TRIGGER_PART, 9) == 0 and station.triggered == ["9"]
    finally:
        server.stop()
    watcher = ModbusPlc(station, port=free_port(), read_only=True)
    watcher.start()
    try:
        c = RawModbus(watcher.port)
        try:
            answer = c.request(c.write_one_pdu(BY_NAME["command"].address, int(Command.STOP)))
            assert answer[0] == 0x86 and answer[1] == 0x01  # illegal function: this link only reads
            assert c.read("command") == 0 and c.read("error_code") == ErrorCode.NOT_PERMITTED and station.running
        finally:
            c.close()
    finally:
        watcher.stop()


def test_plc_config_keys_and_bad_values_name_the_key() -> None:
    from inspector.config import ConfigError, parse_config
    from tests.inspector.line.test_line_station import line_config

    base = line_config(trigger="external", n=2) + '[plc]\nmodbus = "127.0.0.1:5020"\n'
    cfg = parse_config(base + 'modbus_commands = ["trigger_part", "dequeue_result"]\nmodbus_read_only = false\n'
                              'modbus_clients = ["127.0.0.1", "10.0.0.0/8"]\n')
    opts = cfg.plc.modbus_options()
    assert opts["allowed_commands"] == [Command.TRIGGER_PART, Command.DEQUEUE_RESULT]
    assert opts["clients"] == ["127.0.0.1", "10.0.0.0/8"] and opts["read_only"] is False
    default = parse_config(base).plc.modbus_options()
    assert default["allowed_commands"] is None and default["clients"] == [] and not default["read_only"]
    for bad, key in (('modbus_commands = ["halt"]', "plc.modbus_commands"),
                     ('modbus_clients = ["not-an-address"]', "plc.modbus_clients"),
                     ('modbus_read_only = "yes"', "plc.modbus_read_only")):
        with pytest.raises(ConfigError) as info:
            parse_config(base + bad + "\n")
        assert key in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_configured_unit_id_is_the_only_one_answered() -> None:
    station = FakeStation()
    server = ModbusPlc(station, port=free_port(), unit_id=17)
    server.start()
    try:
        c = RawModbus(server.port, unit=17)
        try:
            assert c.read("state") == 1
            c.unit = 3
            answer = c.request(c.read_pdu(0, 1))
            assert answer == bytes([0x83, 0x0B])  # gateway target device failed to respond
        finally:
            c.close()
    finally:
        server.stop()
    everyone = ModbusPlc(station, port=free_port())  # default: every unit id is answered
    everyone.start()
    try:
        for unit in (0, 1, 255):
            c = RawModbus(everyone.port, unit=unit)
            try:
                assert c.read("state") == 1
            finally:
                c.close()
    finally:
        everyone.stop()


def test_the_json_map_states_word_order_and_unit_id() -> None:
    from inspector.plc.modbus_map import SIZE, json_map

    m = json_map()
    assert m["word_order"] == "high word first" and m["byte_order"] == "big-endian"
    assert m["addressing"] == "0-based holding registers" and m["size"] == SIZE
    assert m["unit_id"] is None and "every unit id" in m["unit_id_meaning"]
    assert json_map(unit_id=17)["unit_id"] == 17
    assert {r["name"] for r in m["registers"]} >= {"command", "ack_arg", "command_status"}
    assert m["error_codes"]["stopped"] == 8 and m["commands"]["trigger_part"] == 1
