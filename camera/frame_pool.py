"""Per-camera frame pools: preallocated slots, refcounted handles, newest frame wins.

Pixels stay in their slot; `FrameHandle` objects travel. A slot is reused (or, for
GenTL buffers, queued back to the producer) when its last holder releases it.

Holders of a published frame:

* the pool's *pending* reference, until the scheduler claims it (then the scheduler
  owns that reference) or a newer frame replaces it (then it is counted as dropped);
* the pool's *latest* reference, which keeps the newest frame available for display;
* anything else that called `FrameHandle.retain` (display, archive).

A *triggered* camera's pool (``triggered=True``) never replaces a pending frame: each
frame answers a trigger and belongs to a part, so pending frames queue in arrival order
and the scheduler claims the oldest first. Such a pool drops a frame only when every
slot is held (counted as ``pool_exhausted``; the part then fails safe at its deadline).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from camera.renderer import GroundTruth


@dataclass
class PoolCounters:
    """Per-camera frame accounting; ``received == inspected + dropped + in_flight`` at all times.

    ``in_flight`` counts published frames that are neither inspected nor dropped yet: the
    pending frame waiting for the scheduler and the frames a worker has claimed. It moves
    under the pool's lock together with the other counters, so every `FramePool.snapshot`
    satisfies the equation exactly. Claiming moves a frame from pending to a worker
    without changing it; `FramePool.mark_inspected` / `FramePool.mark_dropped` end it.
    """

    received: int = 0
    inspected: int = 0
    dropped: int = 0
    in_flight: int = 0
    invalid: int = 0  # incomplete/corrupt/malformed buffers: counted, never inferred
    pool_exhausted: int = 0  # a frame arrived while every slot was held

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class FrameHandle:
    """A reference to one frame in a pool. Cheap to pass around; pixels stay put.

    Use as a context manager (or call `release`) for each reference you hold.
    """

    __slots__ = (
        "_on_free",
        "_pool",
        "_refs",
        "_slot",
        "acquired_ns",
        "acquired_wall",
        "camera_id",
        "image",
        "pixel_format",
        "sequence",
        "trigger_id",
        "truth",
    )

    def __init__(
        self,
        pool: FramePool,
        slot: int,
        image: np.ndarray,
        sequence: int,
        pixel_format: str,
        truth: GroundTruth | None,
        on_free: Callable[[], None] | None,
        acquired_ns: int,
        acquired_wall: float,
        trigger_id: int | None = None,
    ) -> None:
        self.camera_id = pool.camera_id
        #: The trigger this frame answers (frame id / chunk data of a triggered camera), else None
        self.trigger_id = trigger_id
        self.sequence = sequence
        self.acquired_ns = acquired_ns
        self.acquired_wall = acquired_wall
        self.image = image
        self.pixel_format = pixel_format
        self.truth = truth
        self._pool = pool
        self._slot = slot
        self._refs = 0
        self._on_free = on_free

    @property
    def refcount(self) -> int:
        return self._refs

    def retain(self) -> FrameHandle:
        """Take one more reference; returns self."""
        self._pool._retain(self)
        return self

    def release(self) -> None:
        """Give one reference back."""
        self._pool._release(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FrameHandle({self.camera_id}#{self.sequence}, refs={self._refs})"


class FramePool:
    """N preallocated slots for one camera.

    Owned slots (simulated/replay cameras): `acquire_slot` gives a free slot's array
    to write into, `publish` makes it a frame. External buffers (GenTL): `publish_external`
    wraps a buffer the producer owns and calls its ``on_free`` (re-queue) at refcount 0.

    Args:
        camera_id: Owner camera.
        capacity: Number of slots.
        shape: Slot array shape for owned slots (``(H, W)`` or ``(H, W, C)``).
        allocator: Makes a slot array (e.g. pinned memory on GPU stations).
        triggered: Queue pending frames instead of keeping only the newest (triggered cameras).
    """

    def __init__(
        self,
        camera_id: str,
        capacity: int = 6,
        shape: tuple[int, ...] | None = None,
        allocator: Callable[[tuple[int, ...]], np.ndarray] | None = None,
        *,
        triggered: bool = False,
    ) -> None:
        if capacity < 3:
            raise ValueError("capacity: a frame pool needs at least 3 slots (pending, latest, in flight)")
        self.camera_id = camera_id
        self.capacity = capacity
        self.counters = PoolCounters()
        self._lock = threading.Lock()
        self._claimed = threading.Condition(self._lock)
        self._alloc = allocator or (lambda s: np.empty(s, np.uint8))
        self._slots: list[np.ndarray] = []
        self._free: list[int] = []
        self._shape: tuple[int, ...] | None = None
        self.triggered = triggered
        self._pending: FrameHandle | None = None
        self._queued: collections.deque[FrameHandle] = collections.deque()  # triggered pools
        self._latest: FrameHandle | None = None
        self._external_live = 0
        self._listeners: list[Callable[[FramePool], None]] = []
        if shape is not None:
            self.reshape(shape)

    # ------------------------------------------------------------------ setup
    def reshape(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate the owned slots for a new frame shape (camera reconfigured)."""
        with self._lock:
            if self._shape == tuple(shape):
                return
            self._shape = tuple(shape)
            self._slots = [self._alloc(self._shape) for _ in range(self.capacity)]
            self._free = list(range(self.capacity))
            # frames still held keep their old arrays alive; their slots are retired
            for h in (self._pending, self._latest, *self._queued):
                if h is not None:
                    h._slot = -1

    def subscribe(self, callback: Callable[[FramePool], None]) -> None:
        """Call ``callback(pool)`` after every publish (the scheduler's wake-up)."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ producer side
    def acquire_slot(self) -> tuple[int, np.ndarray] | None:
        """A free slot to write the next frame into, or None when all are held."""
        with self._lock:
            if not self._free:
                self.counters.pool_exhausted += 1
                self.counters.received += 1
                self.counters.dropped += 1
                return None
            idx = self._free.pop()
            return idx, self._slots[idx]

    def abandon_slot(self, slot: int) -> None:
        """Give back a slot from `acquire_slot` that was not published."""
        with self._lock:
            if 0 <= slot < len(self._slots) and slot not in self._free:
                self._free.append(slot)

    def publish(
        self,
        slot: int,
        sequence: int,
        *,
        pixel_format: str = "BGR8",
        truth: GroundTruth | None = None,
        acquired_ns: int | None = None,
        image: np.ndarray | None = None,
        trigger_id: int | None = None,
    ) -> FrameHandle:
        """Publish a filled owned slot as the newest frame."""
        arr = image if image is not None else self._slots[slot]
        return self._publish(slot, arr, sequence, pixel_format, truth, None, acquired_ns, trigger_id)

    def publish_external(
        self,
        image: np.ndarray,
        sequence: int,
        on_free: Callable[[], None],
        *,
        pixel_format: str,
        acquired_ns: int | None = None,
        trigger_id: int | None = None,
    ) -> FrameHandle:
        """Publish a producer-owned buffer; ``on_free`` hands it back at refcount 0."""
        with self._lock:
            self._external_live += 1
        return self._publish(-1, image, sequence, pixel_format, None, on_free, acquired_ns, trigger_id)

    def count_invalid(self) -> None:
        """Count a frame that arrived but cannot be inspected (corrupt, wrong size)."""
        with self._lock:
            self.counters.invalid += 1

    def _publish(
        self,
        slot: int,
        image: np.ndarray,
        sequence: int,
        pixel_format: str,
        truth: GroundTruth | None,
        on_free: Callable[[], None] | None,
        acquired_ns: int | None,
        trigger_id: int | None = None,
    ) -> FrameHandle:
        h = FrameHandle(
            self,
            slot,
            image,
            sequence,
            pixel_format,
            truth,
            on_free,
            acquired_ns if acquired_ns is not None else time.perf_counter_ns(),
            time.time(),
            trigger_id,
        )
        h._refs = 2  # pending + latest
        to_release: list[FrameHandle] = []
        with self._lock:
            self.counters.received += 1
            self.counters.in_flight += 1
            if self.triggered:
                self._queued.append(h)
            else:
                if self._pending is not None:
                    self.counters.dropped += 1
                    self.counters.in_flight -= 1
                    to_release.append(self._pending)
                self._pending = h
            if self._latest is not None:
                to_release.append(self._latest)
            self._latest = h
        for old in to_release:
            self._release(old)
        for cb in self._listeners:
            cb(self)
        return h

    # ------------------------------------------------------------------ consumer side
    def claim(self) -> FrameHandle | None:
        """Take the pending frame (the newest; a triggered pool's oldest); the caller owns one reference."""
        with self._lock:
            if self.triggered:
                h = self._queued.popleft() if self._queued else None
            else:
                h, self._pending = self._pending, None
            self._claimed.notify_all()
            return h

    def wait_claimed(self, timeout: float) -> bool:
        """Block until no frame is pending (a free-running producer's pacing); False on timeout."""
        with self._lock:
            return self._claimed.wait_for(lambda: self._pending is None and not self._queued, timeout)

    def has_pending(self) -> bool:
        return self._pending is not None or bool(self._queued)

    def latest(self) -> FrameHandle | None:
        """The newest frame with a reference for the caller (release it), or None."""
        with self._lock:
            h = self._latest
            if h is None:
                return None
            h._refs += 1
            return h

    def mark_inspected(self, n: int = 1) -> None:
        """``n`` claimed frames were inspected."""
        with self._lock:
            self.counters.inspected += n
            self.counters.in_flight -= n

    def mark_dropped(self, n: int = 1) -> None:
        """``n`` claimed frames will not be inspected (e.g. malformed, inference failed)."""
        with self._lock:
            self.counters.dropped += n
            self.counters.in_flight -= n

    def snapshot(self) -> PoolCounters:
        with self._lock:
            return PoolCounters(**self.counters.__dict__)

    @property
    def free_slots(self) -> int:
        with self._lock:
            return len(self._free)

    @property
    def external_live(self) -> int:
        with self._lock:
            return self._external_live

    def flush(self) -> None:
        """Drop the pending and latest references (camera stopping)."""
        with self._lock:
            pending, latest = self._pending, self._latest
            self._pending = self._latest = None
            queued = list(self._queued)
            self._queued.clear()
            gone = [h for h in (pending, *queued) if h is not None]
            self.counters.dropped += len(gone)
            self.counters.in_flight -= len(gone)
        for h in (*gone, latest):
            if h is not None:
                self._release(h)

    # ------------------------------------------------------------------ refcounts
    def _retain(self, h: FrameHandle) -> None:
        with self._lock:
            if h._refs <= 0:
                raise RuntimeError(f"{h!r}: retain after the frame was freed")
            h._refs += 1

    def _release(self, h: FrameHandle) -> None:
        on_free: Callable[[], None] | None = None
        with self._lock:
            if h._refs <= 0:
                raise RuntimeError(f"{h!r}: released more often than retained")
            h._refs -= 1
            if h._refs == 0:
                if h._on_free is not None:
                    on_free, h._on_free = h._on_free, None
                    self._external_live -= 1
                elif 0 <= h._slot < len(self._slots) and h._slot not in self._free:
                    self._free.append(h._slot)
        if on_free is not None:
            on_free()
