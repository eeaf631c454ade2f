"""A missed reject is an alarm: counted at the gate, ALARM naming the part, and a run that had one never ends OK."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Any

from camera.simulated import SimulatedLineCamera
from inspector.line.runner import Line, RejectGate
from inspector.line.tracker import PartTracker
from inspector.ops.health import MISSED_ALARM_HOLD_S, assess
from inspector.pipeline.results import PartResult, PartTimes, Verdict
from tests.inspector.factories import make_result
from tests.inspector.ops.test_health import _station


def _part(part_id: str, trigger_id: int, verdict: Verdict, age_s: float) -> PartResult:
    return PartResult(part_id=part_id, line="t", trigger_id=trigger_id, triggered_at=time.time() - age_s,
                      verdict=verdict, reason="x", frames=(), expected=("c1",), budget_ms=1000.0,
                      times=PartTimes(verdict_ms=300.0))


def _line_with_gate() -> Line:
    cam = SimulatedLineCamera("c1", fps=1, width=32, height=32, bank_size=1)
    # the gate 1200 mm after the photo-eye at the default 500 mm/s: 2.4 s after the trigger
    return Line("t", {"c1": cam}, 1000.0, lambda _p: None, reject={"camera": "c1", "mm": 1200})


def _station_with(line: Any, *, running: bool = True) -> Any:
    st = _station()
    st.line = line
    st.running = running
    return st


def test_an_ng_verdict_after_the_part_passed_the_gate_is_counted_and_an_alarm_naming_the_part() -> None:
    line = _line_with_gate()
    line.gate.sense = None  # a real line: nobody watches the gate, the verdicts are counted as sent
    line.part_decided(_part("P-1", 1, Verdict.OK, age_s=0.1))
    line.part_decided(_part("P-2", 2, Verdict.NG, age_s=0.1))  # in time: a pulse is timed for it
    assert line.gate.counters() == (1, 0, 1)
    assert assess(_station_with(line))["level"] == "OK"
    line.part_decided(_part("P-3", 3, Verdict.NG, age_s=5.0))  # its verdict came 5 s after its trigger
    assert line.gate.reject_too_late == 1 and line.gate.counters() == (1, 1, 1)
    h = assess(_station_with(line))
    assert h["level"] == "ALARM"
    assert "MISSED REJECT part P-3" in h["summary"] and "after it passed the reject gate" in h["summary"]
    rep = line.report()["reject_gate"]
    assert rep["reject_too_late"] == 1 and rep["missed"] == 1 and rep["rejected_in_time"] == 1


def test_a_watched_gate_counts_an_ng_part_that_went_on_once() -> None:
    gate = RejectGate()
    level = {"high": False}
    gate.sense = lambda: level["high"]
    gate.decided(_part("P-1", 1, Verdict.NG, 0.0))
    gate.decided(_part("P-2", 2, Verdict.NG, 0.0))
    gate.decided(_part("P-3", 3, Verdict.OK, 0.0))
    gate.too_late(_part("P-2", 2, Verdict.NG, 0.0))
    gate.at_gate(1)  # NG, not pushed: a missed reject
    gate.at_gate(2)  # NG, verdict too late: the same miss, not counted twice
    gate.at_gate(3)
    assert (gate.reject_late, gate.reject_too_late, gate.missed) == (2, 1, 2)
    assert gate.counters() == (0, 2, 1)
    assert [pid for _t, pid, _w in gate.misses] == ["P-2", "P-1"]


def test_the_alarm_holds_for_its_window_then_clears_while_running() -> None:
    line = _line_with_gate()
    line.gate.misses.append((time.monotonic() - MISSED_ALARM_HOLD_S + 5, "P-9", "NG part passed the reject gate"))
    line.gate.missed = 1
    assert assess(_station_with(line))["level"] == "ALARM"
    line.gate.misses[0] = (time.monotonic() - MISSED_ALARM_HOLD_S - 1, "P-9", "NG part passed the reject gate")
    assert assess(_station_with(line))["level"] == "OK"
    h = assess(_station_with(line, running=False))  # but the run had it: it never ends OK
    assert h["level"] == "ALARM" and "1 NG parts not rejected at the gate (last: part P-9)" in h["summary"]


def test_a_part_decided_after_its_budget_is_an_alarm_and_the_run_ends_alarm() -> None:
    tracker = PartTracker("t", ["c1"], budget_ms=1000)
    tid = tracker.open_part("P-7")
    tracker.open_part("P-8")
    tracker.add(dataclasses.replace(make_result("c1", 1), trigger_id=tid))  # P-7 complete, in time
    tracker.expire(now_ns=time.perf_counter_ns() + int(5e9))  # P-8's verdict 5 s after its trigger
    assert tracker.stats.deadline_missed == 1
    line = SimpleNamespace(tracker=tracker, gate=RejectGate())
    h = assess(_station_with(line))
    assert h["level"] == "ALARM" and "deadline missed: part P-8" in h["summary"]
    h = assess(_station_with(line, running=False))
    assert h["level"] == "ALARM" and "1 parts decided after their deadline (last: part P-8)" in h["summary"]
    assert h["parts"]["deadline_missed"] == 1


def test_each_part_failed_safe_at_its_deadline_records_how_late_its_release_ran() -> None:
    seen: list[PartResult] = []
    tracker = PartTracker("t", ["c1", "c2"], budget_ms=1000, on_part=seen.append)
    tracker.open_part("P-1")
    tracker.open_part("P-2")
    late_ns = 7_000_000
    first = tracker._open[1].deadline_ns  # the deadline the timer aims at
    before = time.perf_counter_ns()
    tracker.expire(now_ns=first + late_ns)
    after = time.perf_counter_ns()
    assert [p.part_id for p in seen] == ["P-1", "P-2"]
    lateness = list(tracker.stats.deadline_lateness_ms)
    assert len(lateness) == 2
    for ms in lateness:  # measured at the release, against the real clock, not the now_ns given
        assert (before - first) / 1e6 - 1 <= ms <= (after - first) / 1e6 + 1
    pct = tracker.stats.as_dict(1000.0)["deadline_lateness_ms"]
    assert set(pct) == {"p50", "p99"}
