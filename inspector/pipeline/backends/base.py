"""The backend protocol and the shared CPU batch assembly."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from inspector.pipeline.model_repo import ModelCard
from inspector.pipeline.preprocess import Letterbox, Tile, letterbox_into


class BackendUnavailable(RuntimeError):
    """The backend's runtime or device is missing here (one-line reason)."""


class BackendClosed(RuntimeError):
    """The backend was closed (its recipe retired): it runs nothing any more."""


@dataclass(frozen=True)
class BatchItem:
    """One model input: a frame (or one tile of it) and how it maps into the input."""

    image: np.ndarray
    pixel_format: str
    box: Letterbox
    tile: Tile | None = None


@dataclass(frozen=True)
class BatchOutput:
    """Raw outputs ``(B, 4 + nc, N)`` and the time the backend spent.

    ``raw`` of a batch from a slot (`CpuBatchBackend.start`) may be a view of the runtime's output:
    valid until that slot is started again (the worker decides the batch before it frees the slot).
    """

    raw: np.ndarray
    preprocess_ms: float
    inference_ms: float
    #: where the runtime decoded and NMS'd itself (OpenVINO with ``nms_iou``): per input, ``(K, 6)``
    #: ``x1 y1 x2 y2 score class`` in input pixels, best first, every score >= the graph's floor
    detections: list[np.ndarray] | None = None
    #: the IoU threshold those detections were suppressed at
    nms_iou: float | None = None


class PendingBatch(Protocol):
    """A batch handed to the runtime; `wait` blocks until its outputs are ready (GIL released)."""

    def wait(self) -> BatchOutput: ...


@dataclass(frozen=True)
class DoneBatch:
    """A batch that was run synchronously: its outputs are already here."""

    out: BatchOutput

    def wait(self) -> BatchOutput:
        return self.out


@runtime_checkable
class Backend(Protocol):
    """Runs the model on a batch of frames. One instance per inference device.

    Every backend declares what the worker asks of it (no probing at run time): ``depth`` batches
    of its own in flight (0: it runs each batch synchronously, and the worker keeps its own
    ``in_flight``), `submit` to start a batch, `warmup` before the first frame.
    """

    name: str
    device: str
    card: ModelCard
    max_batch: int
    depth: int

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput: ...

    def submit(self, items: Sequence[BatchItem]) -> PendingBatch:
        """Start inference on ``items``; the pending batch's `wait` gives the outputs."""
        ...

    def warmup(self) -> None:
        """Prepare every batch size (a no-op where the runtime needs nothing)."""
        ...

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:
        """Inference only, on an already letterboxed ``(B, H, W, 3)`` BGR u8 batch (benchmarks)."""
        ...

    def close(self) -> None: ...


class SynchronousBackend:
    """Base of the backends that run each batch as it is submitted (TensorRT's, test doubles):
    `submit` is `infer`, already done; nothing to warm up."""

    depth = 0

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def submit(self, items: Sequence[BatchItem]) -> PendingBatch:
        return DoneBatch(self.infer(items))

    def warmup(self) -> None:
        pass


class CpuBatchBackend:
    """Base for CPU runtimes: letterbox frames straight into preallocated u8 batches.

    ``depth`` batches can be in flight at once (`submit`), each in a slot of its own (its u8
    buffer and, in runtimes that run asynchronously, its infer request), so that the host
    work of one batch overlaps the inference of the next. Slots are used in turn: the caller
    waits for a batch before it submits ``depth`` more. `infer` is the synchronous path with a
    buffer of its own.
    """

    name = "cpu"

    def __init__(self, card: ModelCard, max_batch: int, device: str = "CPU", depth: int = 1) -> None:
        self.card = card
        self.max_batch = max_batch
        self.device = device
        self.depth = max(1, int(depth))
        shape = (max_batch, card.input_height, card.input_width, 3)
        self._batch = np.empty(shape, np.uint8)
        self._slots = [np.empty(shape, np.uint8) for _ in range(self.depth)]
        self._next_slot = 0

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:
        if not items:
            raise ValueError("infer: empty batch")
        outs = []
        pre = inf = 0.0
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            t0 = time.perf_counter()
            for i, it in enumerate(chunk):
                letterbox_into(self._batch[i], it.image, it.pixel_format, it.box, it.tile)
            t1 = time.perf_counter()
            outs.append(self.infer_preprocessed(self._batch[: len(chunk)]))
            t2 = time.perf_counter()
            pre += t1 - t0
            inf += t2 - t1
        raw = outs[0] if len(outs) == 1 else np.concatenate(outs, 0)
        return BatchOutput(raw, pre * 1e3, inf * 1e3)

    def submit(self, items: Sequence[BatchItem]) -> PendingBatch:
        """Letterbox ``items`` into the next slot and start its inference; more than ``max_batch``
        items (a tiled frame) run synchronously through `infer`."""
        if not items:
            raise ValueError("submit: empty batch")
        if len(items) > self.max_batch:
            return DoneBatch(self.infer(items))
        slot = self._next_slot
        self._next_slot = (slot + 1) % self.depth
        buf = self._slots[slot]
        t0 = time.perf_counter()
        for i, it in enumerate(items):
            letterbox_into(buf[i], it.image, it.pixel_format, it.box, it.tile)
        return self.start(slot, len(items), (time.perf_counter() - t0) * 1e3)

    def slot_buffer(self, slot: int) -> np.ndarray:
        """The u8 batch of ``slot`` (benchmarks fill it once and `start` it over and over)."""
        return self._slots[slot]

    def start(self, slot: int, n: int, preprocess_ms: float = 0.0) -> PendingBatch:
        """Run the first ``n`` inputs of ``slot``; here synchronously, runtimes with asynchronous
        requests override it."""
        t0 = time.perf_counter()
        raw = self.infer_preprocessed(self._slots[slot][:n])
        return DoneBatch(BatchOutput(raw, preprocess_ms, (time.perf_counter() - t0) * 1e3))

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def warmup(self) -> None:
        """Run every batch size once: runtimes prepare dynamic shapes lazily, and the first
        call at a new size would otherwise stall the first frames of a starting station. (The
        slots' requests share what one request prepared: measured, their first call at a size
        is no slower than their second, with one stream or two.)"""
        self._batch[...] = 114
        for n in range(1, self.max_batch + 1):
            self.infer_preprocessed(self._batch[:n])

    def close(self) -> None:
        pass


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def give_back_freed_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim(0)``; nothing elsewhere).

    A released model's memory is freed into the C heap, which keeps the touched pages of a
    fragmented heap resident; trimming once a recipe is retired returns them (a few ms with the
    GIL released, on the retiring thread).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
