"""Time-ordered row uids (UUID version 7): unique, in the order they were made, parseable as UUIDs."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from inspector.storage import uids
from inspector.storage.uids import UidClock


def test_uids_are_version_7_uuids_with_the_creation_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid.UUID(UidClock()())
    after = time.time_ns() // 1_000_000
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert before <= u.int >> 80 <= after
    assert len(str(u)) == 36


def test_uids_sort_in_the_order_they_were_made_and_never_repeat_across_threads() -> None:
    clock = UidClock()
    made: list[list[str]] = [[] for _ in range(4)]

    def make(k: int) -> None:
        for _ in range(5000):
            made[k].append(clock())

    threads = [threading.Thread(target=make, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [u for m in made for u in m]
    assert len(set(every)) == len(every)
    for m in made:  # each thread's own in increasing order
        assert m == sorted(m)


def test_a_clock_that_steps_back_or_a_busy_millisecond_keeps_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_000_000 * 1_000_000]
    monkeypatch.setattr(uids.time, "time_ns", lambda: now[0])
    clock = UidClock()
    got = [clock() for _ in range(5000)]  # more than the 4,096 a millisecond's counter holds
    now[0] -= 3_000_000_000  # NTP steps the clock 3 s back
    got += [clock() for _ in range(10)]
    assert got == sorted(got) and len(set(got)) == len(got)
    assert uuid.UUID(got[4096]).int >> 80 == 1_800_000_000_001  # the counter overflowed into the next ms


def test_two_clocks_made_in_the_same_millisecond_do_not_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uids.time, "time_ns", lambda: 1_800_000_000_000 * 1_000_000)
    a, b = UidClock(), UidClock()  # two processes, say, writing the same database
    assert not {a() for _ in range(100)} & {b() for _ in range(100)}
