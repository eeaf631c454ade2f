"""Health that tells the truth: drops, latency, database backlog and spool degrade it, over a window."""

from __future__ import annotations

import collections
import dataclasses
import time
from types import SimpleNamespace
from typing import Any

import pytest

from camera.protocol import CameraState
from inspector.config import parse_config
from inspector.ops.health import assess, health_text
from inspector.ops.run_stats import RunStats
from tests.inspector.factories import make_result


class _Watchdog:
    """Windowed rates as the real watchdog reports them, set by the test."""

    window_s = 10.0

    def __init__(self, rates: dict[str, dict[str, float]]) -> None:
        self._rates = rates

    def rates(self, camera_id: str) -> dict[str, float]:
        return self._rates[camera_id]


def _station(
    *,
    received_fps: float = 30.0,
    dropped_fps: float = 0.0,
    latency_ms: float = 20.0,
    cameras: int = 8,
    config: str = "",
    db: Any = None,
) -> Any:
    cfg = parse_config('name = "h"\n' + config + '[[cameras]]\nid = "c0"\nkind = "simulated"\n')
    ids = [f"c{i}" for i in range(cameras)]
    stats = RunStats()
    r = make_result("c0", 1)
    stats.add([dataclasses.replace(r, times=dataclasses.replace(r.times, total_ms=latency_ms))] * 50)
    rates = {cid: {"received": received_fps, "inspected": received_fps - dropped_fps, "invalid": 0.0,
                   "dropped": dropped_fps} for cid in ids}
    return SimpleNamespace(
        config=cfg,
        running=True,
        paused=False,
        cameras={cid: SimpleNamespace(state=CameraState.STREAMING, state_reason="") for cid in ids},
        watchdog=_Watchdog(rates),
        transitions=collections.Counter(),
        stats=stats,
        db_writer=db,
        archive=None,
        line=None,
    )


@pytest.mark.parametrize(
    ("dropped_fps", "latency_ms", "level", "words"),
    [
        (0.0, 20.0, "OK", []),  # a healthy line
        (27.6, 411.0, "ALARM", ["92% of frames dropped", "p50 latency 411 ms > budget 250 ms"]),  # the case
        (11.1, 20.0, "DEGRADED", ["37% of frames dropped (last 10 s)"]),  # the GUI showed OK for half an hour
        (0.0, 300.0, "ALARM", ["p50 latency 300 ms"]),  # most frames late
        (0.6, 20.0, "OK", []),  # 2% dropped: under the 5% default
    ],
)
def test_health_level_follows_drops_and_latency(dropped_fps: float, latency_ms: float, level: str,
                                                words: list[str]) -> None:
    h = assess(_station(dropped_fps=dropped_fps, latency_ms=latency_ms))
    assert h["level"] == level and h["ok"] is (level == "OK")
    for w in words:
        assert w in h["summary"]
    assert health_text(h).startswith(level)


def test_p99_over_budget_alone_is_degraded() -> None:
    st = _station(latency_ms=20.0)
    r = make_result("c0", 2)
    st.stats.add([dataclasses.replace(r, times=dataclasses.replace(r.times, total_ms=900.0))] * 2)  # 2 of 52 late
    h = assess(st)
    assert h["level"] == "DEGRADED" and "p99 latency 900 ms > budget 250 ms" in h["summary"]


def test_thresholds_come_from_config() -> None:
    cfg = "[health]\ndrop_rate_degraded = 0.01\ndrop_rate_alarm = 0.02\nlatency_budget_ms = 10\n"
    h = assess(_station(dropped_fps=0.6, latency_ms=20.0, config=cfg))
    assert h["level"] == "ALARM"
    assert "2% of frames dropped" in h["summary"] and "budget 10 ms" in h["summary"]


def test_latency_is_judged_over_the_window_so_health_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    st = _station(latency_ms=900.0)
    assert assess(st)["level"] == "ALARM"
    from inspector.ops import run_stats

    later = run_stats.time.monotonic() + 11.0  # the slow results are older than the 10 s window
    monkeypatch.setattr(run_stats.time, "monotonic", lambda: later)
    assert assess(st)["level"] == "OK"


def test_db_backlog_and_spool_degrade_health() -> None:
    stats = {"spool_size": 0, "queue_depth": 2500, "skipped_full": 0, "rejected": 0}
    db = SimpleNamespace(stats=lambda: stats, spool=SimpleNamespace(size_bytes=0))
    h = assess(_station(db=db))
    assert h["level"] == "DEGRADED" and "db backlog 2500" in h["summary"]
    stats["queue_depth"] = 9000
    assert assess(_station(db=db))["level"] == "ALARM"
    stats.update(queue_depth=0, spool_size=120)
    h = assess(_station(db=db))
    assert h["level"] == "DEGRADED" and "db spooling 120" in h["summary"]
    db.spool.size_bytes = 300e6  # past spool_alarm_mb = 256
    assert assess(_station(db=db))["level"] == "ALARM"


def test_an_offline_camera_is_an_alarm_and_a_stale_one_degraded() -> None:
    st = _station()
    st.cameras["c3"].state = CameraState.STALE
    assert assess(st)["level"] == "DEGRADED"
    st.cameras["c4"].state = CameraState.OFFLINE
    h = assess(st)
    assert h["level"] == "ALARM" and "1 camera OFFLINE (c4)" in h["summary"]


def test_health_thresholds_are_checked() -> None:
    from inspector.config import ConfigError

    with pytest.raises(ConfigError, match="drop_rate_alarm"):
        parse_config('name = "h"\n[health]\ndrop_rate_degraded = 0.5\ndrop_rate_alarm = 0.1\n'
                     '[[cameras]]\nid = "c0"\nkind = "simulated"\n')


def _line_station(incomplete: int, complete: int, verdict_ms: float = 300.0) -> Any:
    from inspector.line.runner import RejectGate
    from inspector.line.tracker import PartTracker

    st = _station()
    tracker = PartTracker("h", ["c0"], budget_ms=1000)
    for i in range(incomplete + complete):
        tid = tracker.open_part()
        if i < complete:
            r = dataclasses.replace(make_result("c0", i), trigger_id=tid)
            tracker.add(r)
    # the incomplete ones failed safe at their deadline (not after it: that is a missed deadline, an ALARM)
    tracker.expire(now_ns=time.perf_counter_ns() + int(997e6))
    # what the window holds: the test's verdict times
    tracker.stats.recent = collections.deque((t, verdict_ms, inc) for t, _ms, inc in tracker.stats.recent)
    st.line = SimpleNamespace(tracker=tracker, gate=RejectGate())
    return st


def test_incomplete_parts_degrade_then_alarm_and_a_part_p99_near_the_budget_degrades() -> None:
    assert assess(_line_station(0, 50))["level"] == "OK"
    h = assess(_line_station(1, 49))
    assert h["level"] == "DEGRADED" and "1 of 50 parts incomplete, NG" in h["summary"]
    h = assess(_line_station(10, 40))
    assert h["level"] == "ALARM" and "10 of 50 parts incomplete" in h["summary"]
    h = assess(_line_station(0, 50, verdict_ms=950.0))
    assert h["level"] == "DEGRADED" and "parts p99 950 ms near the 1000 ms budget" in h["summary"]
    assert h["parts"]["parts"] == 50
