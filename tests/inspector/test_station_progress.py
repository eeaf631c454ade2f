"""`Station(progress=...)`: the build's stages, in order, on the constructing thread."""

from __future__ import annotations

import threading
from pathlib import Path

from inspector.config import parse_config
from inspector.station import Station

CONFIG = """
name = "progress"
[[cameras]]
id = "a"
kind = "simulated"
bank_size = 2
[[cameras]]
id = "b"
kind = "simulated"
bank_size = 2
"""


def test_progress_tells_each_stage_in_order(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG)
    told: list[tuple[str, threading.Thread]] = []
    st = Station(cfg, db_url=f"sqlite:///{tmp_path / 's.db'}", progress=lambda t: told.append((t, threading.current_thread())))
    try:
        stages = [t for t, _ in told]
        assert stages[:7] == [
            f"loading model {cfg.model.name}",
            "compiling the model for CPU",
            "warming up",
            "opening the database",
            "camera a: opening (1 of 2)",
            "camera b: opening (2 of 2)",
            "rendering the frames of 2 simulated cameras",
        ]
        # the banks render in parallel: each camera once, counted in the order they finish
        assert sorted(s.split(": ")[0] for s in stages[7:]) == ["camera a", "camera b"]
        assert [s.split(": ")[1] for s in stages[7:]] == ["frames (1 of 2)", "frames (2 of 2)"]
        assert {th for _, th in told} == {threading.current_thread()}
    finally:
        st.stop()


def test_without_a_database_there_is_no_database_stage() -> None:
    told: list[str] = []
    st = Station(parse_config(CONFIG), db_url="none", archive=False, progress=told.append)
    st.stop()
    assert "opening the database" not in told and told[-1].endswith("frames (2 of 2)")
