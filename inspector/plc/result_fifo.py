"""`ResultFifo`: part results waiting for the PLC to take them, oldest first, never overwritten."""

from __future__ import annotations

import collections
import itertools
import logging
import statistics
import threading
import time
from dataclasses import dataclass

from inspector.pipeline.results import PartResult

log = logging.getLogger(__name__)

#: A full FIFO is logged at most once per this many seconds, with the count since the last line.
OVERFLOW_LOG_S = 10.0


@dataclass
class FifoStats:
    queued: int = 0
    dequeued: int = 0
    overflows: int = 0  # results refused because the FIFO was full (an alarm, never an overwrite)


class ResultFifo:
    """A bounded FIFO of part results.

    Args:
        depth: How many results may wait (at least 64: a PLC that reads once a second on a
            5 parts/s line must not lose any).
    """

    def __init__(self, depth: int = 64) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        self.stats = FifoStats()
        self._q: collections.deque[PartResult] = collections.deque()
        self._queued_at: collections.deque[float] = collections.deque()  # monotonic, one per waiting result
        self._arrivals: collections.deque[float] = collections.deque(maxlen=17)  # the last results offered
        self.last_overflow: float | None = None  # monotonic time of the last result refused
        self._lock = threading.Lock()

    def put(self, part: PartResult) -> bool:
        """Queue ``part``; False (counted as an overflow) when full: the oldest stays."""
        now = time.monotonic()
        with self._lock:
            self._arrivals.append(now)
            if len(self._q) >= self.depth:
                self.stats.overflows += 1
                self.last_overflow = now
                return False
            self._q.append(part)
            self._queued_at.append(now)
            self.stats.queued += 1
            return True

    def head(self) -> PartResult | None:
        with self._lock:
            return self._q[0] if self._q else None

    def pop(self) -> PartResult | None:
        with self._lock:
            if not self._q:
                return None
            self.stats.dequeued += 1
            self._queued_at.popleft()
            return self._q.popleft()

    def head_wait_s(self, now: float | None = None) -> float | None:
        """How long the head result has waited for the PLC (None: empty)."""
        with self._lock:
            if not self._queued_at:
                return None
            return (time.monotonic() if now is None else now) - self._queued_at[0]

    def cycle_s(self) -> float | None:
        """The median interval between the last results offered (the line's part cycle); None before two."""
        with self._lock:
            t = list(self._arrivals)
        return statistics.median(b - a for a, b in itertools.pairwise(t)) if len(t) >= 2 else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._q)

    @property
    def full(self) -> bool:
        return len(self) >= self.depth


class OverflowLog:
    """Results that found the FIFO full: the first logged at once, then one line per `OVERFLOW_LOG_S` with a count.

    A PLC that stopped reading makes every part an overflow (5 a second on a busy line): one
    line each buried the log; the count since the last line says the same.
    """

    def __init__(self) -> None:
        self.unlogged = 0
        self.last_part = ""
        self.lines = 0
        self._logged_at = -OVERFLOW_LOG_S

    def note(self, part_id: str, depth: int) -> None:
        """One more result not queued; logged now unless a line went out within `OVERFLOW_LOG_S`."""
        self.unlogged += 1
        self.last_part = part_id
        self.flush(depth)

    def flush(self, depth: int) -> None:
        """Log the overflows not yet logged, unless a line went out within the last `OVERFLOW_LOG_S`."""
        now = time.monotonic()
        if not self.unlogged or now - self._logged_at < OVERFLOW_LOG_S:
            return
        log.error("plc: result FIFO full (%d waiting): %d part%s not queued for the PLC since the last line "
                  "(last: part %s; stored all the same): is the PLC taking results (dequeue_result)?",
                  depth, self.unlogged, "s" if self.unlogged > 1 else "", self.last_part)
        self.unlogged, self._logged_at = 0, now
        self.lines += 1
