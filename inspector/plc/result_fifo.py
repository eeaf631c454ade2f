"""`ResultFifo`: part results waiting for the PLC to take them, oldest first, never overwritten."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from inspector.pipeline.results import PartResult


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
        self._lock = threading.Lock()

    def put(self, part: PartResult) -> bool:
        """Queue ``part``; False (counted as an overflow) when full: the oldest stays."""
        with self._lock:
            if len(self._q) >= self.depth:
                self.stats.overflows += 1
                return False
            self._q.append(part)
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
            return self._q.popleft()

    def __len__(self) -> int:
        with self._lock:
            return len(self._q)

    @property
    def full(self) -> bool:
        return len(self) >= self.depth
