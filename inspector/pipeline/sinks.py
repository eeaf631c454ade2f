"""Result sinks: frame sinks take `InspectionResult`, part sinks take `PartResult`; none slows inspection.

Two declared protocols and one fan-out that holds each kind:

- `FrameSink`: every inspected frame (the database writer, the NG image archive).
- `PartSink`: the ordered part stream (the PLC links, and any plant sink): decided parts in
  trigger order, each only once it is durable.
- `PartStore`: the one sink that makes parts durable (the database writer): it takes each part
  first and hands it back through `PartStore.on_durable` once it is committed or in the fsynced
  spool; only then does `SinkFanOut` give it to the part sinks ("durable before visible").

`QueuedSink` is the base of the queued sinks: a bounded queue in front of one worker thread
that handles results in batches. `submit` never blocks; a full queue is a counted skip.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from inspector.pipeline.results import InspectionResult, PartResult

log = logging.getLogger(__name__)


@runtime_checkable
class FrameSink(Protocol):
    """Something that consumes inspection results (one per frame)."""

    name: str
    #: True if the sink reads ``result.frame`` pixels; the fan-out then retains the
    #: frame once for it and the sink must release it when done.
    needs_pixels: bool

    def wants(self, result: InspectionResult) -> bool:
        """Whether this result is the sink's business (the fan-out retains no frame for the others)."""
        ...

    def start(self) -> None: ...

    def submit(self, result: InspectionResult) -> bool:
        """Enqueue without blocking; False (and counted) when the queue is full."""
        ...

    def stop(self, timeout: float = 10.0) -> None:
        """Drain what was accepted, then stop."""
        ...

    def stats(self) -> dict[str, float]: ...


@runtime_checkable
class PartSink(Protocol):
    """Something that consumes decided parts, in trigger order, once they are durable."""

    name: str

    def start(self) -> None: ...

    def submit_part(self, part: PartResult) -> bool:
        """Take a decided part without blocking; False (and counted by the sink) when it could not."""
        ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def stats(self) -> dict[str, float]: ...


@runtime_checkable
class PartStore(FrameSink, Protocol):
    """The frame sink that also makes parts durable (the database writer)."""

    def submit_part(self, part: PartResult) -> bool:
        """Queue a part after its frames; False when it could not be queued (then nobody waits for it)."""
        ...

    def on_durable(self, deliver: Callable[[list[PartResult]], None]) -> None:
        """Call ``deliver`` (on the store's thread) with the parts, in the order they were submitted,
        once each is committed or in the fsynced spool (or known lost: then too, never held back)."""
        ...

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is handled (and its parts delivered)."""
        ...


class SinkFanOut:
    """Frames to every frame sink; parts through the store, then to every part sink, in order.

    Args:
        on_published: Told each part once the part sinks have it (the GUI's event).
    """

    def __init__(self, on_published: Callable[[PartResult], None] | None = None) -> None:
        self.store: PartStore | None = None
        self.frame_sinks: list[FrameSink] = []
        self.part_sinks: list[PartSink] = []
        self._on_published = on_published
        self.published = 0
        self.not_stored = 0  # parts the store could not queue: published without waiting
        #: ms from each part's verdict to its publication: what "durable before visible" costs
        self.visible_ms: collections.deque[float] = collections.deque(maxlen=100_000)

    def add_store(self, store: PartStore) -> None:
        """The durable store: first among the frame sinks, and the gate of every part."""
        self.store = store
        self.frame_sinks.insert(0, store)
        store.on_durable(self._publish)

    def add_frame_sink(self, sink: FrameSink) -> None:
        self.frame_sinks.append(sink)

    def add_part_sink(self, sink: PartSink) -> None:
        self.part_sinks.append(sink)

    def frames(self, results: Sequence[InspectionResult]) -> None:
        """Hand each result to every frame sink that wants it (a frame retained per pixel reader)."""
        for r in results:
            for sink in self.frame_sinks:
                if not sink.wants(r):
                    continue
                if sink.needs_pixels and r.frame is not None:
                    r.frame.retain()
                sink.submit(r)

    def part(self, part: PartResult) -> None:
        """A decided part, in trigger order: stored first, published once durable."""
        if self.store is not None and self.store.submit_part(part):
            return
        if self.store is not None:
            self.not_stored += 1
        self._publish([part])

    def _publish(self, parts: list[PartResult]) -> None:
        now = time.time()
        for p in parts:
            self.visible_ms.append(max(0.0, (now - p.triggered_at) * 1000.0 - p.times.verdict_ms))
            for sink in self.part_sinks:
                try:
                    sink.submit_part(p)
                except Exception:  # one sink's bug must not keep the part from the others
                    log.exception("sink %s: part %s failed", sink.name, p.part_id)
            self.published += 1
            if self._on_published is not None:
                self._on_published(p)

    def start(self) -> list[str]:
        """Start the store, the frame sinks, then the part sinks; returns their names in that order."""
        started = []
        sinks: tuple[FrameSink | PartSink, ...] = (*self.frame_sinks, *self.part_sinks)
        for sink in sinks:
            sink.start()
            started.append(sink.name)
        return started

    def stop(self, timeout: float = 30.0) -> None:
        """The store hands on its last parts, then the other sinks stop; the store itself stops
        last (`stop_store`), after the cameras' final transitions."""
        if self.store is not None and not self.store.flush(timeout):
            log.warning("sink %s: parts not flushed within %.0f s", self.store.name, timeout)
        sinks: tuple[FrameSink | PartSink, ...] = (*self.frame_sinks, *self.part_sinks)
        for sink in sinks:
            if sink is not self.store:
                sink.stop(timeout=timeout)

    def stop_store(self, timeout: float = 30.0) -> None:
        if self.store is not None:
            self.store.stop(timeout=timeout)


class _Flush:
    """A marker in a sink's queue: set once every item before it is handled."""

    def __init__(self) -> None:
        self.done = threading.Event()


class BoundedQueue:
    """`queue.Queue`'s bounded, non-blocking producer side (`put_nowait` raises `queue.Full` at ``maxsize``) on a
    `queue.SimpleQueue`, which is written in C: a put and a get cost ~0.7 us against ~9 us for `queue.Queue`'s
    Condition-based ones (timeit, warm), paid for every frame on the completion thread and the sink's thread, where
    Python beside the runtime runs several times slower than warm. Concurrent producers may pass ``maxsize`` by
    one each (the bound keeps memory in check, it is not a count). `put` never blocks and is never refused: the
    flush and stop markers."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put_nowait(self, item: Any) -> None:
        if 0 < self.maxsize <= self._q.qsize():
            raise queue.Full
        self._q.put(item)

    def put(self, item: Any) -> None:
        self._q.put(item)

    def get(self, timeout: float | None = None) -> Any:
        return self._q.get(timeout=timeout)

    def get_nowait(self) -> Any:
        return self._q.get_nowait()

    def qsize(self) -> int:
        return self._q.qsize()

    def empty(self) -> bool:
        return self._q.empty()


class QueuedSink:
    """Base class: bounded queue + one worker thread + batch handling.

    Subclasses implement `handle_batch`. ``max_batch`` results (or what arrived within
    ``linger_s``) are handed over at once.
    """

    needs_pixels = False

    def __init__(self, name: str, maxsize: int = 10_000, max_batch: int = 500, linger_s: float = 0.05) -> None:
        self.name = name
        self._q = BoundedQueue(maxsize)
        self._max_batch = max_batch
        self._linger = linger_s
        self._thread: threading.Thread | None = None
        self._flush = threading.Event()  # set by stop(): the last batch goes without lingering
        self._wake = threading.Event()  # set by hurry() and stop(): the batch being filled goes now
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

    def wants(self, result: InspectionResult) -> bool:
        """Every result, unless a subclass says otherwise."""
        return True

    def hurry(self) -> None:
        """Handle the batch being filled now instead of after the linger (someone waits for it)."""
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every item accepted so far is handled; False on timeout, or when not running
        with items queued."""
        if self._thread is None:
            return self._q.empty()
        mark = _Flush()
        self._q.put(mark)  # type: ignore[arg-type]
        self._wake.set()
        return mark.done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        t = self._thread
        if t is None:
            return
        self._q.put(None)  # sentinel after everything accepted so far
        self._flush.set()
        self._wake.set()
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
            if isinstance(item, _Flush):
                item.done.set()
                continue
            batch = [item]
            if self._linger > 0 and self._q.qsize() < self._max_batch - 1 and not self._flush.is_set():
                # let the batch fill while asleep: one wake-up per batch, not one per result (each
                # would take the GIL from the inference threads); stop() and hurry() cut the wait short
                self._wake.wait(self._linger)
            self._wake.clear()  # before taking the rest: a hurry() after this wakes the next batch
            marks: list[_Flush] = []
            while len(batch) < self._max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                if isinstance(nxt, _Flush):
                    marks.append(nxt)
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
                for m in marks:
                    m.done.set()
        self.on_stopped()
