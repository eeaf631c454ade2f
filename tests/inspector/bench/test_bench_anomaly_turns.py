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
    assert all(out[k]["rounds"] == 3 for k in cost)


class FakeRuntime:
    """Batches started and waited for; how many were inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.started = 0
        self.waited = 0

    def start(self, k: int) -> int:
        assert k == self.started  # numbered in order (the detector's slot is k % slots)
        self.started += 1
        self.inside += 1
        self.most = max(self.most, self.inside)
        return k

    def wait(self, k: int) -> None:
        assert k == self.waited  # oldest first
        self.waited += 1
        self.inside -= 1


def test_a_figure_in_flight_keeps_the_stations_batches_inside_and_leaves_none_behind_its_turn() -> None:
    """A station whose cameras fill whole batches keeps ``in_flight`` of them inside the runtime (the scorer has
    as many request slots); the bench timed one at a time, so each batch's last frames left a core idle."""
    from inspector.bench.anomaly import InFlight

    rt, one = FakeRuntime(), FakeRuntime()
    clock = iter(range(10_000)).__next__
    take_turns({"anomaly": InFlight(rt.start, rt.wait, 3), "anomaly_one": InFlight(one.start, one.wait, 1)},
               seconds=0.0, rounds=4, clock=lambda: float(clock()), cpu_clock=lambda: 0.0, least=5)
    assert rt.most == 3 and one.most == 1
    assert rt.inside == 0 and one.inside == 0  # every turn waits for its batches before the next figure's
    assert rt.waited == (2 + 3) + 4 * (5 + 3)  # warm-up 2 (+3 inside at its end); 5 timed a turn (+3 at its end)


def test_the_bench_times_the_anomaly_model_in_flight_and_one_batch_at_a_time() -> None:
    from inspector.bench.anomaly import format_lines, ms_per_frame

    m = ms_per_frame("defect-yolo11p-320", "openvino", "anomaly-plate-320", threads=0, seconds=0.5,
                     streams="auto", precision="auto", in_flight=3)
    assert m["in_flight"] == 3 and m["anomaly_streams"] >= 1
    for key in ("detector", "anomaly", "both", "detector_one", "anomaly_one", "both_one"):
        assert 0 < m[f"{key}_best_ms"] <= m[f"{key}_ms"] and m[f"{key}_core_ms"] > 0
    res = {"ms_per_frame": m, "station": {"station": "demo", "cameras": 8, "fps_per_camera": 5.0, **{
        k: {"fps": 40.0, "busy_fraction": 0.5, "dropped": 0, "p99_ms": 50.0} for k in ("detector", "both")}},
        "teach": None, "load_before": [1.0], "load_after": [1.0]}
    text = "\n".join(format_lines(res))
    assert "3 batches in flight" in text and "one batch at a time: detector" in text and "core-ms per frame" in text


def test_batches_in_flight_that_end_in_pairs_are_timed_over_the_whole_turn() -> None:
    """Two streams finish two batches at once: one wait takes two batches' time, the next none. Timing the turn's
    waits for its steps only read 1.2x a batch's time on 5 steps; the whole turn (its last batches waited for
    too) reads it exactly."""
    from inspector.bench.anomaly import InFlight

    batch_s = 0.040
    now = [0.0]
    waits = [0]

    def wait(_k: int) -> None:
        now[0] += 2 * batch_s if waits[0] % 2 == 0 else 0.0
        waits[0] += 1

    out = take_turns({"both": InFlight(lambda k: k, wait, 3)}, seconds=0.0, rounds=3, warm=1, least=5,
                     clock=lambda: now[0], cpu_clock=lambda: 2 * now[0])
    assert out["both"]["median"] == pytest.approx(1e3 * batch_s / BATCH)
    assert out["both"]["best"] == pytest.approx(1e3 * batch_s / BATCH)
    assert out["both"]["core_ms"] == pytest.approx(2e3 * batch_s / BATCH)
