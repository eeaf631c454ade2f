"""`paired_rounds`: the runtime alone and the pipeline side by side, in ABBA order, so drift favours neither."""

from __future__ import annotations

import statistics

import pytest

from inspector.bench.pipeline import Span, paired_rounds


class DriftingMachine:
    """A machine that gets slower by ``drift`` of its speed with every window measured on it (other load
    growing): the runtime alone runs 100 fps at speed 1, the pipeline ``efficiency`` of that."""

    def __init__(self, efficiency: float, drift: float) -> None:
        self.efficiency = efficiency
        self.drift = drift
        self.windows = 0
        self.order: list[str] = []

    def _speed(self) -> float:
        speed = 1.0 - self.drift * self.windows
        self.windows += 1
        return speed

    def pure(self, span: float) -> Span:
        self.order.append("pure")
        fps = 100.0 * self._speed()
        return Span(fps * span, span, 2 * span)  # two cores busy: CPU time a frame rises as fps falls

    def pipeline(self, span: float) -> Span:
        self.order.append("pipeline")
        fps = 100.0 * self.efficiency * self._speed()
        return Span(fps * span, span, 2 * span)


def test_rounds_alternate_which_side_goes_first() -> None:
    m = DriftingMachine(0.9, 0.0)
    pairs = paired_rounds(m.pure, m.pipeline, 4, 1.0)
    assert len(pairs) == 4
    assert m.order == ["pure", "pipeline", "pipeline", "pure", "pure", "pipeline", "pipeline", "pure"]
    assert all(p.fps == pytest.approx(100.0) and q.fps == pytest.approx(90.0) for p, q in pairs)


def test_a_drifting_machine_does_not_bias_the_median_of_the_rounds() -> None:
    # the machine loses 3% of its speed a window; the pipeline is 0.9 of the runtime alone
    m = DriftingMachine(0.9, 0.03)
    pairs = paired_rounds(m.pure, m.pipeline, 8, 1.0)
    fps_ratios = [q.fps / p.fps for p, q in pairs]
    cpu_ratios = [p.cpu_ms_per_frame / q.cpu_ms_per_frame for p, q in pairs]
    # always the runtime first (the order before) every ratio reads low: 0.9 * (1 - 0.03 (2k+1)) / (1 - 0.03 (2k))
    always_first = statistics.median(0.9 * (1 - 0.03 * (2 * k + 1)) / (1 - 0.03 * 2 * k) for k in range(8))
    assert always_first < 0.87
    assert statistics.median(fps_ratios) == pytest.approx(0.9, abs=0.005)
    assert statistics.median(cpu_ratios) == pytest.approx(0.9, abs=0.005)


def test_a_span_gives_fps_and_cpu_time_a_frame() -> None:
    s = Span(frames=200, wall=2.0, cpu=3.0)
    assert s.fps == pytest.approx(100.0)
    assert s.cpu_ms_per_frame == pytest.approx(15.0)
    assert Span(0, 0.0, 0.0).fps == 0.0 and Span(0, 1.0, 1.0).cpu_ms_per_frame == 0.0
