"""Test doubles for the engine: a backend whose answers the test controls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspector.pipeline.backends.base import BatchItem, BatchOutput
from inspector.pipeline.model_repo import ModelCard

CLASSES = ("scratch", "dent", "crack", "contamination")


def fake_card(size: int = 320) -> ModelCard:
    return ModelCard("fake", Path("."), "fake.onnx", "0" * 64, CLASSES, size, size)


class ScriptedBackend:
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
