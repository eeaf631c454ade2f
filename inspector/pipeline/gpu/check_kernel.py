"""Verify the fused preprocessing kernel on a real GPU (run this in a GPU session).

    python -m inspector.pipeline.gpu.check_kernel                  # pycuda if installed, else CuPy
    python -m inspector.pipeline.gpu.check_kernel --loader cupy    # no pycuda needed (NVRTC)
    python -m inspector.pipeline.gpu.check_kernel --skip-model     # kernel checks only

1. **Kernel vs reference.** For every pixel format (Mono8, RGB8, BGR8, RGBa8, BGRa8,
   Bayer RG/GR/GB/BG) and both output precisions, one launch per (format, precision,
   input size) carries random frames of several sizes (down- and upscaling, odd
   sizes, a tile with an odd origin) into a square and a non-square input; one more
   launch mixes all formats. The output is poisoned with NaN first, so an element the
   kernel does not write fails. Every element must be within 1/255 of
   `reference_tensor` (fp16: plus one fp16 step at 1.0, 2^-11, since k/255 is not
   representable). Bit-exactness against `inspector.pipeline.gpu.emulate` is reported too.
2. **The other route, end to end** (GPUs without TensorRT): the kernel's device
   buffer goes into ONNX Runtime running the shipped model: zero-copy through an
   IOBinding on the device pointer when the CUDAExecutionProvider exists, else
   copied to the host and run by ORT on the CPU (the route taken is printed). Its
   detections are compared with the CPU station path (OpenVINO, else ORT).

Exit status 0 when everything passes. Output is a plain report on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Self

import cv2
import numpy as np

from inspector.pipeline.backends.base import BatchItem
from inspector.pipeline.gpu import DeviceContext, cuda_device_count, module_installed
from inspector.pipeline.gpu.emulate import emulate_plan
from inspector.pipeline.gpu.kernel import KernelUnavailable, load_kernel, plan_batch
from inspector.pipeline.preprocess import PAD_VALUE, PIXEL_FORMATS, Letterbox, Tile, reference_tensor

#: (width, height, tile) of the frames in each launch.
CASES: tuple[tuple[int, int, Tile | None], ...] = (
    (640, 480, None),
    (333, 251, None),
    (1920, 1080, None),
    (200, 120, None),
    (157, 413, None),
    (1280, 960, Tile(37, 51, 537, 451)),
)
INPUT_SIZES: tuple[tuple[int, int], ...] = ((320, 320), (640, 384))
FP16_STEP = 2.0**-11


def tolerance(fp16: bool) -> float:
    """Largest allowed |kernel - reference| per element."""
    return 1 / 255 + (FP16_STEP if fp16 else 1e-6)


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def make_frame(fmt: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A random u8 frame of ``fmt`` (noise: the hardest case for resize rounding)."""
    ch = {"RGB8": 3, "BGR8": 3, "RGBa8": 4, "BGRa8": 4}.get(fmt, 1)
    return rng.integers(0, 256, (h, w, ch) if ch > 1 else (h, w), dtype=np.uint8)


def make_items(fmt: str, in_w: int, in_h: int, rng: np.random.Generator) -> list[BatchItem]:
    """One item per `CASES` entry, letterboxed as the scheduler would."""
    items = []
    for w, h, tile in CASES:
        img = make_frame(fmt, w, h, rng)
        rw, rh = (tile.width, tile.height) if tile else (w, h)
        items.append(BatchItem(img, fmt, Letterbox.fit(rw, rh, in_w, in_h), tile))
    return items


class GpuRunner:
    """Device memory and the loaded kernel, through pycuda or CuPy (checks and benchmarks).

    Args:
        loader: ``pycuda``, ``cupy`` or ``auto`` (pycuda when installed).
        device: CUDA device index.
    """

    def __init__(self, loader: str = "auto", device: int = 0) -> None:
        if loader == "auto":
            loader = "pycuda" if module_installed("pycuda") else "cupy"
        if not module_installed(loader):
            raise KernelUnavailable(f"{loader} is not installed (pycuda, or CuPy as the fallback, is needed)")
        count, why = cuda_device_count()
        if device >= count:
            raise KernelUnavailable(f"no CUDA device {device} ({why or f'{count} device(s)'})")
        self.loader = loader
        self._keep: list[Any] = []
        self._stack = ExitStack()
        if loader == "pycuda":
            import pycuda.driver as cuda

            self._cuda: Any = cuda
            dc = self._stack.enter_context(DeviceContext(device))
            self._stack.enter_context(dc.active())  # current for this runner's life (a script)
            self.device_name = dc.name
            self.compute_capability = dc.compute_capability
        else:
            import cupy

            self._cupy: Any = cupy
            cupy.cuda.Device(device).use()
            props = cupy.cuda.runtime.getDeviceProperties(device)
            self.device_name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            self.compute_capability = (int(props["major"]), int(props["minor"]))
        self.kernel = load_kernel(loader)

    def alloc(self, nbytes: int) -> int:
        """Device memory kept until `release`; returns its address."""
        if self.loader == "pycuda":
            buf = self._cuda.mem_alloc(max(nbytes, 1))
            self._keep.append(buf)
            return int(buf)
        mem = self._cupy.cuda.alloc(max(nbytes, 1))
        self._keep.append(mem)
        return int(mem.ptr)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        if self.loader == "pycuda":
            self._cuda.memcpy_htod(ptr, host)
        else:
            rt = self._cupy.cuda.runtime
            rt.memcpy(ptr, host.ctypes.data, host.nbytes, rt.memcpyHostToDevice)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        if self.loader == "pycuda":
            self._cuda.memcpy_dtoh(host, ptr)
        else:
            rt = self._cupy.cuda.runtime
            rt.memcpy(host.ctypes.data, ptr, host.nbytes, rt.memcpyDeviceToHost)

    def htod_async(self, ptr: int, host: np.ndarray) -> None:
        """Enqueue a copy on the default stream (true async only from pinned ``host``)."""
        if self.loader == "pycuda":
            self._cuda.memcpy_htod_async(ptr, host)
        else:
            rt = self._cupy.cuda.runtime
            rt.memcpyAsync(ptr, host.ctypes.data, host.nbytes, rt.memcpyHostToDevice, 0)

    def pinned_copy(self, host: np.ndarray) -> np.ndarray:
        """A page-locked copy of ``host``."""
        if self.loader == "pycuda":
            arr = self._cuda.pagelocked_empty(host.shape, host.dtype)
        else:
            import cupyx

            arr = cupyx.empty_pinned(host.shape, host.dtype)
        arr[...] = host
        return arr

    def sync(self) -> None:
        if self.loader == "pycuda":
            self._cuda.Context.synchronize()
        else:
            self._cupy.cuda.Device().synchronize()

    def event(self) -> Any:
        """A recorded CUDA event (for `elapsed_ms`)."""
        ev = self._cuda.Event() if self.loader == "pycuda" else self._cupy.cuda.Event()
        ev.record()
        return ev

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        if self.loader == "pycuda":
            return float(start.time_till(end))
        return float(self._cupy.cuda.get_elapsed_time(start, end))

    def stage(self, items: Sequence[BatchItem], in_w: int, in_h: int) -> tuple[int, int, int]:
        """Upload a batch (frames + records); returns ``(staging, items, batch)`` addresses."""
        plan = plan_batch(items, in_w, in_h)
        staging = self.alloc(plan.staging_bytes)
        for up in plan.uploads:
            self.htod(staging + up.offset, up.array)
        recs = self.alloc(plan.items.nbytes)
        self.htod(recs, plan.items)
        return staging, recs, len(items)

    def letterbox(
        self, items: Sequence[BatchItem], in_w: int, in_h: int, *, fp16: bool, pad_value: int = PAD_VALUE
    ) -> tuple[np.ndarray, int]:
        """Run one launch on a NaN-poisoned output; returns (host copy, device address)."""
        staging, recs, b = self.stage(items, in_w, in_h)
        out = np.full((b, 3, in_h, in_w), np.nan, np.float16 if fp16 else np.float32)
        out_ptr = self.alloc(out.nbytes)
        self.htod(out_ptr, out)
        self.kernel.launch(staging, recs, out_ptr, b, in_w, in_h, pad_value, fp16)
        self.sync()
        self.dtoh(out, out_ptr)
        return out, out_ptr

    def release(self) -> None:
        """Free everything `alloc` handed out."""
        self.sync()
        self._keep.clear()

    def close(self) -> None:
        self.release()
        self.kernel = None  # type: ignore[assignment]
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmulatedRunner:
    """Stands in for `GpuRunner` on machines without a GPU: `emulate_plan` plays the kernel.

    ``--emulate`` runs the whole script this way; it checks the script and the
    emulation, not the kernel.
    """

    loader = "emulate"
    device_name = "CPU (numpy emulation of the kernel)"
    compute_capability = (0, 0)

    class _Origin:
        origin = "inspector.pipeline.gpu.emulate"

    kernel = _Origin()

    def letterbox(
        self, items: Sequence[BatchItem], in_w: int, in_h: int, *, fp16: bool, pad_value: int = PAD_VALUE
    ) -> tuple[np.ndarray, int]:
        return emulate_plan(plan_batch(items, in_w, in_h), in_w, in_h, pad_value=pad_value, fp16=fp16), 0

    def release(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


Runner = GpuRunner | EmulatedRunner


def compare(out: np.ndarray, items: Sequence[BatchItem], in_w: int, in_h: int, fp16: bool) -> tuple[bool, str]:
    """Check one launch's output against the reference and the emulation; (ok, report line)."""
    dtype = np.float16 if fp16 else np.float32
    worst, exact, n, unwritten = 0.0, 0, 0, 0
    for i, it in enumerate(items):
        ref, box = reference_tensor(it.image, it.pixel_format, in_w, in_h, it.tile, dtype=dtype)
        if box != it.box:
            return False, f"item {i}: letterbox {it.box} differs from the reference's {box}"
        got = out[i].astype(np.float64)
        unwritten += int(np.isnan(got).sum())
        err = np.abs(got - ref.astype(np.float64))
        worst = max(worst, float(np.nanmax(err)))
        exact += int((err == 0).sum())
        n += err.size
    emu = emulate_plan(plan_batch(items, in_w, in_h), in_w, in_h, fp16=fp16)
    same = out.view(np.uint16 if fp16 else np.uint32) == emu.view(np.uint16 if fp16 else np.uint32)
    ok = unwritten == 0 and worst <= tolerance(fp16)
    line = (
        f"max err {worst:.6f} ({worst * 255:.3f} levels), {100 * exact / n:.2f}% exact vs reference, "
        f"emulation bit-exact {100 * same.mean():.4f}%" + (f", {unwritten} elements never written" if unwritten else "")
    )
    return ok, line


def check_formats(
    runner: Runner,
    seed: int = 0,
    *,
    formats: Sequence[str] = PIXEL_FORMATS,
    input_sizes: Sequence[tuple[int, int]] = INPUT_SIZES,
) -> bool:
    """Part 1: every format x precision x input size, plus one mixed-format launch."""
    rng = np.random.default_rng(seed)
    all_ok = True
    for in_w, in_h in input_sizes:
        for fp16 in (False, True):
            prec = "fp16" if fp16 else "fp32"
            for fmt in formats:
                items = make_items(fmt, in_w, in_h, rng)
                out, _ = runner.letterbox(items, in_w, in_h, fp16=fp16)
                ok, line = compare(out, items, in_w, in_h, fp16)
                all_ok &= ok
                _say(f"{'PASS' if ok else 'FAIL'}  {fmt:9} {prec} -> {in_w}x{in_h}, {len(items)} items: {line}")
                runner.release()
            mixed = [make_items(fmt, in_w, in_h, rng)[k % len(CASES)] for k, fmt in enumerate(formats)]
            out, _ = runner.letterbox(mixed, in_w, in_h, fp16=fp16)
            ok, line = compare(out, mixed, in_w, in_h, fp16)
            all_ok &= ok
            _say(f"{'PASS' if ok else 'FAIL'}  {'mixed':9} {prec} -> {in_w}x{in_h}, {len(mixed)} items: {line}")
            runner.release()
    return all_ok


def _e2e_items(in_w: int, in_h: int) -> list[BatchItem]:
    from camera.renderer import render_part

    def fit(img: np.ndarray, tile: Tile | None = None) -> Letterbox:
        w, h = (tile.width, tile.height) if tile else (img.shape[1], img.shape[0])
        return Letterbox.fit(w, h, in_w, in_h)

    seed = 3_000_000  # held-out seeds, every part defective
    bgr = [render_part(seed + i, 640, 480, ok_share=0.0).image for i in range(3)]
    mono = render_part(seed + 3, 640, 480, mono=True, ok_share=0.0).image
    rgba = cv2.cvtColor(render_part(seed + 4, 800, 600, ok_share=0.0).image, cv2.COLOR_BGR2RGBA)
    src = render_part(seed + 5, 640, 480, ok_share=0.0).image
    bayer = np.empty(src.shape[:2], np.uint8)  # BayerRG8: R G / G B
    bayer[0::2, 0::2], bayer[0::2, 1::2] = src[0::2, 0::2, 2], src[0::2, 1::2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = src[1::2, 0::2, 1], src[1::2, 1::2, 0]
    big = render_part(seed + 6, 1280, 960, ok_share=0.0).image
    tile = Tile(0, 0, 800, 800)
    items = [BatchItem(f, "BGR8", fit(f)) for f in bgr]
    items += [BatchItem(mono, "Mono8", fit(mono)), BatchItem(rgba, "RGBa8", fit(rgba))]
    items += [BatchItem(bayer, "BayerRG8", fit(bayer)), BatchItem(big, "BGR8", fit(big, tile), tile)]
    return items


def _match(cpu: np.ndarray, gpu: np.ndarray, conf: float, margin: float = 0.05) -> tuple[int, int]:
    """(CPU detections clearly above threshold, how many of them the GPU route also found)."""
    from inspector.pipeline.postprocess import iou_matrix

    solid = cpu[cpu[:, 4] >= conf + margin]
    if len(solid) == 0:
        return 0, 0
    iou = iou_matrix(solid[:, :4], gpu[:, :4]) if len(gpu) else np.zeros((len(solid), 0))
    found = 0
    for k in range(len(solid)):
        same = (gpu[:, 5] == solid[k, 5]) if len(gpu) else np.zeros(0, bool)
        if len(gpu) and np.any((iou[k] >= 0.8) & same):
            found += 1
    return len(solid), found


def check_model(runner: Runner, model: str, conf: float = 0.25, iou: float = 0.45, score_tol: float = 0.05) -> bool:
    """Part 2: kernel output -> ONNX Runtime (device or host) vs the CPU station path."""
    import onnxruntime as ort

    from inspector.pipeline.backends import BackendUnavailable, create_backend
    from inspector.pipeline.model_repo import load_card
    from inspector.pipeline.postprocess import decode_yolo, nms

    card = load_card(model)
    in_w, in_h = card.input_width, card.input_height
    items = _e2e_items(in_w, in_h)
    tensor, ptr = runner.letterbox(items, in_w, in_h, fp16=False, pad_value=card.pad_value)
    if runner.loader != "emulate" and "CUDAExecutionProvider" in ort.get_available_providers():
        route = "onnxruntime-gpu, IOBinding on the kernel's device pointer (zero copy)"
        sess = ort.InferenceSession(str(card.path), providers=["CUDAExecutionProvider"])
        binding = sess.io_binding()
        binding.bind_input(sess.get_inputs()[0].name, "cuda", 0, np.float32, list(tensor.shape), ptr)
        binding.bind_output(sess.get_outputs()[0].name, "cpu")
        sess.run_with_iobinding(binding)
        raw_gpu = binding.copy_outputs_to_cpu()[0]
    else:
        route = f"{runner.loader} output copied to the host -> onnxruntime CPU (no CUDAExecutionProvider here)"
        sess = ort.InferenceSession(str(card.path), providers=["CPUExecutionProvider"])
        raw_gpu = sess.run(None, {sess.get_inputs()[0].name: tensor})[0]
    runner.release()
    ref = np.stack([reference_tensor(it.image, it.pixel_format, in_w, in_h, it.tile)[0] for it in items])
    ref_sess = ort.InferenceSession(str(card.path), providers=["CPUExecutionProvider"])
    raw_ref = ref_sess.run(None, {ref_sess.get_inputs()[0].name: ref})[0]
    try:
        cpu_be = create_backend("openvino", card, max_batch=len(items))
    except BackendUnavailable:
        cpu_be = create_backend("onnxruntime", card, max_batch=len(items))
    raw_cpu = cpu_be.infer(items).raw
    cpu_be.close()
    _say(f"route: {route}")
    _say(f"CPU path: {cpu_be.name}; input max |kernel - reference| {float(np.abs(tensor - ref).max()):.6f}")
    _say(
        f"raw output max |kernel route - reference tensor through ORT CPU| {float(np.abs(raw_gpu - raw_ref).max()):.5f}"
    )
    ok, confident = True, 0
    for i, it in enumerate(items):
        d_gpu = nms(decode_yolo(raw_gpu[i], conf), iou)
        d_cpu = nms(decode_yolo(raw_cpu[i], conf), iou)
        solid, found = _match(d_cpu, d_gpu, conf)
        score_diff = float(np.abs(raw_gpu[i, 4:] - raw_cpu[i, 4:]).max())
        good = found == solid and score_diff <= score_tol
        ok &= good
        confident += solid
        _say(
            f"{'PASS' if good else 'FAIL'}  item {i} {it.pixel_format:8} {'tile ' if it.tile else ''}"
            f"detections gpu {len(d_gpu)} / cpu {len(d_cpu)}; {found}/{solid} confident CPU detections matched; "
            f"max class-score diff {score_diff:.4f} (<= {score_tol})"
        )
    if confident == 0:
        _say(
            f"NOTE: {model} made no detection above {conf + 0.05:.2f} on these frames, so the detection "
            "match is vacuous (only the score comparison tested anything): rerun with a trained model "
            "(--model) or a lower --conf"
        )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspector.pipeline.gpu.check_kernel", description=__doc__.splitlines()[0])
    parser.add_argument("--loader", choices=("auto", "pycuda", "cupy"), default="auto")
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--model", default="defect-yolo11p-320")
    parser.add_argument("--conf", type=float, default=0.25, help="detection threshold for part 2")
    parser.add_argument("--skip-model", action="store_true", help="kernel checks only")
    parser.add_argument("--emulate", action="store_true", help="no GPU: run the script with the numpy emulation")
    args = parser.parse_args(argv)
    try:
        runner: Runner = EmulatedRunner() if args.emulate else GpuRunner(args.loader, args.device)
    except KernelUnavailable as exc:
        sys.stderr.write(f"check_kernel: {exc} (--emulate checks the script on the CPU)\n")
        return 2
    with runner:
        cc = runner.compute_capability
        _say(
            f"device {args.device}: {runner.device_name} (sm_{cc[0]}{cc[1]}); loader {runner.loader}; kernel from {runner.kernel.origin}"
        )
        ok = check_formats(runner)
        if not args.skip_model:
            ok &= check_model(runner, args.model, conf=args.conf)
    _say("ALL PASS" if ok else "FAILURES (see FAIL lines)")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
