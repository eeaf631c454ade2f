"""Host side of the fused preprocessing kernel: layout, batch plan, loading, building.

The kernel (``preprocess.cu``, ``letterbox_batch``) turns a batch of camera frames
into the model input in one launch. This module owns everything around it:

* the constants and the per-item struct, read from the ``.cu`` file itself (one
  source of truth; the tests hold `ITEM_DTYPE` and `KERNEL_ARGS` to it);
* `plan_batch`: which host arrays go where in the device staging buffer and the
  per-item parameters (pure numpy; `inspector.pipeline.gpu.emulate` runs the same plan on
  the CPU, which is how the arithmetic is tested without a GPU);
* `load_kernel`: the kernel for the current device, by pycuda (the TensorRT
  backend's runtime) or CuPy (``RawModule``/NVRTC, for machines without pycuda).
  Order: the shipped ``prebuilt/preprocess.fatbin`` (if its manifest matches this
  source), a cubin cached per source sha256 + compute capability, then nvcc;
* `build_fatbin`: the release step that makes the prebuilt fatbin, so stations do
  not need nvcc::

      python -m inspector.pipeline.gpu.kernel build-fatbin            # sm_75 sm_80 sm_86 sm_89 sm_90 + PTX 9.0
      python -m inspector.pipeline.gpu.kernel build-fatbin --out /tmp/pp.fatbin --arch 90

  A newer toolkit's output may not load on an older driver (the loaders then log
  it and compile instead): build with a toolkit the stations' drivers accept. A
  fatbin whose manifest names another source sha256 is ignored (logged).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from inspector.pipeline.backends.base import BatchItem
from inspector.pipeline.preprocess import FrameFormatError, bayer_at, check_frame, to_bgr

log = logging.getLogger(__name__)

SOURCE_PATH = Path(__file__).with_name("preprocess.cu")
PREBUILT_FATBIN = Path(__file__).with_name("prebuilt") / "preprocess.fatbin"
KERNEL_NAME = "letterbox_batch"
#: Real architectures in the shipped fatbin (Turing .. Hopper), plus PTX for newer GPUs.
FATBIN_ARCHS: tuple[int, ...] = (75, 80, 86, 89, 90)
FATBIN_PTX_ARCH = 90
#: Offsets of uploaded frames in the staging buffer are multiples of this.
STAGING_ALIGN = 256

#: Kernel arguments in order: name and pycuda ``prepare`` code (P pointer, i int32).
KERNEL_ARGS: tuple[tuple[str, str], ...] = (
    ("src_base", "P"),
    ("items", "P"),
    ("out", "P"),
    ("out_w", "i"),
    ("out_h", "i"),
    ("pad_value", "i"),
    ("out_fp16", "i"),
)
PREPARED_SIGNATURE = "".join(code for _, code in KERNEL_ARGS)

#: Host mirror of ``struct LbItem`` (C layout: 8-byte offset then twelve 4-byte fields).
ITEM_DTYPE = np.dtype(
    [
        ("src_offset", np.uint64),
        ("src_pitch", np.int32),
        ("src_w", np.int32),
        ("src_h", np.int32),
        ("tile_x0", np.int32),
        ("tile_y0", np.int32),
        ("format", np.int32),
        ("scale_x", np.float32),
        ("scale_y", np.float32),
        ("pad_x", np.int32),
        ("pad_y", np.int32),
        ("new_w", np.int32),
        ("new_h", np.int32),
    ],
    align=True,
)


class KernelUnavailable(RuntimeError):
    """The kernel cannot be loaded here (no pycuda/CuPy, no device, no compiler): one-line reason."""


class KernelBuildError(RuntimeError):
    """nvcc failed to build the fatbin (the message carries its output)."""


# --------------------------------------------------------------------------- the source


@lru_cache(maxsize=1)
def kernel_source() -> str:
    """The CUDA C source of the kernel."""
    return SOURCE_PATH.read_text()


def source_sha256(source: str | None = None) -> str:
    """sha256 of the kernel source (the cache and prebuilt-fatbin key)."""
    return hashlib.sha256((source if source is not None else kernel_source()).encode()).hexdigest()


def parse_defines(source: str) -> dict[str, int]:
    """Integer ``#define NAME value`` lines of a C source."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s*#define\s+(\w+)\s+(-?\d+)\s*$", source, re.MULTILINE)}


def _strip_comments(source: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.DOTALL)


def parse_struct(source: str, name: str) -> list[tuple[str, str]]:
    """``(C type, field)`` pairs of ``struct name { ... };`` in declaration order."""
    m = re.search(r"struct\s+" + re.escape(name) + r"\s*\{(.*?)\};", _strip_comments(source), re.DOTALL)
    if m is None:
        raise ValueError(f"struct {name} not found")
    fields = []
    for decl in m[1].split(";"):
        words = decl.split()
        if words:
            fields.append((" ".join(words[:-1]), words[-1]))
    return fields


def parse_kernel_signature(source: str, name: str = KERNEL_NAME) -> list[tuple[str, str]]:
    """``(C type, argument)`` pairs of ``extern "C" __global__ void name(...)``."""
    pattern = r'extern\s+"C"\s+__global__\s+void\s+' + re.escape(name) + r"\s*\((.*?)\)\s*\{"
    m = re.search(pattern, _strip_comments(source), re.DOTALL)
    if m is None:
        raise ValueError(f'extern "C" __global__ void {name}( not found')
    args = []
    for decl in m[1].split(","):
        words = decl.replace("*", " * ").split()
        args.append((" ".join(w for w in words[:-1] if w != "__restrict__"), words[-1]))
    return args


try:
    DEFINES = parse_defines(kernel_source())
except OSError as exc:  # a package built without its CUDA source: the backend reports it as unavailable
    raise ImportError(f"inspector.pipeline.gpu: {SOURCE_PATH.name} is missing ({exc}); reinstall inspector") from exc
ROUND_TO_U8 = bool(DEFINES["LB_ROUND_TO_U8"])
BLOCK: tuple[int, int, int] = (DEFINES["LB_BLOCK_X"], DEFINES["LB_BLOCK_Y"], 1)
#: GenICam pixel format -> kernel format code. Bayer formats are demosaiced on the host (to BGR8).
FORMAT_CODES: dict[str, int] = {
    "Mono8": DEFINES["LB_FMT_GRAY"],
    "RGB8": DEFINES["LB_FMT_RGB"],
    "BGR8": DEFINES["LB_FMT_BGR"],
    "RGBa8": DEFINES["LB_FMT_RGBA"],
    "BGRa8": DEFINES["LB_FMT_BGRA"],
}
#: Bytes per pixel of each kernel format code.
CHANNELS: dict[int, int] = {
    DEFINES["LB_FMT_GRAY"]: 1,
    DEFINES["LB_FMT_RGB"]: 3,
    DEFINES["LB_FMT_BGR"]: 3,
    DEFINES["LB_FMT_RGBA"]: 4,
    DEFINES["LB_FMT_BGRA"]: 4,
}


# --------------------------------------------------------------------------- the batch plan


@dataclass(frozen=True)
class Upload:
    """One host array copied to ``staging + offset`` (C-contiguous, so rows are packed)."""

    offset: int
    array: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


@dataclass(frozen=True)
class BatchPlan:
    """What one launch needs: the uploads, the per-item records, the staging size."""

    uploads: tuple[Upload, ...]
    items: np.ndarray  # ITEM_DTYPE, one record per batch item
    staging_bytes: int


def _align(n: int) -> int:
    return (n + STAGING_ALIGN - 1) // STAGING_ALIGN * STAGING_ALIGN


def plan_batch(items: Sequence[BatchItem], out_w: int, out_h: int) -> BatchPlan:
    """Lay out a batch for one kernel launch.

    Each distinct frame is uploaded once, whole; its tiles are items that point into
    it (``tile_x0/y0``), so a tiled camera costs one copy per frame, not per tile.
    Bayer items are demosaiced here with the reference's own call on the item's
    region (`inspector.pipeline.preprocess.to_bgr` on the tile crop) and uploaded as BGR8.

    Raises:
        FrameFormatError: A frame that cannot be inspected (format, shape).
        ValueError: A letterbox for another input size, or a tile outside its frame.
    """
    records = np.zeros(len(items), ITEM_DTYPE)
    uploads: list[Upload] = []
    by_frame: dict[int, Upload] = {}
    offset = 0
    for i, it in enumerate(items):
        check_frame(it.image, it.pixel_format)
        box = it.box
        if (box.in_w, box.in_h) != (out_w, out_h):
            raise ValueError(f"item {i}: letterbox for {box.in_w}x{box.in_h}, the input is {out_w}x{out_h}")
        image, fmt, tile = it.image, it.pixel_format, it.tile
        if tile is not None and not (
            0 <= tile.x0 < tile.x1 <= image.shape[1] and 0 <= tile.y0 < tile.y1 <= image.shape[0]
        ):
            raise ValueError(f"item {i}: tile {tile} outside the {image.shape[1]}x{image.shape[0]} frame")
        up: Upload | None = None
        if fmt.startswith("Bayer"):
            crop = image if tile is None else image[tile.y0 : tile.y1, tile.x0 : tile.x1]
            phase = bayer_at(fmt, tile.x0, tile.y0) if tile is not None else fmt
            image, fmt, tile = to_bgr(np.ascontiguousarray(crop), phase), "BGR8", None
        else:
            up = by_frame.get(id(image))
        code = FORMAT_CODES.get(fmt)
        if code is None:  # pragma: no cover - check_frame knows the same formats
            raise FrameFormatError(f"pixel format {fmt!r} is not supported")
        if up is None:
            up = Upload(offset, image if image.flags.c_contiguous else np.ascontiguousarray(image))
            uploads.append(up)
            if image is it.image:
                by_frame[id(image)] = up
            offset = _align(offset + up.nbytes)
        x0, y0, w, h = (tile.x0, tile.y0, tile.width, tile.height) if tile else (0, 0, image.shape[1], image.shape[0])
        if not (0 < box.new_w and box.pad_x + box.new_w <= out_w and 0 < box.new_h and box.pad_y + box.new_h <= out_h):
            raise ValueError(f"item {i}: letterbox {box} does not fit the {out_w}x{out_h} input")
        r = records[i]
        r["src_offset"] = up.offset
        r["src_pitch"] = up.array.strides[0]
        r["src_w"], r["src_h"], r["tile_x0"], r["tile_y0"] = w, h, x0, y0
        r["format"] = code
        # cv::resize maps with src/dst per axis (computed in double), not with Letterbox.scale
        r["scale_x"] = np.float32(w / box.new_w)
        r["scale_y"] = np.float32(h / box.new_h)
        r["pad_x"], r["pad_y"], r["new_w"], r["new_h"] = box.pad_x, box.pad_y, box.new_w, box.new_h
    return BatchPlan(tuple(uploads), records, offset)


def grid_for(batch: int, out_w: int, out_h: int) -> tuple[int, int, int]:
    """Launch grid: one thread per output pixel, one grid z-slice per batch item."""
    return (-(-out_w // BLOCK[0]), -(-out_h // BLOCK[1]), batch)


# --------------------------------------------------------------------------- loading


class LetterboxKernel:
    """A loaded ``letterbox_batch`` for the current device.

    Args:
        function: pycuda ``Function`` (prepared) or CuPy ``RawKernel``.
        loader: ``"pycuda"`` or ``"cupy"``.
        origin: Where the code came from (prebuilt fatbin, cache, nvcc, NVRTC).
        module: The module owning ``function`` (kept alive with it).
    """

    def __init__(self, function: Any, loader: str, origin: str, module: Any = None) -> None:
        self.function = function
        self.loader = loader
        self.origin = origin
        self._module = module

    def launch(
        self,
        src_base: int,
        items: int,
        out: int,
        batch: int,
        out_w: int,
        out_h: int,
        pad_value: int,
        fp16: bool,
        stream: Any = None,
    ) -> None:
        """Enqueue one launch for ``batch`` items on ``stream`` (raw device pointers as ints)."""
        grid = grid_for(batch, out_w, out_h)
        if self.loader == "pycuda":
            self.function.prepared_async_call(
                grid, BLOCK, stream, src_base, items, out, out_w, out_h, pad_value, int(fp16)
            )
            return
        args = (
            np.uint64(src_base),
            np.uint64(items),
            np.uint64(out),
            np.int32(out_w),
            np.int32(out_h),
            np.int32(pad_value),
            np.int32(int(fp16)),
        )
        if stream is None:
            self.function(grid, BLOCK, args)
        else:
            with stream:
                self.function(grid, BLOCK, args)


def kernel_cache_dir() -> Path:
    """Where compiled cubins are cached (``$XDG_CACHE_HOME/inspector/cuda`` on Linux)."""
    from platformdirs import user_cache_path

    return user_cache_path("inspector") / "cuda"


def cubin_cache_path(cache_dir: Path, sha256: str, compute_capability: tuple[int, int]) -> Path:
    """Cache file of the cubin for one source revision and one compute capability."""
    major, minor = compute_capability
    return cache_dir / f"preprocess-{sha256[:16]}-sm{major}{minor}.cubin"


def manifest_path(fatbin: Path) -> Path:
    return fatbin.with_name(fatbin.name + ".json")


def prebuilt_matches(fatbin: Path, source: str | None = None) -> bool:
    """True when ``fatbin`` exists and its manifest was built from this source."""
    try:
        manifest = json.loads(manifest_path(fatbin).read_text())
    except (OSError, ValueError):
        return False
    return fatbin.is_file() and manifest.get("source_sha256") == source_sha256(source)


def load_kernel(
    loader: str = "auto", *, cache_dir: Path | None = None, prebuilt: Path | None = PREBUILT_FATBIN
) -> LetterboxKernel:
    """Load the kernel for the device of the current context.

    Args:
        loader: ``"pycuda"`` (a pycuda context must be current), ``"cupy"`` (CuPy's
            current device) or ``"auto"`` (pycuda when importable, else CuPy).
        cache_dir: Cubin cache for the pycuda loader (default `kernel_cache_dir`).
        prebuilt: Fatbin to try first (None: never).

    Raises:
        KernelUnavailable: Neither loader works here (the message says why).
    """
    if loader == "auto":
        try:
            import pycuda.driver  # noqa: F401
        except ImportError:
            loader = "cupy"
        else:
            loader = "pycuda"
    if loader == "pycuda":
        return _load_pycuda(cache_dir or kernel_cache_dir(), prebuilt)
    if loader == "cupy":
        return _load_cupy(prebuilt)
    raise ValueError(f"loader: unknown {loader!r} (pycuda, cupy or auto)")


def _load_pycuda(cache_dir: Path, prebuilt: Path | None) -> LetterboxKernel:
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise KernelUnavailable(f"kernel: pycuda is not installed ({exc})") from None
    try:
        cc = cuda.Context.get_device().compute_capability()
    except cuda.Error as exc:
        raise KernelUnavailable(f"kernel: no current CUDA context ({exc})") from None

    def wrap(module: Any, origin: str) -> LetterboxKernel:
        fn = module.get_function(KERNEL_NAME)
        fn.prepare(PREPARED_SIGNATURE)
        log.info("preprocessing kernel for sm_%d%d from %s", cc[0], cc[1], origin)
        return LetterboxKernel(fn, "pycuda", origin, module)

    if prebuilt is not None and prebuilt_matches(prebuilt):
        try:
            return wrap(cuda.module_from_buffer(prebuilt.read_bytes()), f"prebuilt {prebuilt.name}")
        except cuda.Error as exc:
            log.warning(
                "kernel: %s does not load on sm_%d%d (%s); using the cache or nvcc", prebuilt, cc[0], cc[1], exc
            )
    elif prebuilt is not None and prebuilt.is_file():
        log.warning("kernel: %s was built from another preprocess.cu; ignoring it", prebuilt)
    path = cubin_cache_path(cache_dir, source_sha256(), cc)
    if path.is_file():
        try:
            return wrap(cuda.module_from_buffer(path.read_bytes()), f"cache {path}")
        except cuda.Error as exc:
            log.warning("kernel: cached %s does not load (%s); recompiling", path, exc)
            path.unlink(missing_ok=True)
    if shutil.which("nvcc") is None:
        raise KernelUnavailable(
            f"kernel: no prebuilt fatbin for sm_{cc[0]}{cc[1]} and nvcc is not on PATH "
            "(run python -m inspector.pipeline.gpu.kernel build-fatbin where nvcc is)"
        )
    from pycuda.compiler import compile as nvcc_compile

    # no_extern_c: the source declares extern "C" itself and includes C++ headers
    cubin = nvcc_compile(kernel_source(), options=["-O3"], arch=f"sm_{cc[0]}{cc[1]}", no_extern_c=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(cubin)
    os.replace(tmp, path)
    return wrap(cuda.module_from_buffer(cubin), f"nvcc -> {path}")


def _load_cupy(prebuilt: Path | None) -> LetterboxKernel:
    try:
        import cupy
    except ImportError as exc:
        raise KernelUnavailable(f"kernel: neither pycuda nor cupy is installed ({exc})") from None
    cc = cupy.cuda.Device().compute_capability
    if prebuilt is not None and prebuilt_matches(prebuilt):
        try:
            module = cupy.RawModule(path=str(prebuilt))
            fn = module.get_function(KERNEL_NAME)
            return LetterboxKernel(fn, "cupy", f"prebuilt {prebuilt.name}", module)
        except Exception as exc:  # noqa: BLE001 - CuPy raises several driver/compile error types
            log.warning("kernel: %s does not load on sm_%s (%s); compiling with NVRTC", prebuilt, cc, exc)
    module = cupy.RawModule(code=kernel_source(), backend="nvrtc")
    fn = module.get_function(KERNEL_NAME)  # compiles (CuPy caches the result on disk)
    return LetterboxKernel(fn, "cupy", f"NVRTC (CuPy) sm_{cc}", module)


# --------------------------------------------------------------------------- building


def fatbin_command(
    out: Path, *, nvcc: str = "nvcc", archs: Sequence[int] = FATBIN_ARCHS, ptx_arch: int | None = FATBIN_PTX_ARCH
) -> list[str]:
    """The nvcc command line that builds the fatbin."""
    cmd = [nvcc, "-fatbin", "-O3"]
    cmd += [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    if ptx_arch is not None:
        cmd.append(f"-gencode=arch=compute_{ptx_arch},code=compute_{ptx_arch}")
    return [*cmd, "-o", str(out), str(SOURCE_PATH)]


def build_fatbin(
    out: Path = PREBUILT_FATBIN,
    *,
    nvcc: str = "nvcc",
    archs: Sequence[int] = FATBIN_ARCHS,
    ptx_arch: int | None = FATBIN_PTX_ARCH,
) -> Path:
    """Build the kernel for several GPU generations into one fatbin (+ its manifest).

    SASS for each of ``archs`` (default sm_75 Turing, sm_80 A100, sm_86 Ampere
    consumer, sm_89 Ada/L4, sm_90 H100/H200) and PTX for ``ptx_arch`` so newer GPUs
    can JIT it. The manifest (``<out>.json``) records the source sha256; loaders
    ignore a fatbin built from another source.

    Raises:
        KernelBuildError: nvcc is missing or failed.
    """
    exe = shutil.which(nvcc)
    if exe is None:
        raise KernelBuildError(f"build-fatbin: {nvcc} not found on PATH (install the CUDA toolkit)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = fatbin_command(out, nvcc=exe, archs=archs, ptx_arch=ptx_arch)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KernelBuildError(f"build-fatbin: nvcc failed ({proc.returncode}): {proc.stderr.strip()}")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    arch_names = [f"sm_{a}" for a in archs]
    manifest = {
        "source_sha256": source_sha256(),
        "archs": arch_names,
        "ptx": f"compute_{ptx_arch}" if ptx_arch is not None else None,
        "nvcc": version.splitlines()[-1] if version else "",
        "command": " ".join(Path(c).name if i in (0, len(cmd) - 2, len(cmd) - 1) else c for i, c in enumerate(cmd)),
    }
    manifest_path(out).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("built %s (%d bytes) for %s", out, out.stat().st_size, ", ".join(arch_names))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m inspector.pipeline.gpu.kernel build-fatbin [--out PATH] [--arch N ...] [--nvcc PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m inspector.pipeline.gpu.kernel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-fatbin", help="build the prebuilt fatbin with nvcc")
    b.add_argument("--out", type=Path, default=PREBUILT_FATBIN)
    b.add_argument("--arch", type=int, action="append", help="SM version, repeatable (default: 75 80 86 89 90)")
    b.add_argument("--nvcc", default="nvcc")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build_fatbin(args.out, nvcc=args.nvcc, archs=tuple(args.arch or FATBIN_ARCHS))
    except KernelBuildError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
