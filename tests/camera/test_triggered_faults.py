"""Faults injected into triggered simulated cameras act as they do on free-running ones."""

from __future__ import annotations

import time

from inspector.config import parse_config
from inspector.pipeline.results import PartResult, Verdict
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config


def test_wrong_size_frames_of_a_triggered_camera_are_invalid_and_their_parts_ng_incomplete() -> None:
    """``--inject cam2:wrong_size``: cam2 answers its triggers with buffers that fit no image; each is
    counted invalid, never inferred, and its part misses cam2's image: NG "incomplete", never OK."""
    st = Station(parse_config(line_config()), db_url="none")
    parts: list[PartResult] = []
    st.events.part_ready.connect(parts.append)
    with st:
        st.inject_fault("cam2", "wrong_size", 0.8)
        time.sleep(2.5)
    rep = st.report()["parts"]
    invalid = st.cameras["cam2"].pool.snapshot().invalid
    assert invalid >= 3, "the fault should have spoilt some of cam2's frames"
    assert rep["verdicts"] == rep["triggered"] == len(parts)
    without_cam2 = [p for p in parts if "cam2" not in {f.camera_id for f in p.frames}]
    assert len(without_cam2) >= invalid
    for p in without_cam2:
        # the reason names every camera without an image ("incomplete: cam2, cam3 no image" when a slow machine
        # also let another camera's frame miss the deadline, seen once in CI); cam2 must be among them
        missing = p.reason.removeprefix("incomplete:").removesuffix("no image").replace(",", " ").split()
        assert p.incomplete and p.verdict is Verdict.NG and "cam2" in missing, p.reason
    assert len(without_cam2) < len(parts)  # the fault ended: cam2's frames were inspected again
