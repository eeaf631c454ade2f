"""Result sinks: every sink takes `InspectionResult` and never slows inspection.

`QueuedSink` is the base: a bounded queue in front of one worker thread that handles
results in batches. `submit` never blocks; a full queue is a counted skip.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol, runtime_checkable

from inspector.pipeline.results import InspectionResult

log = logging.getLogger(__name__)


@runtime_checkable
class ResultSink(Protocol):
    """Something that consumes inspection results."""

    name: str
    #: True if the sink reads ``result.frame`` pixels; the fan-out then retains the
    #: frame once for it and the sink must release it when done.
    needs_pixels: bool

    def start(self) -> None: ...

    def submit(self, result: InspectionResult) -> bool:
        """Enqueue without blocking; False (and counted) when the queue is full."""
        ...

    def stop(self, timeout: float = 10.0) -> None:
        """Drain what was accepted, then stop."""
        ...

    def stats(self) -> dict[str, float]: ...


class QueuedSink:
    """Base class: bounded queue + one worker thread + batch handling.

    Subclasses implement `handle_batch`. ``max_batch`` results (or what arrived within
    ``linger_s``) are handed over at once.
    """

    needs_pixels = False

    def __init__(self, name: str, maxsize: int = 10_000, max_batch: int = 500, linger_s: float = 0.05) -> None:
        self.name = name
        self._q: queue.Queue[InspectionResult | None] = queue.Queue(maxsize)
        self._max_batch = max_batch
        self._linger = linger_s
        self._thread: threading.Thread | None = None
        self._flush = threading.Event()  # set by stop(): the last batch goes without lingering
        self.accepted = 0
        self.skipped_full = 0
        self.handled = 0
        self.failed_batches = 0

    def start(self) -> None:
        if self._thread is None:
            self._flush.clear()
            self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
            self._thread.start()

    def submit(self, result: InspectionResult) -> bool:
        try:
            self._q.put_nowait(result)
        except queue.Full:
            self.skipped_full += 1
            if self.needs_pixels and result.frame is not None:
                result.frame.release()
            return False
        self.accepted += 1
        return True

    def stop(self, timeout: float = 10.0) -> None:
        t = self._thread
        if t is None:
            return
        self._q.put(None)  # sentinel after everything accepted so far
        self._flush.set()
        t.join(timeout)
        if t.is_alive():
            log.warning("sink %s: did not drain within %.0f s (%d queued)", self.name, timeout, self._q.qsize())
        self._thread = None

    @property
    def queue_depth(self) -> int:
        return self._q.qsize()

    def stats(self) -> dict[str, float]:
        return {
            "accepted": self.accepted,
            "skipped_full": self.skipped_full,
            "handled": self.handled,
            "queue_depth": self.queue_depth,
            "failed_batches": self.failed_batches,
        }

    def handle_batch(self, batch: list[InspectionResult]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks for subclasses
    def idle_timeout(self) -> float | None:
        """Seconds to wait for a result before `on_idle` runs (None: wait indefinitely)."""
        return None

    def on_idle(self) -> None:
        """Called on the worker thread when no result came within `idle_timeout`."""

    def count_handled(self, batch: list[InspectionResult]) -> int:
        """How many results of a handled batch to count (subclasses may queue other items)."""
        return len(batch)

    def on_stopped(self) -> None:
        """Called on the worker thread after the last batch, before it ends."""

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                item = self._q.get(timeout=self.idle_timeout())
            except queue.Empty:
                self.on_idle()
                continue
            if item is None:
                break
            batch = [item]
            if self._linger > 0 and self._q.qsize() < self._max_batch - 1:
                # let the batch fill while asleep: one wake-up per batch, not one per result (each
                # would take the GIL from the inference threads); stop() cuts the wait short
                self._flush.wait(self._linger)
            while len(batch) < self._max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            try:
                self.handle_batch(batch)
                self.handled += self.count_handled(batch)
            except Exception:
                self.failed_batches += 1
                log.exception("sink %s: batch of %d failed", self.name, len(batch))
            finally:
                if self.needs_pixels:
                    for r in batch:
                        if r.frame is not None:
                            r.frame.release()
        self.on_stopped()
