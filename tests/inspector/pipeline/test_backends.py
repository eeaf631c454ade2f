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


@pytest.mark.parametrize("backend,streams", [("openvino", 0), ("openvino", 2), ("openvino", "auto"), ("onnxruntime", 0)])
def test_batches_in_flight_at_once_give_what_one_at_a_time_gives(card, frames, backend: str, streams) -> None:
    kw = {"precision": "f32", "streams": streams} if backend == "openvino" else {}
    be = create_backend(backend, card, max_batch=4, depth=3, **kw)
    items = [BatchItem(img, fmt, Letterbox.fit(img.shape[1], img.shape[0], 320, 320)) for img, fmt in frames]
    want_a, want_b, want_c = be.infer(items[:3]).raw, be.infer(items[1:]).raw, be.infer(items[:2]).raw
    # three slots in flight together (with streams = "auto" the third runs on the two-stream graph);
    # each keeps its own input buffer until it was waited for
    a, b, c = be.submit(items[:3]), be.submit(items[1:]), be.submit(items[:2])
    got_c, got_b, got_a = c.wait(), b.wait(), a.wait()
    assert np.abs(got_a.raw - want_a).max() < 1e-3 and np.abs(got_b.raw - want_b).max() < 1e-3
    assert np.abs(got_c.raw - want_c).max() < 1e-3
    assert got_a.inference_ms > 0 and got_a.preprocess_ms >= 0
    # more items than max_batch (a tiled frame) run at once, split
    assert be.submit(items * 2).wait().raw.shape[0] == 8


def test_auto_streams_give_every_core_to_a_lone_batch_and_two_streams_to_a_queue(card) -> None:
    import time

    from inspector.pipeline.backends.openvino_backend import LOADED_LINGER_NS

    be = create_backend("openvino", card, max_batch=4, depth=3, streams="auto")
    assert be.streams == (1, 2)
    for slot in range(3):
        be.slot_buffer(slot)[:] = 114

    def run(*sizes: int) -> int:
        """Start batches of ``sizes`` at once, wait for them; how many ran on the loaded graph."""
        before = be.loaded_batches
        for p in [be.start(slot, n) for slot, n in enumerate(sizes)]:
            p.wait()
        return be.loaded_batches - before

    assert run(1) == 0  # alone: one stream on every core
    assert run(4, 4) == 0  # one queued behind another: still the one-stream graph
    assert run(4, 4, 4) == 1  # two already inside: the station is loaded, the third goes to a stream of its own
    assert run(4) == 1  # full, just after: a station back to back stays loaded
    assert run(2) == 0  # a half-full batch that finds the runtime idle: the station keeps up
    assert run(4, 4, 4) == 1
    time.sleep(2 * LOADED_LINGER_NS / 1e9)
    assert run(4) == 0  # full, but after a pause
    assert be._running == 0  # every batch left the count, once


def test_fixed_streams_never_switch(card) -> None:
    for streams, want in ((0, (1, 1)), (2, (2, 2))):
        be = create_backend("openvino", card, max_batch=2, depth=3, streams=streams)
        assert be.streams == want
        ps = [be.start(slot, 2) for slot in range(3)]
        for p in ps:
            p.wait()
        assert be.loaded_batches == 0


def test_a_process_that_exits_with_batches_in_flight_is_not_aborted(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import numpy as np\n"
        "from inspector.pipeline.backends import create_backend\n"
        "from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card\n"
        "be = create_backend('openvino', load_card(DEFAULT_MODEL), max_batch=8, depth=2, streams=2)\n"
        "be.slot_buffer(0)[:] = 114; be.slot_buffer(1)[:] = 114\n"
        "a, b = be.start(0, 8), be.start(1, 8)\n"
        "print('submitted', flush=True)\n"  # and exits with both still running, never waited for
    )
    root = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert "submitted" in r.stdout
    assert r.returncode == 0, r.stderr[-500:]
    assert "FATAL" not in r.stderr and "terminate called" not in r.stderr


@pytest.mark.parametrize(("precision", "iou"), [("f32", 0.5), ("auto", 0.5), ("f32", 0.3), ("int8", 0.5)])
def test_detections_decoded_in_the_graph_are_the_hosts_decode_and_nms(card, precision: str, iou: float) -> None:
    """The in-graph decode + class-aware NMS gives the boxes, scores, classes and order of
    ``nms(decode_yolo(raw, 0.05), iou)`` on the same raw output, frame by frame."""
    from inspector.pipeline.postprocess import CONF_FLOOR, decode_yolo, nms

    be = create_backend("openvino", load_card(DEFAULT_MODEL, int8=precision == "int8"), max_batch=8, depth=2,
                        precision=precision, nms_iou=iou)
    box = Letterbox.fit(320, 320, 320, 320)
    frames = [BatchItem(render_part(1_600_000 + i, 320, 320, mono=i % 4 == 3).image,
                        "Mono8" if i % 4 == 3 else "BGR8", box) for i in range(40)]
    frames.append(BatchItem(np.full((320, 320, 3), 114, np.uint8), "BGR8", box))  # nothing at all
    boxes = 0
    for start in range(0, len(frames), 8):
        items = frames[start : start + 8]
        out = be.submit(items).wait()
        assert out.detections is not None and out.nms_iou == iou and len(out.detections) == len(items)
        for raw, got in zip(out.raw, out.detections):
            want = nms(decode_yolo(raw, CONF_FLOOR), iou)
            assert got.dtype == np.float32 and got.shape == want.shape
            assert np.allclose(got, want, atol=1e-4)
            boxes += len(want)
    assert boxes >= 20  # defective parts among them: the comparison is not of empty lists
    assert len(out.detections[-1]) == 0
    # without nms_iou the runtime hands over the raw output only
    plain = create_backend("openvino", card, max_batch=8, precision=precision if precision != "int8" else "f32")
    assert plain.submit(frames[:2]).wait().detections is None


def test_auto_precision_names_what_an_auto_backend_compiles_to(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.pipeline.backends import isa
    from inspector.pipeline.backends.openvino_backend import auto_precision

    card = load_card(DEFAULT_MODEL)
    be = create_backend("openvino", card, max_batch=1, precision="auto")
    said = auto_precision("CPU", card)
    if be.precision == "int8":
        assert said == "int8"
    else:
        hint = be._compiled.get_property("INFERENCE_PRECISION_HINT")
        assert said == hint.to_string() and said in ("f32", "bf16", "f16")
    monkeypatch.setattr(isa, "default_is_f32", lambda: True)  # an emulated AVX2 CPU: f32, or the INT8 IR
    assert auto_precision("CPU", card) == ("int8" if card.int8 is not None and card.int8_gate_passed else "f32")


def _os_threads() -> int:
    import os

    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize("close", [True, False])
def test_a_backend_let_go_is_freed_with_its_runtime_threads(card, close: bool) -> None:
    """Asynchronous batches leave no reference cycle through the runtime's callbacks: a retired recipe's
    backend (closed or merely dropped) frees its compiled models and the runtime threads they ran on."""
    import gc
    import weakref

    def run_and_drop() -> weakref.ref:
        be = create_backend("openvino", card, max_batch=2, depth=2, streams="auto")
        for slot in range(2):
            be.slot_buffer(slot)[:] = 114
        for p in [be.start(0, 2), be.start(1, 2), be.start(0, 1)]:
            p.wait()
        if close:
            be.close()
        return weakref.ref(be)

    run_and_drop()  # the runtime's shared pools exist from here on
    gc.collect()
    before = _os_threads()
    refs = [run_and_drop() for _ in range(3)]
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert _os_threads() <= before


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_closed_backend_runs_nothing(card, backend: str) -> None:
    from inspector.pipeline.backends.base import BackendClosed

    be = create_backend(backend, card, max_batch=2)
    be.close()
    be.close()  # idempotent
    with pytest.raises(BackendClosed, match="closed"):
        be.infer_preprocessed(np.full((1, 320, 320, 3), 114, np.uint8))


def test_the_runtime_finishes_a_batch_without_the_gil(card) -> None:
    """No Python callback runs on the runtime's threads: while a host thread holds the GIL (the post thread
    deciding, a camera copying), a batch still finishes, and its inference time is the runtime's own. With a
    callback, the runtime's thread waited for the GIL before the batch counted as done (and its stream's next
    batch waited with it): inference_ms read the whole second the GIL was held."""
    import sys
    import time

    be = create_backend("openvino", card, max_batch=1, precision="f32", depth=1, streams=0)
    try:
        be.slot_buffer(0)[:] = 114
        be.start(0, 1).wait()  # compiled and warm
        interval = sys.getswitchinterval()
        sys.setswitchinterval(30.0)  # nothing takes the GIL from this thread while it spins
        try:
            p = be.start(0, 1)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 1.0:  # pure Python: the GIL is held throughout
                pass
        finally:
            sys.setswitchinterval(interval)
        out = p.wait()
        assert 0 < out.inference_ms < 700, out.inference_ms
        assert be._running == 0
    finally:
        be.close()
