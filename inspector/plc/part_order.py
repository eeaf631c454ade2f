"""`TriggerOrder`: hand part results to a PLC in the order their parts were triggered.

A PLC tracks parts on the belt in order (a shift register): the result of part N must come
before that of part N+1. Parts are decided out of order — an incomplete part waits for its
deadline while the next one completes — so a result is held while an earlier-triggered part
is still open, and released, in trigger order, as soon as none is. Every open part is
decided by its deadline (or at stop), so nothing is held longer than one budget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from inspector.pipeline.results import PartResult


class TriggerOrder:
    """Args:
        lowest_open: The lowest trigger id of a part still waiting for its verdict, or None
            (the line's `PartTracker.lowest_unsettled`); None for no ordering (results as decided).
        settle: Called with each pushed part's trigger id before ``lowest_open`` is asked
            (`PartTracker.settle`): a part counts as waiting from its trigger until it is here,
            not only until it is decided, so a part decided on another thread and still on its
            way holds the later ones back.
    """

    def __init__(self, lowest_open: Callable[[], int | None] | None = None,
                 settle: Callable[[int], None] | None = None) -> None:
        self.lowest_open = lowest_open
        self.settle = settle
        self.reordered = 0  # results that waited for an earlier part
        self._held: dict[int, PartResult] = {}
        self._lock = threading.Lock()

    def push(self, part: PartResult) -> list[PartResult]:
        """Add a decided part; returns the results now due, in trigger order."""
        if self.lowest_open is None:
            return [part]
        with self._lock:
            self._held[part.trigger_id] = part
            if self.settle is not None:
                self.settle(part.trigger_id)
            first_open = self.lowest_open()
            due = sorted(t for t in self._held if first_open is None or t < first_open)
            if part.trigger_id not in due:
                self.reordered += 1
            return [self._held.pop(t) for t in due]
