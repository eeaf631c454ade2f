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
