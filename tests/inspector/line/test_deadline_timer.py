"""The deadline path on a loaded PC: the timer thread runs ahead of busy threads, its parts are out on time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from inspector.line.tracker import PartTracker
from inspector.pipeline.results import PartResult


def _fifo_permitted() -> bool:
    ok: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            ok.append(True)
        except (OSError, AttributeError):
            ok.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return ok[0]


def test_the_deadline_timer_runs_ahead_of_ordinary_threads() -> None:
    if not _fifo_permitted():
        pytest.skip("real-time scheduling is not permitted here (not root, no CAP_SYS_NICE)")
    tracker = PartTracker("t", ["c1"], budget_ms=100)
    tracker.start()
    try:
        deadline = time.monotonic() + 5
        while tracker.timer_priority == "" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tracker.timer_priority.startswith("SCHED_FIFO")
        assert tracker._thread is not None and tracker._thread.native_id is not None
        assert os.sched_getscheduler(tracker._thread.native_id) == os.SCHED_FIFO
        assert os.sched_getscheduler(0) != os.SCHED_FIFO  # the caller (the process) stays ordinary
    finally:
        tracker.stop()


def _worker(stop: threading.Event) -> None:
    """Like an inference worker: native work without the GIL, then a little Python with it."""
    a = np.random.default_rng(0).random((160, 160))
    while not stop.is_set():
        a = np.tanh(a @ a)  # BLAS / numpy: the GIL released
        x = 0
        for i in range(3_000):  # result handling in Python: ~1 ms holding the GIL
            x += i * i


def test_parts_failed_safe_are_released_on_time_beside_busy_threads_and_a_cpu_hog() -> None:
    """A process spins on each core and two busy worker threads of this process take the GIL in
    turn; 60 parts expire 30 ms apart. Their release may be at most 20 ms late (p99)."""
    released: list[PartResult] = []
    tracker = PartTracker("t", ["c1", "c2"], budget_ms=1000, on_part=released.append)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    stop = threading.Event()
    busy = [threading.Thread(target=_worker, args=(stop,), daemon=True) for _ in range(2)]
    for t in busy:
        t.start()
    tracker.start()
    try:
        for _ in range(60):
            tracker.open_part()
            time.sleep(0.03)
        assert tracker.drain(10.0)
    finally:
        stop.set()
        for h in hogs:
            h.kill()
            h.wait()
        tracker.stop()
    assert len(released) == 60 and all(p.incomplete for p in released)
    late = np.asarray(tracker.stats.deadline_lateness_ms)
    assert late.size == 60
    p99 = float(np.percentile(late, 99))
    assert p99 <= 20.0, f"deadline lateness p99 {p99:.1f} ms (p50 {np.percentile(late, 50):.1f} ms)"
    # failed safe guard_ms (20 ms) before the budget: a release within the p99 is within the budget
    assert tracker.guard_ms == 20.0
    assert tracker.stats.deadline_missed <= 1


def test_the_reject_output_and_the_simulated_conveyor_run_ahead_too() -> None:
    if not _fifo_permitted():
        pytest.skip("real-time scheduling is not permitted here (not root, no CAP_SYS_NICE)")
    from camera.conveyor import Conveyor
    from camera.reject import RejectOutput
    from camera.simulated import SimulatedLineCamera

    cam = SimulatedLineCamera("c1", fps=1, width=32, height=32, bank_size=1)
    out = RejectOutput("c1", cam.features)
    belt = Conveyor(lambda _t: 1, parts_per_min=60)
    out.start()
    belt.start()
    try:
        time.sleep(0.2)
        for t in (out._thread, belt._thread):
            assert t is not None and t.native_id is not None
            assert os.sched_getscheduler(t.native_id) == os.SCHED_FIFO, t.name
    finally:
        belt.stop()
        out.stop()
