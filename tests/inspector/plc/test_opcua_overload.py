"""Issue 26 (OPC UA leftover): a burst of jobs faster than the line is answered job by job, never with Error.

What a machine-vision user expects: a job the station cannot take now is refused with an error
code (BadTooManyOperations) while the VisionSystem stays Operational/Ready; the
VisionStateMachine goes to Error only for a real fault (a camera offline, results lost), and
Reset brings it back.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from inspector.plc.modbus_map import StationState
from tests.inspector.plc.test_modbus import part
from tests.inspector.plc.test_opcua import UaStation, connect, make_server, nodes, single_job, until

pytest.importorskip("asyncua")
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

pytestmark = pytest.mark.timeout(90)


class OverloadedStation(UaStation):
    """A line behind its triggers: its health is ALARM (parts late and incomplete), with no fault."""

    def __init__(self) -> None:
        super().__init__()
        self.overloaded = False

    def state(self) -> StationState:
        return StationState.ERROR if self.overloaded else super().state()


async def states(vsm, auto) -> tuple[str, str]:
    return ((await (await vsm.get_child("0:CurrentState")).read_value()).Text,
            (await (await auto.get_child("0:CurrentState")).read_value()).Text)


def test_a_burst_of_jobs_is_refused_job_by_job_and_the_system_stays_ready(ua_db, tmp_path) -> None:
    _, server = make_server(ua_db, tmp_path)
    station = OverloadedStation()
    server.commands = station
    burst = 100
    seen: dict[str, object] = {}

    async def try_job(auto, idx: int, pid: str) -> str:
        try:
            await single_job(auto, idx, pid)
        except UaStatusCodeError as exc:
            return ua.StatusCodes.BadTooManyOperations == exc.code and "busy" or f"other {exc.code:#x}"
        return "ok"

    async def main() -> None:
        c = await connect(server)
        try:
            idx, _, vsm, auto = await nodes(c)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            station.overloaded = True  # the station's health is ALARM while the burst lasts
            answers = [await try_job(auto, idx, f"B-{i}") for i in range(burst)]  # back to back, no result between
            seen["answers"] = {a: answers.count(a) for a in set(answers)}
            await asyncio.sleep(4.5)  # longer than the server's health watch needs to latch a state
            seen["during"] = await states(vsm, auto)
            for pid in station.triggered:  # the line catches up: every accepted job's result comes back
                server.submit_part(part(pid))
            await until(lambda: server.stats()["results"] >= len(station.triggered))
            station.overloaded = False
            seen["after_job"] = await single_job(auto, idx, "B-after")
            seen["after"] = await states(vsm, auto)
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    limit = server.max_jobs_in_flight
    assert seen["answers"] == {"ok": limit, "busy": burst - limit}, seen
    assert seen["during"] == ("Operational", "Ready")
    assert seen["after"] == ("Operational", "Ready") and seen["after_job"]
    assert server.stats()["jobs_refused_busy"] == burst - limit


def test_a_real_fault_is_error_until_reset(ua_db, tmp_path) -> None:
    station, server = make_server(ua_db, tmp_path)
    seen: dict[str, object] = {}

    async def main() -> None:
        c = await connect(server)
        try:
            idx, _, vsm, auto = await nodes(c)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            station.faulted = "camera cam1 OFFLINE"
            await until(lambda: server.vision_state == "Error", timeout=8)
            seen["fault"] = await states(vsm, auto)
            with pytest.raises(UaStatusCodeError):  # no jobs in Error
                await single_job(auto, idx, "F-1")
            station.faulted = ""
            await vsm.call_method(f"{idx}:Reset", ua.Variant(3, ua.VariantType.Int32),
                                  ua.Variant("camera replaced", ua.VariantType.String))
            seen["reset"] = await states(vsm, auto)
            seen["job"] = await single_job(auto, idx, "F-2")
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert seen["fault"] == ("Error", "Initialized")
    assert seen["reset"] == ("Operational", "Ready") and seen["job"]
    assert station.triggered == ["F-2"]


def _health_station(**sections) -> SimpleNamespace:
    health = {"cameras": {"cam1": {"state": "streaming"}}, "db": {}, "archive": {}, **sections}
    return SimpleNamespace(running=True, paused=False, health=lambda: health)


@pytest.mark.parametrize(("sections", "fault"), [
    ({}, ""),
    ({"window": {"drop_rate": 0.6}, "parts": {"incomplete": 30}}, ""),  # an overload: no fault
    ({"cameras": {"cam1": {"state": "offline"}, "cam2": {"state": "streaming"}}}, "camera cam1 OFFLINE"),
    ({"db": {"lost": 2}}, "results LOST"),
    ({"archive": {"alarm": True}}, "archive disk full"),
])
def test_station_commands_tell_a_fault_from_an_overload(sections, fault) -> None:
    from inspector.plc.commands import StationCommands

    assert StationCommands(_health_station(**sections), control=None).fault() == fault
