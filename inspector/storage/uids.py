"""Uids of stored rows: UUID version 7 (RFC 9562), time-ordered.

A uid is made for every inspected frame as the database writer turns it into a record, in the
order the frames were queued (the spool and the database use it to store a result once). Version 7 puts the Unix time in milliseconds first, so uids made
later sort later and the ``uid`` index of a months-old database grows at its end instead of
taking random pages all over it as version 4's random uids do. A counter in the 12 bits
after the version keeps the order within a millisecond (4,096 a millisecond, then it borrows
the next one) and across a clock stepped back; the last 62 bits are random, so two processes
writing one database in the same millisecond do not collide. Made with one lock and no system
call, where ``uuid.uuid4()`` reads the kernel's random source for every frame.
"""

from __future__ import annotations

import os
import random
import threading
import time

_COUNTER_MAX = 0xFFF
_TAIL_BITS = 62


class UidClock:
    """Makes version-7 uid strings in increasing order, 36 characters such as
    ``019aeb2c-41d0-7003-9f4e-2b6c81d07a5e``: 12 hex digits of milliseconds, ``7``, 3 of the counter,
    then the variant bits and the random tail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = 0
        self._count = 0
        self._rng = random.Random(int.from_bytes(os.urandom(16), "big"))

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        with self._lock:
            if ms > self._ms:
                self._ms, self._count = ms, 0
            elif self._count < _COUNTER_MAX:  # the same millisecond, or the clock went back: count on
                self._count += 1
            else:  # 4,096 in one millisecond: borrow the next
                self._ms, self._count = self._ms + 1, 0
            ms, count = self._ms, self._count
            tail = self._rng.getrandbits(_TAIL_BITS)
        v = (ms << 80) | (0x7 << 76) | (count << 64) | (0b10 << 62) | tail
        h = f"{v:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: The process's clock: every writer's rows and events
new_uid = UidClock()
