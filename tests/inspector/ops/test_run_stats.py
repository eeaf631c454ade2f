"""`RunStats`: per-camera counters and the stage percentiles of the report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inspector.ops.run_stats import RunStats
from inspector.pipeline.results import StageTimes, Verdict
from tests.inspector.factories import make_result


def test_stage_percentiles_are_those_of_every_result_of_every_camera() -> None:
    rng = np.random.default_rng(3)
    stats = RunStats()
    seen: dict[str, list[float]] = {k: [] for k in ("wait", "preprocess", "inference", "postprocess", "verdict", "total")}
    for batch in range(40):
        results = []
        for cam in ("a", "b", "c"):
            t = StageTimes(*(float(v) for v in rng.uniform(0, 50, 6)))
            for k, v in t.as_dict().items():
                seen[k].append(v)
            verdict = Verdict.NG if batch % 3 == 0 else Verdict.OK
            results.append(dataclasses.replace(make_result(cam, batch, verdict), times=t))
        stats.add(results)
    got = stats.stage_percentiles()
    assert set(got) == set(seen)
    for k, values in seen.items():
        assert got[k]["p50"] == pytest.approx(float(np.percentile(values, 50)))
        assert got[k]["p99"] == pytest.approx(float(np.percentile(values, 99)))
    assert [stats.camera(c).inspected for c in "abc"] == [40, 40, 40]
    assert stats.total_ng() == 3 * 14
    a = stats.camera("a")
    assert list(a.stages["total"]) == [r for r in seen["total"][0::3]]
    assert list(a.latency_ms) == seen["total"][0::3]


def test_a_camera_keeps_its_newest_stage_times_only() -> None:
    stats = RunStats()
    cs = stats.camera("a")
    n = cs.times.maxlen + 5
    stats.add([dataclasses.replace(make_result("a", i), times=StageTimes(total_ms=float(i))) for i in range(n)])
    assert list(cs.stages["total"])[:2] == [5.0, 6.0] and len(cs.stages["total"]) == cs.times.maxlen


def test_the_runs_latencies_can_be_read_while_workers_add_to_full_buffers() -> None:
    """After hours in production the latency buffers are full, and every append drops the oldest value; reading
    the run's latencies for the report while a worker adds must neither fail ("deque mutated during iteration")
    nor see a camera added half-way."""
    import threading

    stats = RunStats()
    result = make_result("a", 1)
    for cam in ("a", "b"):
        cs = stats.camera(cam)
        cs.latency_ms.extend(float(i) for i in range(cs.latency_ms.maxlen or 0))
    stop = threading.Event()

    def worker() -> None:
        n = 0
        while not stop.is_set():
            stats.add([result])
            n += 1
            if n % 500 == 0:  # a camera that appears while the report reads
                stats.camera(f"new{n}")

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    try:
        for _ in range(20):
            values = stats.latency_ms()
            assert len(values) >= 2 * 200_000
    finally:
        stop.set()
        t.join(5)
