"""The GPU path's CPU side: kernel arithmetic (by emulation), layout, build, cache keys, errors.

No GPU is needed. `inspector.pipeline.gpu.emulate` replays the kernel's float32 arithmetic; holding
it to `reference_tensor` here validates what ``preprocess.cu`` computes, and the layout
tests hold the host structs and launch arguments to the ``.cu`` source itself.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from camera.frame_pool import FramePool
from inspector.pipeline.backends import BackendUnavailable, create_backend
from inspector.pipeline.backends.base import BatchItem
from inspector.pipeline.backends.tensorrt_build import (
    PRECISIONS,
    cached_engine,
    calibration_batches,
    default_calibration_frames,
    engine_cache_key,
    write_atomically,
)
from inspector.pipeline.gpu import cuda_device_count, module_installed, parse_cuda_device
from inspector.pipeline.gpu import kernel as K
from inspector.pipeline.gpu.check_kernel import CASES, EmulatedRunner, check_formats, compare, make_items, tolerance
from inspector.pipeline.gpu.emulate import emulate_letterbox, emulate_plan
from inspector.pipeline.gpu.pinned import PinnedMemoryUnavailable, pinned_allocator
from inspector.pipeline.model_repo import ModelCard
from inspector.pipeline.preprocess import PAD_VALUE, PIXEL_FORMATS, FrameFormatError, Letterbox, Tile, reference_tensor
from tests.gpu import FakeHeap, FakeKernel, fake_builder_trt, fake_cuda_and_trt

SOURCE = K.kernel_source()
NO_GPU_STACK = not (module_installed("pycuda") or module_installed("cupy")) and cuda_device_count()[0] == 0


# --------------------------------------------------------------------------- arithmetic (emulation vs reference)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("fmt", PIXEL_FORMATS)
def test_emulated_kernel_matches_reference(fmt: str, fp16: bool) -> None:
    rng = np.random.default_rng(7)
    dtype = np.float16 if fp16 else np.float32
    for in_w, in_h in ((320, 320), (640, 384)):
        items = make_items(fmt, in_w, in_h, rng)  # down/up-scaling, odd sizes, an odd-origin tile
        out = emulate_plan(K.plan_batch(items, in_w, in_h), in_w, in_h, fp16=fp16)
        assert out.dtype == dtype and out.shape == (len(CASES), 3, in_h, in_w)
        for i, it in enumerate(items):
            ref, box = reference_tensor(it.image, fmt, in_w, in_h, it.tile, dtype=dtype)
            assert box == it.box
            err = np.abs(out[i].astype(np.float64) - ref.astype(np.float64))
            assert err.max() <= tolerance(fp16), (fmt, CASES[i], err.max() * 255)
            assert (err == 0).mean() > 0.85  # a level off is the fixed-point exception, not the rule


@pytest.mark.parametrize(("w", "h"), [(640, 480), (1280, 960), (1920, 1080), (320, 320)])
def test_integer_ratio_resizes_are_exact(w: int, h: int) -> None:
    """Halves-up rounding reproduces OpenCV exactly when the scale is an integer."""
    from camera.renderer import render_part

    img = render_part(3_000_000, w, h).image
    got, _ = emulate_letterbox(img, "BGR8", 320, 320)
    ref, _ = reference_tensor(img, "BGR8", 320, 320)
    assert np.array_equal(got, ref)


def test_pad_and_levels_are_bit_exact() -> None:
    """k/255 in float32 division equals the reference's float64 k/255 cast down, for every level."""
    k = np.arange(256)
    assert np.array_equal(np.float32(k) / np.float32(255), (k / 255.0).astype(np.float32))
    img = np.full((100, 300), 7, np.uint8)  # wide: pads top and bottom
    got, box = emulate_letterbox(img, "Mono8", 320, 320)
    ref, _ = reference_tensor(img, "Mono8", 320, 320)
    assert box.pad_y > 0 and np.array_equal(got, ref)
    assert got[0, 0, 0] == np.float32(PAD_VALUE) / np.float32(255)


def test_emulation_honours_the_pad_argument() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    got, _ = emulate_letterbox(img, "BGR8", 320, 320, pad_value=0)
    assert got.max() == 0


# --------------------------------------------------------------------------- shared constants and layout


def test_format_codes_and_rounding_come_from_the_cuda_source() -> None:
    defines = K.parse_defines(SOURCE)
    codes = {k: v for k, v in defines.items() if k.startswith("LB_FMT_")}
    assert len(set(codes.values())) == 5
    assert set(K.FORMAT_CODES.values()) == set(codes.values())
    assert K.FORMAT_CODES["Mono8"] == defines["LB_FMT_GRAY"] and K.FORMAT_CODES["BGRa8"] == defines["LB_FMT_BGRA"]
    assert K.BLOCK == (defines["LB_BLOCK_X"], defines["LB_BLOCK_Y"], 1)
    assert K.ROUND_TO_U8 is bool(defines["LB_ROUND_TO_U8"])
    # every format the station accepts is either a kernel format or demosaiced on the host
    assert all(f in K.FORMAT_CODES or f.startswith("Bayer") for f in PIXEL_FORMATS)


def test_rounding_is_halves_up_in_both() -> None:
    finish = re.search(r"float lb_finish\(float v\) \{(.*?)\n\}", SOURCE, re.DOTALL)
    assert finish is not None and "floorf(__fadd_rn(v, 0.5f))" in finish[1] and "rintf" not in finish[1]
    img = np.array([[0, 1, 2, 3, 4, 5]], np.uint8).repeat(2, 0)  # 6 -> 3 wide: blends of pairs
    box = Letterbox(0.5, 0, 0, 3, 1, 3, 1)
    out = emulate_plan(K.plan_batch([BatchItem(img, "Mono8", box)], 3, 1), 3, 1)
    assert np.array_equal(np.rint(out[0, 0, 0] * 255), [1, 3, 5])  # 0.5 -> 1, 2.5 -> 3, 4.5 -> 5


_C_TO_NUMPY = {"unsigned long long": np.dtype(np.uint64), "int": np.dtype(np.int32), "float": np.dtype(np.float32)}


def test_item_dtype_mirrors_the_cuda_struct() -> None:
    fields = K.parse_struct(SOURCE, "LbItem")
    assert [name for _, name in fields] == list(K.ITEM_DTYPE.names)
    assert [_C_TO_NUMPY[ctype] for ctype, _ in fields] == [K.ITEM_DTYPE.fields[n][0] for n in K.ITEM_DTYPE.names]
    offset = 0
    for ctype, name in fields:  # C layout: natural alignment, no reordering
        size = _C_TO_NUMPY[ctype].itemsize
        offset = -(-offset // size) * size
        assert K.ITEM_DTYPE.fields[name][1] == offset, name
        offset += size
    assert K.ITEM_DTYPE.itemsize == -(-offset // 8) * 8 == 56


def test_kernel_signature_matches_the_launch() -> None:
    assert 'extern "C" __global__ void letterbox_batch(' in SOURCE
    args = K.parse_kernel_signature(SOURCE)
    assert [name for _, name in args] == [name for name, _ in K.KERNEL_ARGS]
    codes = ["P" if "*" in ctype else "i" if ctype.split()[-1] == "int" else "?" for ctype, _ in args]
    assert "".join(codes) == K.PREPARED_SIGNATURE == "PPPiiii"
    assert "LbItem" in args[1][0]


def test_grid_covers_the_output() -> None:
    gx, gy, gz = K.grid_for(5, 320, 250)
    assert gx * K.BLOCK[0] >= 320 > (gx - 1) * K.BLOCK[0]
    assert gy * K.BLOCK[1] >= 250 > (gy - 1) * K.BLOCK[1]
    assert gz == 5


# --------------------------------------------------------------------------- batch plan


def test_tiles_of_one_frame_share_one_upload() -> None:
    img = np.zeros((960, 1280, 3), np.uint8)
    tiles = [Tile(0, 0, 640, 640), Tile(640, 320, 1280, 960)]
    items = [BatchItem(img, "BGR8", Letterbox.fit(640, 640, 320, 320), t) for t in tiles]
    items.append(BatchItem(np.zeros((480, 640), np.uint8), "Mono8", Letterbox.fit(640, 480, 320, 320)))
    plan = K.plan_batch(items, 320, 320)
    assert len(plan.uploads) == 2
    assert list(plan.items["src_offset"]) == [0, 0, plan.uploads[1].offset]
    assert all(u.offset % K.STAGING_ALIGN == 0 for u in plan.uploads)
    assert plan.staging_bytes >= plan.uploads[1].offset + 480 * 640
    assert list(plan.items["tile_x0"]) == [0, 640, 0] and list(plan.items["src_pitch"]) == [3840, 3840, 640]


def test_bayer_tiles_are_demosaiced_per_item_on_the_host() -> None:
    img = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    tiles = [Tile(0, 0, 320, 320), Tile(33, 17, 353, 337)]
    items = [BatchItem(img, "BayerRG8", Letterbox.fit(320, 320, 320, 320), t) for t in tiles]
    plan = K.plan_batch(items, 320, 320)
    assert len(plan.uploads) == 2 and all(u.array.shape == (320, 320, 3) for u in plan.uploads)
    assert set(plan.items["format"]) == {K.FORMAT_CODES["BGR8"]} and set(plan.items["tile_x0"]) == {0}


def test_non_contiguous_frames_are_made_contiguous() -> None:
    base = np.random.default_rng(1).integers(0, 256, (200, 400, 3), dtype=np.uint8)
    view = base[:, ::2]  # strided columns
    plan = K.plan_batch([BatchItem(view, "BGR8", Letterbox.fit(200, 200, 320, 320))], 320, 320)
    assert plan.uploads[0].array.flags.c_contiguous and plan.items["src_pitch"][0] == 600
    got = emulate_plan(plan, 320, 320)[0]
    ref, _ = reference_tensor(view, "BGR8", 320, 320)
    assert np.abs(got - ref).max() <= tolerance(False)


@pytest.mark.parametrize(
    ("item", "error"),
    [
        (BatchItem(np.zeros((10, 10, 3), np.uint8), "BGR8", Letterbox.fit(10, 10, 640, 640)), ValueError),
        (
            BatchItem(np.zeros((10, 10, 3), np.uint8), "BGR8", Letterbox.fit(10, 10, 320, 320), Tile(5, 5, 20, 9)),
            ValueError,
        ),
        (BatchItem(np.zeros((10, 10, 3), np.uint8), "YUV422", Letterbox.fit(10, 10, 320, 320)), FrameFormatError),
        (BatchItem(np.zeros((10, 10), np.uint8), "RGB8", Letterbox.fit(10, 10, 320, 320)), FrameFormatError),
    ],
    ids=["wrong-input-size", "tile-outside", "unknown-format", "wrong-channels"],
)
def test_plan_refuses_bad_items(item: BatchItem, error: type) -> None:
    with pytest.raises(error):
        K.plan_batch([item], 320, 320)


def test_empty_plan() -> None:
    plan = K.plan_batch([], 320, 320)
    assert plan.uploads == () and len(plan.items) == 0 and plan.staging_bytes == 0


# --------------------------------------------------------------------------- the check script, dry-run


def test_check_script_passes_on_the_emulation() -> None:
    assert check_formats(EmulatedRunner(), formats=("BGR8", "Mono8", "BayerGB8"), input_sizes=((640, 384),))


def test_check_script_catches_unwritten_and_wrong_elements() -> None:
    items = make_items("RGB8", 320, 320, np.random.default_rng(2))[:2]
    out, _ = EmulatedRunner().letterbox(items, 320, 320, fp16=False)
    assert compare(out, items, 320, 320, False)[0]
    poisoned = out.copy()
    poisoned[1, 2, 300, 3] = np.nan
    ok, line = compare(poisoned, items, 320, 320, False)
    assert not ok and "1 elements never written" in line
    wrong = out.copy()
    wrong[0, 0, 10, 10] += 2 / 255
    assert not compare(wrong, items, 320, 320, False)[0]


# --------------------------------------------------------------------------- compilers (when present here)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_nvcc_compiles_to_ptx_without_fma_contraction(tmp_path: Path) -> None:
    ptx = tmp_path / "pp.ptx"
    subprocess.run(["nvcc", "-ptx", "-arch=sm_75", "-o", str(ptx), str(K.SOURCE_PATH)], check=True, capture_output=True)
    text = ptx.read_text()
    entry = re.search(r"\.entry letterbox_batch\((.*?)\)", text, re.DOTALL)
    assert entry is not None
    assert re.findall(r"\.param \.(\w+)", entry[1]) == ["u64", "u64", "u64", "u32", "u32", "u32", "u32"]
    assert "fma" not in text  # explicit _rn intrinsics: what the emulation assumes
    assert "cvt.rn.f16.f32" in text


@pytest.mark.skipif(not module_installed("cuda"), reason="cuda-python (NVRTC bindings) is not installed")
def test_nvrtc_compiles_without_include_paths() -> None:
    """CuPy's route: NVRTC; without the toolkit headers the inline-PTX fp16 store is used."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc")
    err, prog = nvrtc.nvrtcCreateProgram(SOURCE.encode(), b"preprocess.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    (err,) = nvrtc.nvrtcCompileProgram(prog, 1, [b"--gpu-architecture=compute_75"])
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode()
    _, size = nvrtc.nvrtcGetPTXSize(prog)
    ptx = b" " * size
    nvrtc.nvrtcGetPTX(prog, ptx)
    assert b".entry letterbox_batch(" in ptx and b"cvt.rn.f16.f32" in ptx and b"fma" not in ptx


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_build_fatbin_writes_a_matching_manifest(tmp_path: Path) -> None:
    out = K.build_fatbin(tmp_path / "pp.fatbin", archs=(90,), ptx_arch=None)
    assert out.stat().st_size > 0
    assert K.prebuilt_matches(out) and not K.prebuilt_matches(out, SOURCE + "\n// edited")
    assert not K.prebuilt_matches(tmp_path / "missing.fatbin")


def test_fatbin_command_covers_turing_to_hopper() -> None:
    cmd = " ".join(K.fatbin_command(Path("x.fatbin")))
    for sm in (75, 80, 86, 89, 90):
        assert f"arch=compute_{sm},code=sm_{sm}" in cmd
    assert "code=compute_90" in cmd and "-fatbin" in cmd


def test_build_fatbin_without_nvcc_says_so(tmp_path: Path) -> None:
    with pytest.raises(K.KernelBuildError, match="not found on PATH"):
        K.build_fatbin(tmp_path / "x.fatbin", nvcc="nvcc-that-does-not-exist")


# --------------------------------------------------------------------------- engine cache key


KEY_ARGS = ("NVIDIA H100 80GB HBM3", (9, 0), "10.3.0.26", "3e53b8d188db4203" + "0" * 48, 8, "fp16")


def test_engine_cache_key_is_stable() -> None:
    key = engine_cache_key(*KEY_ARGS, input_size=(320, 320))
    assert key == engine_cache_key(*KEY_ARGS, input_size=(320, 320))
    # a change here orphans every cached engine: make it on purpose, never by accident
    assert key == "3e53b8d188db-nvidia-h100-80gb-hbm3-sm90-trt10.3.0.26-b8-fp16-320x320-a66cf252b16da33a.engine"
    assert re.fullmatch(r"[a-z0-9.\-]+\.engine", key) and len(key) < 200


@pytest.mark.parametrize(
    "change",
    [
        {0: "NVIDIA H200"},
        {1: (8, 9)},
        {2: "10.4.0.26"},
        {3: "ffff" + "0" * 60},
        {4: 16},
        {5: "int8"},
    ],
    ids=["gpu", "cc", "trt", "onnx", "batch", "precision"],
)
def test_engine_cache_key_changes_with_every_field(change: dict[int, object]) -> None:
    args = list(KEY_ARGS)
    for i, v in change.items():
        args[i] = v
    assert engine_cache_key(*args) != engine_cache_key(*KEY_ARGS)  # type: ignore[arg-type]


def test_engine_cache_keys_are_unique_across_a_grid() -> None:
    keys = {
        engine_cache_key(gpu, cc, "10.3.0", "ab" * 32, b, p, input_size=size)
        for gpu, cc in (("NVIDIA A100", (8, 0)), ("NVIDIA L4", (8, 9)))
        for b in (1, 8)
        for p in PRECISIONS
        for size in ((320, 320), (640, 640), None)
    }
    assert len(keys) == 2 * 2 * 3 * 3


@pytest.mark.parametrize(
    "args",
    [
        (*KEY_ARGS[:5], "bf16"),
        (*KEY_ARGS[:4], 0, "fp16"),
        (*KEY_ARGS[:3], "not-a-sha", 8, "fp16"),
    ],
    ids=["precision", "batch", "sha"],
)
def test_engine_cache_key_refuses_bad_fields(args: tuple) -> None:
    with pytest.raises(ValueError):
        engine_cache_key(*args)


def test_cached_engine_lookup(tmp_path: Path) -> None:
    key = engine_cache_key(*KEY_ARGS)
    assert cached_engine(tmp_path, key) is None
    (tmp_path / key).write_bytes(b"")
    assert cached_engine(tmp_path, key) is None  # an empty (interrupted) file is not an engine
    write_atomically(tmp_path / key, b"engine bytes")
    assert cached_engine(tmp_path, key) == tmp_path / key
    assert [p.name for p in tmp_path.iterdir()] == [key]  # no temporary left behind


def test_calibration_batches_are_letterboxed_reference_tensors() -> None:
    frames = list(default_calibration_frames(3, 160, 120))
    from camera.renderer import render_part

    assert np.array_equal(frames[0], render_part(3_000_000, 160, 120).image)  # held-out seeds
    assert frames[2].ndim == 3
    batches = list(calibration_batches(frames, 96, 64, batch=2))
    assert len(batches) == 1 and batches[0].shape == (2, 3, 64, 96) and batches[0].dtype == np.float32
    assert np.array_equal(batches[0][1], reference_tensor(frames[1], "BGR8", 96, 64)[0])


# --------------------------------------------------------------------------- availability and errors


CARD = ModelCard("m", Path("/nonexistent"), "model.onnx", "0" * 64, ("a",), 320, 320)


@pytest.mark.skipif(not NO_GPU_STACK, reason="this machine has a GPU stack")
def test_tensorrt_backend_says_what_is_missing() -> None:
    from inspector.pipeline.backends.tensorrt_backend import TensorRtBackend

    with pytest.raises(BackendUnavailable) as exc:
        TensorRtBackend(CARD, 4, "cuda:0")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("backend tensorrt: needs the gpu extra: ")
    for part in ("tensorrt (not installed)", "pycuda (not installed)", "a CUDA device (none found)"):
        if part.split()[0] in ("tensorrt", "pycuda") and module_installed(part.split()[0]):
            continue
        assert part in msg
    with pytest.raises(BackendUnavailable, match="^backend tensorrt: "):
        create_backend("tensorrt", CARD, max_batch=4, device="cuda:0")


def test_tensorrt_backend_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspector.pipeline.backends.tensorrt_backend as tb

    with pytest.raises(BackendUnavailable, match="'CPU' is not a CUDA device"):
        tb.TensorRtBackend(CARD, 4, "CPU")
    monkeypatch.setattr(tb, "missing_requirements", lambda modules: ["a CUDA device (none found)"])
    assert tb.unavailable_reason("cuda:0") == "backend tensorrt: needs a CUDA device (none found)"
    monkeypatch.setattr(tb, "missing_requirements", lambda modules: [])
    monkeypatch.setattr(tb, "cuda_device_count", lambda: (2, ""))
    assert tb.unavailable_reason("cuda:3") == "backend tensorrt: device cuda:3 does not exist (2 CUDA device(s) here)"
    assert tb.unavailable_reason("1") is None
    with pytest.raises(ValueError, match="precision"):
        tb.TensorRtBackend(CARD, 4, "cuda:0", precision="bf16")


@pytest.mark.parametrize(
    ("spec", "index"), [("cuda:0", 0), ("cuda:3", 3), ("CUDA", 0), ("gpu:1", 1), ("2", 2), (" cuda:1 ", 1), (0, 0)]
)
def test_parse_cuda_device(spec: str | int, index: int) -> None:
    assert parse_cuda_device(spec) == index


@pytest.mark.parametrize("spec", ["CPU", "cuda:", "cuda:-1", "npu:0", "", -1])
def test_parse_cuda_device_refuses(spec: str | int) -> None:
    with pytest.raises(ValueError):
        parse_cuda_device(spec)


@pytest.mark.skipif(not NO_GPU_STACK, reason="this machine has a GPU stack")
def test_pinned_allocator_without_cuda() -> None:
    with pytest.raises(PinnedMemoryUnavailable, match="pinned memory: needs .*pycuda"):
        pinned_allocator()
    alloc = pinned_allocator(fallback=True)
    pool = FramePool("cam", 3, (48, 64, 3), allocator=alloc)
    got = pool.acquire_slot()
    assert got is not None and got[1].shape == (48, 64, 3) and got[1].dtype == np.uint8


@pytest.mark.skipif(not NO_GPU_STACK, reason="this machine has a GPU stack")
def test_load_kernel_without_cuda_says_why() -> None:
    with pytest.raises(K.KernelUnavailable, match="neither pycuda nor cupy"):
        K.load_kernel()


def test_shipped_fatbin_is_current() -> None:
    """A prebuilt fatbin in the package must come from this preprocess.cu (rebuild it after edits)."""
    if not K.PREBUILT_FATBIN.exists():
        pytest.skip("no prebuilt fatbin shipped")
    assert K.prebuilt_matches(K.PREBUILT_FATBIN), "run: python -m inspector.pipeline.gpu.kernel build-fatbin"


# --------------------------------------------------------------------------- the backend's data flow, on fakes
# Fake pycuda and TensorRT modules over a simulated device memory: the emulation plays the
# kernel and ONNX Runtime plays the engine. This checks TensorRtBackend's own logic (offsets,
# bindings, dtypes, chunking, teardown) on the CPU; it cannot check the real APIs.


class _ReplayGraph:
    """Stands in for CudaGraph: 'replays' by calling the captured enqueue again."""

    captured: ClassVar[list[int]] = []

    def __init__(self, enqueue: object) -> None:
        self.enqueue = enqueue

    @classmethod
    def capture(cls, stream: int, enqueue: object) -> _ReplayGraph:
        cls.captured.append(stream)
        return cls(enqueue)

    def launch(self, stream: int) -> None:
        assert self.enqueue()  # type: ignore[operator]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("in_dtype", "graphs"),
    [(np.float16, False), (np.float32, False), (np.float16, True)],
    ids=["fp16-input", "fp32-input", "fp16-cuda-graphs"],
)
def test_tensorrt_backend_data_flow_on_fakes(
    in_dtype: type, graphs: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inspector.pipeline.backends.tensorrt_backend as tb
    from inspector.pipeline.backends.onnxruntime_backend import OnnxRuntimeBackend
    from inspector.pipeline.model_repo import ModelError, load_card

    try:  # the model has dynamic H/W: a non-square input catches swapped axes
        card = dataclasses.replace(load_card("defect-yolo11p-320"), input_width=640, input_height=384)
    except ModelError as exc:
        pytest.skip(f"no shipped model: {exc}")
    ort_be = OnnxRuntimeBackend(card, 8)
    heap = FakeHeap()
    cuda, trt = fake_cuda_and_trt(heap, in_dtype, ort_be)
    pkg = types.ModuleType("pycuda")
    pkg.driver = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    engine_file = tmp_path / "fake.engine"
    engine_file.write_bytes(b"x")
    monkeypatch.setattr(tb, "unavailable_reason", lambda device: None)
    monkeypatch.setattr(tb, "build_engine", lambda *a, **k: engine_file)
    monkeypatch.setattr(tb, "trt_logger", lambda: None)
    monkeypatch.setattr(tb, "load_kernel", lambda loader: FakeKernel(heap))
    monkeypatch.setattr(tb, "CudaGraph", _ReplayGraph)
    _ReplayGraph.captured = []

    rng = np.random.default_rng(3)
    items = [it for fmt in ("BGR8", "BayerGR8") for it in make_items(fmt, 640, 384, rng)[3:]]  # 6 items, tiles
    with tb.TensorRtBackend(card, 4, "cuda:0", cuda_graphs=graphs) as be:  # max_batch 4: two chunks
        assert be.device == "cuda:0" and be._fp16 == (in_dtype == np.float16)
        for _ in range(3 if graphs else 1):  # graphs: captured after the 2nd batch of a size, then replayed
            out = be.infer(items)
        again = be.infer_preprocessed(np.zeros((2, 384, 640, 3), np.uint8))
        assert sorted(be._graphs) == ([2, 4] if graphs else [])
    assert len(_ReplayGraph.captured) == (2 if graphs else 0)
    expected_input = emulate_plan(K.plan_batch(items, 640, 384), 640, 384, fp16=in_dtype == np.float16)
    expected = ort_be.run_tensor(expected_input.astype(np.float32))
    assert out.raw.shape == (6, 8, 5040) and out.raw.dtype == np.float32
    np.testing.assert_allclose(out.raw, expected, atol=1e-4)
    assert out.preprocess_ms > 0 and out.inference_ms == pytest.approx(0.5)  # two chunks x 0.25 ms
    assert again.shape == (2, 8, 5040)
    with pytest.raises(RuntimeError, match="closed"):
        be.infer(items)
    be.close()  # idempotent


@pytest.mark.parametrize("int8", [False, True], ids=["fp16", "int8"])
def test_build_engine_flow_on_fakes(int8: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import inspector.pipeline.backends.tensorrt_build as tbuild

    calls: list[tuple] = []
    heap = FakeHeap(1 << 20)
    cuda, _ = fake_cuda_and_trt(heap, np.float32, None)
    cuda.memcpy_htod = cuda.memcpy_htod_async  # type: ignore[attr-defined]
    pkg = types.ModuleType("pycuda")
    pkg.driver = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_trt(calls))
    monkeypatch.setattr(tbuild, "trt_logger", lambda: None)
    onnx = tmp_path / "model" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"not really onnx")
    frames = [np.zeros((48, 64, 3), np.uint8)] * 17  # two full calibration batches of 8
    build = lambda: tbuild.build_engine(
        onnx, max_batch=6, int8=int8, calibration_frames=iter(frames), cache_dir=tmp_path / "c", input_size=(64, 96)
    )
    path = build()
    assert path.read_bytes() == b"serialized engine" and path.parent == tmp_path / "c"
    assert re.search(
        rf"-fake-gpu-sm90-trt10\.9\.0\.34-b6-{'int8' if int8 else 'fp16'}-96x64-[0-9a-f]{{16}}\.engine$", path.name
    )
    assert ("profile", "images", (1, 3, 64, 96), (6, 3, 64, 96), (6, 3, 64, 96)) in calls
    assert ("flag", "FP16") in calls and (("flag", "INT8") in calls) == int8
    # fp16: the kernel writes fp16 straight into the input; int8 calibrates on float32 batches of 8
    assert calls[-1] == (("build", "float", 2) if int8 else ("build", "half", None))
    n = len(calls)
    assert build() == path and len(calls) == n  # second call: the cache, no build
    with pytest.raises(tbuild.EngineBuildError, match="dynamic input size"):
        tbuild.build_engine(onnx, max_batch=2, cache_dir=tmp_path / "c")  # no card.toml, no input_size


def test_build_engine_without_tensorrt_says_so(tmp_path: Path) -> None:
    from inspector.pipeline.backends.tensorrt_build import EngineBuildError, build_engine

    if module_installed("tensorrt"):
        pytest.skip("TensorRT is installed here")
    with pytest.raises(EngineBuildError, match="tensorrt: cannot build engines here"):
        build_engine(tmp_path / "model.onnx", max_batch=4)


def test_cuda_graph_capture_on_a_fake_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.pipeline.backends.tensorrt_backend import CudaGraph

    calls: list[str] = []
    ok = types.SimpleNamespace(name="CUDA_SUCCESS")
    cu = types.SimpleNamespace(
        CUresult=types.SimpleNamespace(CUDA_SUCCESS=ok),
        CUstreamCaptureMode=types.SimpleNamespace(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL=1),
        cuStreamBeginCapture=lambda s, m: (calls.append(f"begin {s} {m}"), ok)[1:],
        cuStreamEndCapture=lambda s: (calls.append("end"), ok, "graph")[1:],
        cuGraphInstantiate=lambda g, f: (calls.append(f"instantiate {g}"), ok, "exec")[1:],
        cuGraphLaunch=lambda e, s: (calls.append(f"launch {e} {s}"), ok)[1:],
        cuGraphExecDestroy=lambda e: calls.append(f"destroy {e}"),
        cuGraphDestroy=lambda g: calls.append(f"destroy {g}"),
    )
    monkeypatch.setattr(CudaGraph, "_driver", staticmethod(lambda: cu))
    with CudaGraph.capture(7, lambda: calls.append("enqueue") or True) as graph:
        graph.launch(7)
    assert calls == [
        "begin 7 1",
        "enqueue",
        "end",
        "instantiate graph",
        "launch exec 7",
        "destroy exec",
        "destroy graph",
    ]
    calls.clear()
    with pytest.raises(RuntimeError, match="enqueue failed"):
        CudaGraph.capture(7, lambda: False)
    assert calls == ["begin 7 1", "end", "destroy graph"]  # capture always ended, graph freed
