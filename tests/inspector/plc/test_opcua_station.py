"""A PLC runs a triggered line over OPC UA: StartSingleJob x N, N ResultReady events with its ids."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from inspector.config import parse_config
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config
from tests.inspector.plc.test_modbus import free_port
from tests.inspector.plc.test_opcua import connect, nodes, single_job, subscribe, until

pytest.importorskip("asyncua")
pytestmark = pytest.mark.timeout(120)


def test_start_single_job_on_a_station_returns_each_part_as_result_ready(tmp_path, monkeypatch) -> None:
    from inspector.access.users import UserStore
    from inspector.storage.db import migrate, open_database

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the server's certificate goes there
    url = f"sqlite:///{tmp_path / 'ua.db'}"
    engine = open_database(url)
    migrate(engine)
    UserStore(engine).create_user("plc", "operator-pass", "operator", by="test")
    engine.dispose()
    port = free_port()
    text = line_config(trigger="external", n=2) + f'[plc]\nopcua = "opc.tcp://127.0.0.1:{port}"\nopcua_insecure = true\n'
    st = Station(parse_config(text), db_url=url, archive=False)
    n = 40
    sent: dict[str, float] = {}
    jobs: dict[str, str] = {}

    async def main() -> list:
        c = await connect(st.plc_opcua)
        try:
            idx, vs, vsm, auto = await nodes(c)
            events = await subscribe(c, vs, idx)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            for i in range(n):
                pid = f"UA-{1000 + i}"
                sent[pid] = time.perf_counter()
                jobs[pid] = await single_job(auto, idx, pid, meas=f"m{i}")
                await asyncio.sleep(0.06)  # longer than the exposure: no overruns
            await until(lambda: len(events.got) >= n, timeout=20)
            return list(zip(events.got, events.arrived))
        finally:
            await c.disconnect()

    with st:
        time.sleep(0.3)
        got = asyncio.run(main())
    assert len(got) == n
    assert [e.PartId.Id for e, _ in got] == list(jobs)  # one event per part, in trigger order
    assert all(e.JobId.Id == jobs[e.PartId.Id] for e, _ in got)
    assert all(not e.IsPartial for e, _ in got)
    lat = np.array([(t - sent[e.PartId.Id]) * 1000 for e, t in got])
    budget = st.report()["parts"]["budget_ms"]
    assert np.percentile(lat, 99) <= budget, f"p99 {np.percentile(lat, 99):.0f} ms"
    print(f"StartSingleJob -> ResultReady: p50 {np.percentile(lat, 50):.0f} ms, p99 {np.percentile(lat, 99):.0f} ms")


def test_the_opcua_job_limit_comes_from_the_config_and_bad_values_name_the_key(tmp_path, monkeypatch) -> None:
    from inspector.config import ConfigError
    from inspector.storage.db import migrate, open_database

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'ua.db'}"
    migrate(open_database(url))
    plc = f'[plc]\nopcua = "opc.tcp://127.0.0.1:{free_port()}"\nopcua_insecure = true\n'
    st = Station(parse_config(line_config(trigger="external", n=2) + plc + "opcua_max_jobs = 8\n"), db_url=url,
                 archive=False)
    with st:
        assert st.plc_opcua.max_jobs_in_flight == 8
    with pytest.raises(ConfigError, match="opcua_max_jobs"):
        parse_config(line_config(trigger="external", n=2) + plc + "opcua_max_jobs = 0\n")
