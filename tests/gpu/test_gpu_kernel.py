"""The fused preprocessing kernel on a real GPU: every format and precision vs the reference.

Marked ``gpu``; skipped (with the reason) without pycuda or CuPy and a CUDA device.
The same checks, with a printed report and the end-to-end model route, are
``python -m inspector.pipeline.gpu.check_kernel``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from inspector.pipeline.gpu import module_installed
from inspector.pipeline.gpu.check_kernel import GpuRunner, compare, make_items
from inspector.pipeline.gpu.emulate import emulate_plan
from inspector.pipeline.gpu.kernel import KernelUnavailable, plan_batch
from inspector.pipeline.preprocess import PIXEL_FORMATS

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def runner() -> Iterator[GpuRunner]:
    try:
        r = GpuRunner("auto")
    except (KernelUnavailable, ImportError) as exc:
        pytest.skip(f"needs pycuda or CuPy and a CUDA device: {exc}")
    with r:
        yield r


@pytest.mark.parametrize("in_size", [(320, 320), (640, 384)], ids=["320x320", "640x384"])
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("fmt", PIXEL_FORMATS)
def test_kernel_matches_reference(runner: GpuRunner, fmt: str, fp16: bool, in_size: tuple[int, int]) -> None:
    in_w, in_h = in_size
    items = make_items(fmt, in_w, in_h, np.random.default_rng(11))
    out, _ = runner.letterbox(items, in_w, in_h, fp16=fp16)  # output poisoned with NaN first
    runner.release()
    ok, line = compare(out, items, in_w, in_h, fp16)
    assert ok, line


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_mixed_batch_is_bit_exact_with_the_emulation(runner: GpuRunner, fp16: bool) -> None:
    rng = np.random.default_rng(12)
    items = [make_items(fmt, 320, 320, rng)[k % 6] for k, fmt in enumerate(PIXEL_FORMATS)]
    out, _ = runner.letterbox(items, 320, 320, fp16=fp16)
    runner.release()
    emu = emulate_plan(plan_batch(items, 320, 320), 320, 320, fp16=fp16)
    bits = np.uint16 if fp16 else np.uint32
    assert np.array_equal(out.view(bits), emu.view(bits))


def test_pad_argument(runner: GpuRunner) -> None:
    items = make_items("BGR8", 320, 320, np.random.default_rng(13))[:1]  # 640x480: pads top/bottom
    out, _ = runner.letterbox(items, 320, 320, fp16=False, pad_value=0)
    runner.release()
    assert out[0, :, 0, :].max() == 0.0


@pytest.mark.skipif(not module_installed("tensorrt"), reason="TensorRT is not installed")
def test_tensorrt_backend_matches_the_cpu_path() -> None:
    from inspector.pipeline.backends import create_backend
    from inspector.pipeline.backends.base import BatchItem
    from inspector.pipeline.model_repo import load_card
    from inspector.pipeline.preprocess import Letterbox

    card = load_card("defect-yolo11p-320")
    rng = np.random.default_rng(14)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)]
    items = [BatchItem(f, "BGR8", Letterbox.fit(640, 480, 320, 320)) for f in frames]
    with create_backend("tensorrt", card, max_batch=4, device="cuda:0") as trt_be:  # type: ignore[attr-defined]
        got = trt_be.infer(items)
    cpu = create_backend("onnxruntime", card, max_batch=4).infer(items)
    assert got.raw.shape == cpu.raw.shape and got.raw.dtype == np.float32
    assert np.abs(got.raw[:, 4:] - cpu.raw[:, 4:]).max() < 0.05  # class scores (fp16 engine)
