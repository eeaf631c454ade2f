"""QueuedSink: results that arrive within the linger go as one batch, with one wake-up; stop() does not wait it out."""

from __future__ import annotations

import threading
import time

import pytest

from inspector.config import StationConfig
from inspector.pipeline.sinks import QueuedSink


class Recorder(QueuedSink):
    def __init__(self, linger_s: float, max_batch: int = 500) -> None:
        super().__init__("rec", max_batch=max_batch, linger_s=linger_s)
        self.batches: list[list[object]] = []
        self.got = threading.Event()

    def handle_batch(self, batch: list[object]) -> None:
        self.batches.append(list(batch))
        self.got.set()


def test_results_within_the_linger_are_one_batch() -> None:
    sink = Recorder(linger_s=0.3)
    sink.start()
    try:
        for i in range(40):  # arriving one by one over ~40 ms, well within the linger
            sink.submit(i)  # type: ignore[arg-type]
            time.sleep(0.001)
        assert sink.got.wait(3.0)
        assert sink.batches == [list(range(40))]
    finally:
        sink.stop()


def test_a_backlog_of_a_full_batch_goes_at_once() -> None:
    sink = Recorder(linger_s=5.0, max_batch=10)
    for i in range(25):
        sink.submit(i)  # type: ignore[arg-type]
    t0 = time.monotonic()
    sink.start()
    try:
        deadline = time.monotonic() + 3.0
        while len(sink.batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.batches[:2] == [list(range(10)), list(range(10, 20))]
        assert time.monotonic() - t0 < 3.0  # no linger for a queue already holding a batch
    finally:
        sink.stop()
    assert [x for b in sink.batches for x in b] == list(range(25))


def test_stop_hands_over_the_last_results_without_waiting_the_linger() -> None:
    sink = Recorder(linger_s=30.0)
    sink.start()
    for i in range(3):
        sink.submit(i)  # type: ignore[arg-type]
    t0 = time.monotonic()
    sink.stop(timeout=20.0)
    assert time.monotonic() - t0 < 5.0
    assert [x for b in sink.batches for x in b] == [0, 1, 2]
    sink.start()  # a restarted sink lingers again: the next results wait for each other
    try:
        sink.got.clear()
        sink.submit(3)  # type: ignore[arg-type]
        time.sleep(0.2)
        assert [x for b in sink.batches for x in b] == [0, 1, 2]
    finally:
        sink.stop()
    assert [x for b in sink.batches for x in b] == [0, 1, 2, 3]


def test_commit_interval_is_validated_by_name() -> None:
    base = {"name": "s", "cameras": [{"id": "c", "kind": "simulated"}]}
    assert StationConfig.model_validate({**base, "storage": {"commit_interval_ms": 50}}).storage.commit_interval_ms == 50
    with pytest.raises(ValueError, match="commit_interval_ms"):
        StationConfig.model_validate({**base, "storage": {"commit_interval_ms": -1}})
