"""`BoundedQueue`: `queue.Queue`'s bounded non-blocking put on the C `SimpleQueue`."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from inspector.pipeline.sinks import BoundedQueue


def test_put_nowait_is_refused_at_maxsize_and_markers_are_not() -> None:
    q = BoundedQueue(2)
    q.put_nowait(1)
    q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    q.put("stop")  # a sink's flush or stop marker goes in whatever the bound
    assert q.qsize() == 3
    assert [q.get_nowait() for _ in range(3)] == [1, 2, "stop"]  # first in, first out
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put_nowait(4)  # room again
    assert q.get(timeout=0.1) == 4


def test_get_waits_for_an_item_or_its_timeout() -> None:
    q = BoundedQueue(0)  # 0: unbounded, as queue.Queue
    for i in range(1000):
        q.put_nowait(i)
    assert q.qsize() == 1000 and not q.empty()
    while not q.empty():
        q.get_nowait()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, q.put_nowait, args=("late",)).start()
    assert q.get(timeout=5.0) == "late"
