"""Issue 26.6 (OPC UA): login floods, lockouts that keep the PLC out, stale roles, oversized messages, None endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

import pytest

from inspector.access.login_gate import ADDRESS_LOCKOUT_S, LOCK_AFTER, NAME_BURST, NAME_WINDOW_S, LoginThrottle
from tests.inspector.plc.test_opcua import connect, make_server, nodes, single_job

pytest.importorskip("asyncua")
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadUserAccessDenied, UaError, UaStatusCodeError

pytestmark = pytest.mark.timeout(90)
_REFUSED = (UaError, OSError, TimeoutError, ConnectionError)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def try_login(server, name: str, password: str) -> bool:
    try:
        c = await connect(server, name, password)
    except _REFUSED:
        return False
    await c.disconnect()
    return True


def test_a_login_flood_with_made_up_names_is_throttled_and_audited_in_aggregate(ua_db, tmp_path) -> None:
    audit = ua_db[1]
    _, server = make_server(ua_db, tmp_path)
    seen: dict[str, object] = {}

    async def main() -> None:
        plc = await connect(server)
        try:
            idx, _, vsm, auto = await nodes(plc)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            flood = asyncio.gather(*(try_login(server, f"nobody{i}", "guess-pass-1") for i in range(60)))
            jobs = 0
            while not flood.done():
                await single_job(auto, idx, f"F-{jobs}")
                jobs += 1
            seen["accepted"] = sum(await flood)
            seen["jobs"] = jobs
            seen["plc_again"] = await try_login(server, "plc", "operator-pass")  # the PLC is never kept out
        finally:
            await plc.disconnect()

    with server:
        asyncio.run(main())
    stats = server.stats()
    assert seen["accepted"] == 0 and seen["plc_again"] is True and seen["jobs"] >= 1
    assert stats["logins_failed"] <= 5  # passwords actually checked: the rest refused unchecked
    assert stats["logins_refused"] >= 50
    rows = [e for e in audit.list(limit=500) if e.action == "opcua.login_failed"]
    assert len(rows) == 1, [(e.target, e.new) for e in rows]  # one row for the address, not one per attempt
    assert rows[0].new.startswith("60 failed from 127.0.0.1") and "(+57 more)" in rows[0].target


def test_wrong_passwords_over_opc_ua_never_lock_the_account(ua_db, tmp_path) -> None:
    users, _ = ua_db
    _, server = make_server(ua_db, tmp_path)

    async def main() -> list[bool]:
        out = []
        for _ in range(6):
            out.append(await try_login(server, "plc", "wrong-password"))
            await asyncio.sleep(0.1)
        return out

    with server:
        assert not any(asyncio.run(main()))
    assert users.authenticate("plc", "operator-pass").user is not None  # not locked for 15 minutes


def test_throttle_locks_an_address_not_the_plc() -> None:
    clock = Clock()
    gate = LoginThrottle(clock)
    assert gate.admit("10.0.0.5", "plc") is None
    gate.done("10.0.0.5", "plc", True)  # the PLC logged in from its address
    for i in range(LOCK_AFTER):  # someone on the PLC's host guesses other names
        clock.now += 60
        assert gate.admit("10.0.0.5", f"x{i}") is None
        gate.done("10.0.0.5", f"x{i}", False)
    assert "locked" in (gate.admit("10.0.0.5", "someone") or "")
    assert gate.admit("10.0.0.5", "plc") is None  # the PLC itself still gets in
    gate.done("10.0.0.5", "plc", True)
    clock.now += ADDRESS_LOCKOUT_S + 1
    assert gate.admit("10.0.0.5", "someone") is None


def test_throttle_per_name_across_addresses_spares_the_plc_address() -> None:
    clock = Clock()
    gate = LoginThrottle(clock)
    gate.admit("10.0.0.5", "plc")
    gate.done("10.0.0.5", "plc", True)
    for i in range(NAME_BURST):  # guessing the PLC's password from many addresses
        assert gate.admit(f"10.1.0.{i}", "plc") is None
        gate.done(f"10.1.0.{i}", "plc", False)
    assert "failed logins" in (gate.admit("10.2.0.1", "plc") or "")
    assert gate.admit("10.0.0.5", "plc") is None  # not from the PLC's own address
    gate.done("10.0.0.5", "plc", True)
    clock.now += NAME_WINDOW_S + 1
    assert gate.admit("10.2.0.1", "plc") is None


def test_sessions_of_changed_or_removed_users_are_closed(ua_db, tmp_path) -> None:
    users, audit = ua_db
    station, server = make_server(ua_db, tmp_path)
    seen: dict[str, object] = {}

    async def main() -> None:
        plc = await connect(server)
        eng = await connect(server, "eng", "engineer-pass")
        idx, _, vsm, _ = await nodes(plc)
        _, _, evsm, _ = await nodes(eng)
        await vsm.call_method(f"{idx}:SelectModeAutomatic")
        users.set_role("plc", "engineer")  # changed after the login: the next call is refused
        with pytest.raises(BadUserAccessDenied):
            await vsm.call_method(f"{idx}:Halt")
        seen["running"] = station.running
        users.remove_user("eng")  # removed: the idle session is closed within seconds
        state = await evsm.get_child("0:CurrentState")
        deadline = time.monotonic() + 8
        seen["eng_closed"] = False
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(state.read_value(), 1.0)
            except (UaError, OSError, TimeoutError, ConnectionError, AttributeError):
                seen["eng_closed"] = True
                break
            await asyncio.sleep(0.2)
        for c in (plc, eng):
            with contextlib.suppress(Exception):  # closed by the server already
                await c.disconnect()

    with server:
        asyncio.run(main())
    assert seen["running"] is True and seen["eng_closed"] is True
    rows = [(e.user, e.action) for e in audit.list(limit=100)]
    assert ("plc", "opcua.Halt.denied") in rows and ("plc", "opcua.Halt") not in rows
    assert ("plc", "opcua.session_closed") in rows and ("eng", "opcua.session_closed") in rows


def test_oversized_chunks_are_refused_before_they_are_buffered(ua_db, tmp_path) -> None:
    _, server = make_server(ua_db, tmp_path)
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"HELF" + struct.pack("<I", 60_000_000) + bytes(65536))
        s.settimeout(3)
        try:
            closed = s.recv(100) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    assert closed  # not waiting for the 60 MB
    assert server.stats()["chunks_too_large"] == 1


def test_oversized_arguments_are_refused(ua_db, tmp_path) -> None:
    station, server = make_server(ua_db, tmp_path)

    async def main() -> None:
        c = await connect(server)
        try:
            idx, _, vsm, auto = await nodes(c)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            with pytest.raises(UaStatusCodeError) as refused:
                await single_job(auto, idx, "P-1", meas="m" * 1000)
            assert refused.value.code == ua.StatusCodes.BadInvalidArgument
        finally:
            await c.disconnect()
        c = await connect(server)
        try:
            idx, _, _, auto = await nodes(c)
            with pytest.raises(Exception):  # noqa: B017 - refused by the transport, however the client reports it
                await asyncio.wait_for(single_job(auto, idx, "P-2", meas="m" * (4 << 20)), 20)
        finally:
            with contextlib.suppress(Exception):  # the server closed the connection
                await c.disconnect()

    with server:
        asyncio.run(main())
    assert station.triggered == []


def test_the_none_endpoint_is_off_unless_configured(ua_db, tmp_path) -> None:
    async def policies(server) -> set[str]:
        endpoints = await Client(server.url).connect_and_get_server_endpoints()
        return {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints}

    from inspector.plc.opcua_server import OpcUaPlc
    from tests.inspector.plc.test_modbus import free_port
    from tests.inspector.plc.test_opcua import UaStation

    server = OpcUaPlc(UaStation(), port=free_port(), users=ua_db[0], audit=ua_db[1], cert_dir=tmp_path / "pki")
    with server:  # the default, on loopback too
        assert asyncio.run(policies(server)) == {"Basic256Sha256"}
    _, server = make_server(ua_db, tmp_path, insecure=True)
    with server:
        assert asyncio.run(policies(server)) == {"None", "Basic256Sha256"}


def test_the_none_endpoint_is_a_plc_key() -> None:
    from inspector.config import PlcConfig

    assert PlcConfig().opcua_insecure is False
    assert PlcConfig(opcua="opc.tcp://127.0.0.1:4840", opcua_insecure=True).opcua_insecure is True
