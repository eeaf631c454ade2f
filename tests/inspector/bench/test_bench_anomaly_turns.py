"""``inspector bench --anomaly``'s ms per frame: detector, anomaly model and both timed in turns, round after
round, so that a shared machine's drift hits the three figures alike (issue 28's 5 ms line is read from them)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from inspector.bench.anomaly import BATCH, take_turns


class DriftingMachine:
    """A fake clock on a machine that gets slower with every batch run on it (other load growing): a batch of
    ``step`` costs ``cost[step]`` seconds at speed 1, and ``cores`` cores busy the whole time."""

    def __init__(self, cost: dict[str, float], drift: float, cores: int = 2) -> None:
        self.cost = cost
        self.drift = drift
        self.cores = cores
        self.now = 0.0
        self.cpu = 0.0
        self.batches = 0
        self.order: list[str] = []

    def step(self, name: str) -> Callable[[], None]:
        def run() -> None:
            speed = 1.0 / (1.0 + self.drift * self.batches)
            self.batches += 1
            self.order.append(name)
            wall = self.cost[name] / speed
            self.now += wall
            self.cpu += self.cores * wall

        return run

    def clock(self) -> float:
        return self.now

    def cpu_clock(self) -> float:
        return self.cpu


def test_a_drifting_machine_moves_each_figure_alike() -> None:
    """The anomaly model costs 1.25x the detector's time at any speed: measured in turns the ratio holds, where
    2 s windows one after the other (the bench before: the detector's, then the anomaly model's, then both's)
    read 1.61x, and both 4.0x instead of 2.75x, on this drift."""
    cost = {"detector": 0.040, "anomaly": 0.050, "both": 0.110}
    m = DriftingMachine(cost, drift=0.01)
    out = take_turns({k: m.step(k) for k in cost}, seconds=6.0, rounds=6, clock=m.clock, cpu_clock=m.cpu_clock)
    assert out["anomaly"]["median"] / out["detector"]["median"] == pytest.approx(1.25, rel=0.06)
    assert out["both"]["median"] / out["detector"]["median"] == pytest.approx(2.75, rel=0.06)
    # ms per frame at batch 8, and the cores' time: 2 cores busy the whole time
    d = out["detector"]
    assert d["best"] <= d["median"] and d["best"] >= 1e3 * cost["detector"] / BATCH * 0.999
    assert d["core_ms"] == pytest.approx(2 * d["mean"], rel=1e-6)


def test_every_round_runs_each_figure_in_another_order_after_warming_each() -> None:
    cost = {"detector": 0.01, "anomaly": 0.01, "both": 0.02}
    m = DriftingMachine(cost, drift=0.0)
    out = take_turns({k: m.step(k) for k in cost}, seconds=0.0, rounds=3, clock=m.clock, cpu_clock=m.cpu_clock,
                     warm=2, least=1)
    assert m.order[:6] == ["detector", "detector", "anomaly", "anomaly", "both", "both"]  # warm-up, not timed
    timed = m.order[6:]
    assert timed == ["detector", "anomaly", "both", "anomaly", "both", "detector", "both", "detector", "anomaly"]
    assert all(out[k]["batches"] == 3 for k in cost)
