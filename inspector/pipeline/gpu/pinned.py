"""Page-locked (pinned) frame slots, so host-to-device copies are real async DMA.

A `FramePool` takes an ``allocator(shape) -> np.ndarray`` for its slots; on a GPU
station the allocator is a `PinnedAllocator`::

    with PinnedAllocator(device=0) as alloc:
        pool = FramePool("cam1", 6, (1080, 1920, 3), allocator=alloc)
        ...

Slots are allocated *portable* (``CU_MEMHOSTALLOC_PORTABLE``): pinned for every
CUDA context, so a camera sharded to ``cuda:1`` copies from them as fast as one on
``cuda:0``. Buffers that someone else allocated (GenTL buffers harvesters announces
to the producer) are pinned in place with `PinnedAllocator.register` instead.

From pageable memory the driver stages the copy through its own pinned buffer:
still correct, just slower and synchronous for the host. Pinned memory is a scarce
OS resource: size pools for what the cameras need, not more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from inspector.pipeline.gpu import DeviceContext, missing_requirements

log = logging.getLogger(__name__)

Allocator = Callable[[tuple[int, ...]], np.ndarray]


class PinnedMemoryUnavailable(RuntimeError):
    """Pinned memory cannot be had here (no pycuda or no CUDA device): one-line reason."""


def _pageable(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.uint8)


class PinnedAllocator:
    """FramePool allocator of page-locked u8 slots on one device's primary context.

    Close it only after the pools using it are gone (the slots are freed with the
    arrays; the context must outlive them).

    Args:
        device: CUDA device index whose primary context does the allocations.

    Raises:
        PinnedMemoryUnavailable: pycuda or a CUDA device is missing.
    """

    def __init__(self, device: int = 0) -> None:
        missing = missing_requirements(("pycuda",))
        if missing:
            raise PinnedMemoryUnavailable(f"pinned memory: needs {', '.join(missing)}")
        import pycuda.driver as cuda

        self._cuda: Any = cuda
        self._ctx = DeviceContext(device)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        """A new page-locked ``uint8`` array of ``shape`` (a FramePool slot)."""
        cuda = self._cuda
        with self._ctx.active():
            return cuda.pagelocked_empty(tuple(shape), np.uint8, mem_flags=cuda.host_alloc_flags.PORTABLE)

    def register(self, array: np.ndarray) -> np.ndarray:
        """Pin an existing C-contiguous array in place; keep the returned array alive while in use.

        The return value shares memory with ``array``; the pages stay locked until it
        is garbage collected.
        """
        if not array.flags.c_contiguous:
            raise ValueError("register: only C-contiguous arrays can be pinned in place")
        cuda = self._cuda
        with self._ctx.active():
            return cuda.register_host_memory(array, cuda.mem_host_register_flags.PORTABLE)

    def close(self) -> None:
        """Release the context (idempotent)."""
        self._ctx.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pinned_allocator(device: int = 0, *, fallback: bool = False) -> Allocator:
    """An allocator for `FramePool` slots in pinned memory.

    Args:
        device: CUDA device whose context allocates (the memory is portable to all).
        fallback: When pinned memory is unavailable, log a warning and return an
            allocator of ordinary (pageable) arrays instead of raising.

    Raises:
        PinnedMemoryUnavailable: pycuda or a CUDA device is missing and not ``fallback``.
    """
    try:
        return PinnedAllocator(device)
    except (PinnedMemoryUnavailable, ImportError) as exc:
        if not fallback:
            if isinstance(exc, PinnedMemoryUnavailable):
                raise
            raise PinnedMemoryUnavailable(f"pinned memory: pycuda does not import ({exc})") from exc
        log.warning("%s: frame slots use pageable memory (slower, synchronous uploads)", exc)
        return _pageable
