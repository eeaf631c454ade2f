"""The CPU backends against the reference arithmetic, on the shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from camera.renderer import render_part
from inspector.pipeline.backends import BackendUnavailable, BatchItem, create_backend
from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card
from inspector.pipeline.preprocess import Letterbox, reference_tensor


@pytest.fixture(scope="module")
def card():
    return load_card(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def frames():
    out = []
    for i, (w, h, mono) in enumerate([(320, 320, False), (320, 320, True), (400, 300, False), (256, 384, True)]):
        img = render_part(1_500_000 + i, w, h, mono=mono, ok_share=0.0).image
        out.append((img, "Mono8" if mono else "BGR8"))
    return out


def reference_outputs(card, frames) -> np.ndarray:
    ort = create_backend("onnxruntime", card, max_batch=8)
    ref = np.stack([reference_tensor(img, fmt, card.input_width, card.input_height)[0] for img, fmt in frames])
    return ort.run_tensor(ref)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backend_with_its_preprocessing_matches_the_reference(card, frames, backend: str) -> None:
    ref = reference_outputs(card, frames)
    kw = {"precision": "f32"} if backend == "openvino" else {}
    be = create_backend(backend, card, max_batch=8, **kw)
    items = [BatchItem(img, fmt, Letterbox.fit(img.shape[1], img.shape[0], card.input_width, card.input_height))
             for img, fmt in frames]
    out = be.infer(items)
    assert out.raw.shape == ref.shape
    # class scores within 1e-3, boxes within a tenth of a pixel
    assert np.abs(out.raw[:, 4:] - ref[:, 4:]).max() < 1e-3
    assert np.abs(out.raw[:, :4] - ref[:, :4]).max() < 0.1
    assert out.preprocess_ms >= 0 and out.inference_ms > 0


def test_batches_larger_than_max_batch_are_split(card, frames) -> None:
    be = create_backend("openvino", card, max_batch=2)
    items = [BatchItem(img, fmt, Letterbox.fit(img.shape[1], img.shape[0], 320, 320)) for img, fmt in frames] * 2
    assert be.infer(items).raw.shape[0] == 8


def test_unknown_backend_and_device(card) -> None:
    with pytest.raises(ValueError, match="unknown 'tflite'"):
        create_backend("tflite", card, max_batch=1)
    with pytest.raises(BackendUnavailable, match="NOPE"):
        create_backend("openvino", card, max_batch=1, device="NOPE")
