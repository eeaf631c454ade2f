"""A PLC runs a triggered line over Modbus TCP: its part ids go in, the same ids come back in order."""

from __future__ import annotations

import time

import pytest

from inspector.config import parse_config
from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import Command, ResultState
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config
from tests.inspector.plc.test_modbus import free_port

pytest.importorskip("pymodbus")


def test_plc_triggers_parts_with_its_ids_and_dequeues_their_results_in_order(tmp_path) -> None:
    port = free_port()
    text = line_config(trigger="external", n=2) + f'[plc]\nmodbus = "127.0.0.1:{port}"\n'
    st = Station(parse_config(text), db_url=f"sqlite:///{tmp_path / 'plc.db'}", archive=False)
    ids = list(range(900_001, 900_013))
    got: list[tuple[int, int]] = []
    with st, PlcClient(port=port) as plc:
        time.sleep(0.3)
        for pid in ids:
            assert plc.command(Command.TRIGGER_PART, pid) == 0
            time.sleep(0.06)  # longer than the exposure: no overruns
        deadline = time.monotonic() + 10
        while len(got) < len(ids) and time.monotonic() < deadline:
            r = plc.registers()
            if r["fifo_count"]:
                got.append((r["result_part_id"], r["result_state"]))
                assert plc.command(Command.DEQUEUE_RESULT) == 0
            else:
                time.sleep(0.01)
        counts = plc.registers()
    assert [g[0] for g in got] == ids
    assert all(s in (ResultState.OK, ResultState.NG) for _, s in got)
    assert counts["parts_ok"] + counts["parts_ng"] == len(ids) and counts["parts_incomplete"] == 0
    rep = st.report()
    assert rep["parts"]["triggered"] == len(ids) and rep["plc"]["modbus"]["fifo_overflows"] == 0
    # the PLC is one of the part sinks of the station's one ordered part stream, nothing of its own
    assert st.plc_modbus in st.fan_out.part_sinks and "reordered" in rep["parts"]
    assert rep["db"]["parts_delivered"] == len(ids)  # every part reached the PLC through the store
    # the PLC's session is audited: who started it, as which role
    from inspector.access.audit import AuditLog
    from inspector.storage.db import open_database

    engine = open_database(f"sqlite:///{tmp_path / 'plc.db'}")
    try:
        actions = [(e.user, e.action) for e in AuditLog(engine).list(limit=50)]
    finally:
        engine.dispose()
    assert ("plc-modbus", "session.service") in actions


@pytest.mark.parametrize("link", ["modbus", "opcua"])
def test_a_plc_link_without_a_database_is_refused_at_start(link: str) -> None:
    """A PLC's commands are checked against its role and audited: with no database for either, the
    link would change the station unchecked (StationCommands skipped the check): one line instead."""
    from inspector.station import StationError

    port = free_port()
    address = f"127.0.0.1:{port}" if link == "modbus" else f"opc.tcp://127.0.0.1:{port}"
    text = line_config(trigger="external", n=2) + f'[plc]\n{link} = "{address}"\n'
    with pytest.raises(StationError, match=rf"\[plc\] {link}: .*database") as err:
        Station(parse_config(text), db_url="none", archive=False)
    assert "\n" not in str(err.value)
