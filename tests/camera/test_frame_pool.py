from __future__ import annotations

import threading

import numpy as np
import pytest

from camera.frame_pool import FramePool


def publish(pool: FramePool, seq: int, value: int = 0):
    got = pool.acquire_slot()
    assert got is not None
    slot, arr = got
    arr[...] = value
    return pool.publish(slot, seq)


def test_newest_frame_wins_and_drops_are_counted() -> None:
    pool = FramePool("c", 4, (8, 8))
    for seq in range(1, 6):
        publish(pool, seq, seq)
    h = pool.claim()
    assert h is not None and h.sequence == 5 and int(h.image[0, 0]) == 5
    c = pool.snapshot()
    assert (c.received, c.dropped) == (5, 4)
    h.release()
    pool.mark_inspected()
    c = pool.snapshot()
    assert c.received == c.inspected + c.dropped


def test_slot_returns_only_when_every_holder_released() -> None:
    pool = FramePool("c", 3, (4, 4))
    h = publish(pool, 1)
    assert pool.free_slots == 2 and h.refcount == 2  # pending + latest
    claimed = pool.claim()
    display = pool.latest()
    assert claimed is h and display is h and h.refcount == 3
    publish(pool, 2)  # replaces "latest": pool drops its reference to frame 1
    assert h.refcount == 2
    claimed.release()
    assert pool.free_slots == 1  # frame 1 still held by the display, frame 2 by the pool
    display.release()
    assert pool.free_slots == 2


def test_exhausted_pool_drops_new_frames_not_old_ones() -> None:
    pool = FramePool("c", 3, (4, 4))
    held = []
    for seq in range(3):
        publish(pool, seq)
        held.append(pool.claim())
    # every slot is held by a consumer: the next frame cannot be stored
    assert pool.acquire_slot() is None
    c = pool.snapshot()
    assert c.pool_exhausted == 1 and c.received == 4
    for h in held:
        h.release()


@pytest.mark.parametrize("capacity", [0, 1, 2])
def test_capacity_below_three_is_refused(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        FramePool("c", capacity, (4, 4))


def test_double_release_is_an_error() -> None:
    pool = FramePool("c", 3, (4, 4))
    publish(pool, 1)
    h = pool.claim()
    h.release()  # the consumer's reference
    pool.flush()  # the pool's "latest" reference: now freed
    with pytest.raises(RuntimeError, match="released more often"):
        h.release()


def test_external_buffers_are_handed_back_at_refcount_zero() -> None:
    pool = FramePool("gentl", 4)
    queued: list[int] = []
    buf = np.zeros((4, 4), np.uint8)
    pool.publish_external(buf, 1, on_free=lambda: queued.append(1), pixel_format="Mono8")
    pool.publish_external(buf, 2, on_free=lambda: queued.append(2), pixel_format="Mono8")
    assert queued == [1]  # frame 1 was replaced before anyone claimed it
    h = pool.claim()
    assert h.sequence == 2 and h.image is buf  # zero copy
    h.release()
    assert queued == [1]  # still the pool's "latest" for display
    pool.flush()
    assert queued == [1, 2] and pool.external_live == 0


def test_accounting_holds_under_concurrency() -> None:
    pool = FramePool("c", 6, (16, 16))
    stop = threading.Event()
    inspected = 0

    def consumer() -> None:
        nonlocal inspected
        while not stop.is_set() or pool.has_pending():
            h = pool.claim()
            if h is None:
                continue
            h.release()
            pool.mark_inspected()
            inspected += 1

    t = threading.Thread(target=consumer)
    t.start()
    for seq in range(5000):
        got = pool.acquire_slot()
        if got is not None:
            pool.publish(got[0], seq)
    stop.set()
    t.join()
    pool.flush()
    c = pool.snapshot()
    assert c.received == 5000
    assert c.received == c.inspected + c.dropped
    assert pool.free_slots == 6
