"""Benchmark: the fused CUDA preprocessing kernel vs OpenCV preprocessing on the CPU.

    python -m inspector.pipeline.gpu.bench_kernel                                  # 8 x 1920x1080 BGR8 -> 320x320
    python -m inspector.pipeline.gpu.bench_kernel --width 2448 --height 2048 --format BayerRG8 --input 640
    python -m inspector.pipeline.gpu.bench_kernel --cpu-only                       # runs anywhere

The CPU row is what CPU stations and the ONNX Runtime backend do per batch:
`letterbox_into` every frame into a u8 batch, then `batch_to_tensor` (float, RGB,
CHW). The GPU rows time with CUDA events: the kernel alone on frames already on
the device, and host-to-device copies (pinned host memory, as FramePool slots on a
GPU station) plus the kernel. Bayer frames are demosaiced on the host in both paths;
that host step is timed in its own row. Medians over ``--iters`` runs after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from inspector.pipeline.backends.base import BatchItem
from inspector.pipeline.gpu.check_kernel import GpuRunner
from inspector.pipeline.gpu.kernel import KernelUnavailable, plan_batch
from inspector.pipeline.preprocess import PIXEL_FORMATS, Letterbox, batch_to_tensor, letterbox_into

BENCH_SEED = 3_000_000


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def bench_frames(fmt: str, n: int, width: int, height: int) -> list[np.ndarray]:
    """``n`` synthetic-line frames of ``fmt`` (held-out seeds)."""
    from camera.renderer import render_part

    out = []
    for i in range(n):
        bgr = render_part(BENCH_SEED + i, width, height).image
        if fmt == "Mono8" or fmt.startswith("Bayer"):
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))  # a mosaic-sized single plane
        elif fmt == "RGB8":
            out.append(np.ascontiguousarray(bgr[..., ::-1]))
        elif fmt in ("RGBa8", "BGRa8"):
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA if fmt == "RGBa8" else cv2.COLOR_BGR2BGRA))
        else:
            out.append(bgr)
    return out


def median_ms(fn: Callable[[], object], iters: int, warmup: int = 3) -> float:
    """Median wall time of ``fn`` in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cpu_ms(items: Sequence[BatchItem], in_w: int, in_h: int, iters: int) -> float:
    """OpenCV letterbox into a u8 batch + float CHW conversion, per batch."""
    batch = np.empty((len(items), in_h, in_w, 3), np.uint8)

    def run() -> np.ndarray:
        for i, it in enumerate(items):
            letterbox_into(batch[i], it.image, it.pixel_format, it.box, it.tile)
        return batch_to_tensor(batch)

    return median_ms(run, iters)


def gpu_rows(
    runner: GpuRunner, items: Sequence[BatchItem], in_w: int, in_h: int, iters: int, fp16: bool
) -> list[tuple[str, float]]:
    """(label, ms per batch) for the kernel alone and for pinned H2D + kernel."""
    b = len(items)
    plan_ms = median_ms(lambda: plan_batch(items, in_w, in_h), iters)
    plan = plan_batch(items, in_w, in_h)
    staging, recs, _ = runner.stage(items, in_w, in_h)
    out = runner.alloc(b * 3 * in_h * in_w * (2 if fp16 else 4))
    pinned = [runner.pinned_copy(up.array) for up in plan.uploads]

    def kernel() -> None:
        runner.kernel.launch(staging, recs, out, b, in_w, in_h, 114, fp16)

    def timed(fn: Callable[[], None]) -> float:
        for _ in range(3):
            fn()
        samples = []
        for _ in range(iters):
            start = runner.event()
            fn()
            samples.append(runner.elapsed_ms(start, runner.event()))
        return statistics.median(samples)

    def upload_and_kernel() -> None:
        for up, host in zip(plan.uploads, pinned):
            runner.htod_async(staging + up.offset, host)
        kernel()

    prec = "fp16" if fp16 else "fp32"
    rows = [
        (f"GPU kernel only ({prec}, frames on the device)", timed(kernel)),
        (f"GPU H2D from pinned + kernel ({prec})", timed(upload_and_kernel)),
    ]
    if any(it.pixel_format.startswith("Bayer") for it in items):
        rows.append(("host: plan_batch incl. cv2 demosaic (Bayer)", plan_ms))
    runner.release()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspector.pipeline.gpu.bench_kernel", description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--format", choices=PIXEL_FORMATS, default="BGR8")
    parser.add_argument("--input", type=int, default=320, help="square model input size")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--loader", choices=("auto", "pycuda", "cupy"), default="auto")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args(argv)
    frames = bench_frames(args.format, args.batch, args.width, args.height)
    box = Letterbox.fit(args.width, args.height, args.input, args.input)
    items = [BatchItem(f, args.format, box) for f in frames]
    rows = [("CPU OpenCV letterbox_into + batch_to_tensor", cpu_ms(items, args.input, args.input, args.iters))]
    device = "CPU only"
    if not args.cpu_only:
        try:
            with GpuRunner(args.loader) as runner:
                cc = runner.compute_capability
                device = (
                    f"{runner.device_name} (sm_{cc[0]}{cc[1]}, {runner.loader}, kernel from {runner.kernel.origin})"
                )
                for fp16 in (False, True):
                    rows += gpu_rows(runner, items, args.input, args.input, args.iters, fp16)
        except (ImportError, KernelUnavailable, RuntimeError) as exc:
            device = f"CPU only (GPU part skipped: {exc})"
    _say(f"{args.batch} x {args.width}x{args.height} {args.format} -> {args.input}x{args.input}; {device}")
    _say(f"{'path':52} {'ms/batch':>9} {'ms/frame':>9} {'frames/s':>9}")
    for label, ms in rows:
        _say(f"{label:52} {ms:9.3f} {ms / args.batch:9.3f} {1e3 * args.batch / ms:9.0f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
