"""Test doubles for the engine: a backend whose answers the test controls."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspector.pipeline.backends.base import BatchItem, BatchOutput, SynchronousBackend
from inspector.pipeline.model_repo import ModelCard

CLASSES = ("scratch", "dent", "crack", "contamination")


def fake_card(size: int = 320) -> ModelCard:
    return ModelCard("fake", Path("."), "fake.onnx", "0" * 64, CLASSES, size, size)


class ScriptedBackend(SynchronousBackend):
    """Reports one 'dent' (score 0.9) at input pixels (100..120, 100..120) for every item
    whose frame's top-left pixel is 255; nothing otherwise. Records batch sizes."""

    name = "fake"
    device = "CPU"

    def __init__(self, max_batch: int = 8, fail: bool = False) -> None:
        self.card = fake_card()
        self.max_batch = max_batch
        self.batches: list[int] = []
        self.fail = fail

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:
        if self.fail:
            raise RuntimeError("device lost")
        self.batches.append(len(items))
        raw = np.zeros((len(items), 4 + len(CLASSES), 16), np.float32)
        for i, it in enumerate(items):
            img = it.image if it.tile is None else it.image[it.tile.y0 :, it.tile.x0 :]
            if int(img.reshape(-1)[0]) == 255:
                raw[i, :4, 0] = [110, 110, 20, 20]
                raw[i, 4 + 1, 0] = 0.9
        return BatchOutput(raw, 0.1, 1.0)

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch_u8), 8, 16), np.float32)

    def close(self) -> None:
        pass


class GatedBackend(ScriptedBackend):
    """`ScriptedBackend` with `submit`: each batch's outputs come only when the test opens its gate
    (``release``), so a test sees which batches were in flight at once. ``fail_at``: the
    batch numbers (0-based) whose wait raises, as a device error does."""

    def __init__(self, depth: int = 2, fail_at: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.depth = depth
        self.fail_at = fail_at
        self.submitted = 0
        self.gates: list[threading.Event] = []
        self._lock = threading.Lock()

    def submit(self, items: Sequence[BatchItem]) -> _Gated:
        out = self.infer(items)
        with self._lock:
            gate = threading.Event()
            self.gates.append(gate)
            n = self.submitted
            self.submitted += 1
        return _Gated(out, gate, n in self.fail_at)

    def release(self, n: int, timeout: float = 5.0) -> None:
        """Open the gate of batch ``n`` (waiting until it was submitted)."""
        deadline = time.monotonic() + timeout
        while len(self.gates) <= n:
            if time.monotonic() > deadline:
                raise AssertionError(f"batch {n} was never submitted ({self.submitted} were)")
            time.sleep(0.005)
        self.gates[n].set()


class _Gated:
    def __init__(self, out: BatchOutput, gate: threading.Event, fail: bool) -> None:
        self._out, self._gate, self._fail = out, gate, fail

    def wait(self) -> BatchOutput:
        if not self._gate.wait(10):
            raise AssertionError("gate never opened")
        if self._fail:
            raise RuntimeError("device lost")
        return self._out
