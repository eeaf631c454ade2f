"""Build TensorRT engines from a model's ONNX file, cached per machine.

An engine is only valid for the GPU model, the TensorRT version and the build
options it was made with, so engines live in a user cache (never in the model
repository) under a file name that says all of that: `engine_cache_key`. A station
asks `build_engine`, which returns the cached file when there is one and builds
(minutes, once per machine) when there is not.

TensorRT 10 API: explicit batch is the default (``create_network(0)``); one
optimisation profile spans batch 1..max_batch at the card's input size; FP16 builds
take an fp16 input tensor, which the fused preprocessing kernel writes directly.
INT8 uses implicit quantisation with an entropy calibrator fed by letterboxed frames
of the synthetic line on held-out seeds (>= 3,000,000, never used for training);
TensorRT deprecates implicit INT8 in favour of Q/DQ models, but 10.x still builds it.

The key and the cache lookup are pure Python; everything that touches TensorRT or
CUDA is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.pipeline.model_repo import ModelError, load_card, sha256_file
from inspector.pipeline.preprocess import reference_tensor

if TYPE_CHECKING:
    from inspector.pipeline.gpu import DeviceContext

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
#: First seed of the calibration frames (the evaluation/benchmark range, not training).
CALIBRATION_SEED = 3_000_000
CALIBRATION_BATCH = 8
ENGINE_SUFFIX = ".engine"


class EngineBuildError(RuntimeError):
    """An engine could not be built (TensorRT missing, ONNX not parseable, build failed)."""


def precision_of(fp16: bool, int8: bool) -> str:
    """The precision name of a build: ``int8`` (with fp16 fallback), ``fp16`` or ``fp32``."""
    return "int8" if int8 else "fp16" if fp16 else "fp32"


def _slug(text: str, keep: str = "") -> str:
    return re.sub(rf"[^a-z0-9{re.escape(keep)}]+", "-", text.lower()).strip("-") or "x"


def engine_cache_key(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    onnx_sha256: str,
    max_batch: int,
    precision: str,
    *,
    input_size: tuple[int, int] | None = None,
) -> str:
    """The engine's file name in the cache: readable prefix + digest of every field.

    Args:
        gpu_name: Device name (``NVIDIA H100 80GB HBM3``).
        compute_capability: ``(major, minor)``.
        trt_version: ``tensorrt.__version__`` (engines do not move across versions).
        onnx_sha256: sha256 of the ONNX file.
        max_batch: Largest batch of the optimisation profile.
        precision: One of `PRECISIONS`.
        input_size: ``(height, width)`` of the profile (models with dynamic H/W).

    Raises:
        ValueError: An invalid precision, batch, capability or checksum.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if max_batch < 1:
        raise ValueError(f"max_batch {max_batch}: must be at least 1")
    if not re.fullmatch(r"[0-9a-fA-F]{16,}", onnx_sha256):
        raise ValueError(f"onnx_sha256 {onnx_sha256!r} is not a hex digest")
    major, minor = (int(v) for v in compute_capability)
    fields = {
        "gpu": gpu_name.strip(),
        "cc": [major, minor],
        "trt": trt_version.strip(),
        "onnx": onnx_sha256.lower(),
        "max_batch": int(max_batch),
        "precision": precision,
        "input": list(input_size) if input_size is not None else None,
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    size = f"-{input_size[1]}x{input_size[0]}" if input_size is not None else ""
    return (
        f"{onnx_sha256.lower()[:12]}-{_slug(gpu_name)[:32]}-sm{major}{minor}-trt{_slug(trt_version, '.')}"
        f"-b{max_batch}-{precision}{size}-{digest}{ENGINE_SUFFIX}"
    )


def default_cache_dir() -> Path:
    """The per-user engine cache (``$XDG_CACHE_HOME/inspector/engines`` on Linux)."""
    from platformdirs import user_cache_path

    return user_cache_path("inspector") / "engines"


def cached_engine(cache_dir: Path, key: str) -> Path | None:
    """The cached engine file for ``key``, or None (missing or empty file)."""
    path = Path(cache_dir) / key
    try:
        return path if path.is_file() and path.stat().st_size > 0 else None
    except OSError:
        return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (no half-written engines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- calibration data


def default_calibration_frames(n: int = 128, width: int = 640, height: int = 480) -> Iterator[np.ndarray]:
    """Frames of the synthetic line on held-out seeds (every fourth one Mono8, like the demo)."""
    from camera.renderer import render_part

    for i in range(n):
        yield render_part(CALIBRATION_SEED + i, width, height, mono=(i % 4 == 3)).image


def calibration_batches(
    frames: Iterable[np.ndarray], in_w: int, in_h: int, batch: int = CALIBRATION_BATCH
) -> Iterator[np.ndarray]:
    """Letterboxed ``(batch, 3, in_h, in_w)`` float32 batches (the reference arithmetic).

    2-D frames are Mono8, 3-channel frames BGR8. An incomplete last batch is dropped
    (the calibration profile has a fixed batch).
    """
    buf = np.empty((batch, 3, in_h, in_w), np.float32)
    n = 0
    for frame in frames:
        fmt = "Mono8" if frame.ndim == 2 else "BGR8"
        buf[n], _ = reference_tensor(frame, fmt, in_w, in_h)
        n += 1
        if n == batch:
            yield buf.copy()
            n = 0


# --------------------------------------------------------------------------- TensorRT


@lru_cache(maxsize=1)
def trt_logger() -> Any:
    """One TensorRT logger per process that forwards to `logging` (it outlives every engine)."""
    import tensorrt as trt

    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.ERROR,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.DEBUG,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            log.log(levels.get(severity, logging.INFO), "tensorrt: %s", msg)

    return _Logger()


def _make_calibrator(trt: Any, batches: Iterator[np.ndarray], cache_file: Path, batch: int, nbytes: int) -> Any:
    import pycuda.driver as cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        """Feeds letterboxed synthetic-line frames; caches the scales beside the engine."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._device = cuda.mem_alloc(nbytes)
            self.batches_fed = 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            data = next(batches, None)
            if data is None:
                return None
            cuda.memcpy_htod(self._device, np.ascontiguousarray(data))
            self.batches_fed += 1
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_atomically(cache_file, bytes(cache))

    return EntropyCalibrator()


def _input_hw(onnx_path: Path, shape: tuple[int, ...], input_size: tuple[int, int] | None) -> tuple[int, int]:
    if input_size is not None:
        return int(input_size[0]), int(input_size[1])
    if len(shape) == 4 and shape[2] > 0 and shape[3] > 0:
        return int(shape[2]), int(shape[3])
    try:  # a model folder: the card says what the model was trained with
        card = load_card(onnx_path.parent, verify=False)
    except ModelError:
        raise EngineBuildError(
            f"tensorrt: {onnx_path} has a dynamic input size and no card.toml beside it: pass input_size"
        ) from None
    return card.input_height, card.input_width


def build_engine(
    onnx_path: Path | str,
    *,
    max_batch: int,
    fp16: bool = True,
    int8: bool = False,
    calibration_frames: Iterable[np.ndarray] | None = None,
    cache_dir: Path | None = None,
    input_size: tuple[int, int] | None = None,
    device: int = 0,
    workspace_gib: float = 4.0,
    rebuild: bool = False,
) -> Path:
    """The engine for ``onnx_path`` on this machine's GPU: from the cache, or built now.

    Args:
        onnx_path: The model's ONNX file (dynamic batch axis).
        max_batch: Largest batch (profile min 1, opt = max = max_batch).
        fp16: Allow FP16 kernels; the input tensor becomes fp16 (unless ``int8``).
        int8: Also allow INT8 kernels, calibrated on ``calibration_frames``.
        calibration_frames: u8 frames (2-D Mono8 or BGR8); default: 128 frames of the
            synthetic line from seed 3,000,000 on.
        cache_dir: Engine cache (default `default_cache_dir`).
        input_size: ``(height, width)``; default: the ONNX input, else the card beside it.
        device: CUDA device index to build on (engines are device-model specific).
        workspace_gib: Builder workspace limit.
        rebuild: Build even when a cached engine exists.

    Returns:
        Path of the serialised engine in the cache.

    Raises:
        EngineBuildError: TensorRT/pycuda missing, ONNX not parseable, or build failure.
    """
    trt, device_context = _tensorrt_and_device_context()
    onnx_path = Path(onnx_path)
    precision = precision_of(fp16, int8)
    sha = sha256_file(onnx_path)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dc = _open_device(device_context, device)
    with dc, dc.active():
        logger = trt_logger()
        builder = trt.Builder(logger)
        network, inp = _parse_onnx(trt, builder, logger, onnx_path)
        h, w = _input_hw(onnx_path, tuple(inp.shape), input_size)
        key = engine_cache_key(dc.name, dc.compute_capability, trt.__version__, sha, max_batch, precision, input_size=(h, w))
        hit = None if rebuild else cached_engine(cache_dir, key)
        if hit is not None:
            log.info("tensorrt: cached engine %s", hit)
            return hit
        path = cache_dir / key
        log.info("tensorrt: building %s engine for %s (batch 1..%d, %dx%d); this takes minutes",
                 precision, dc.name, max_batch, w, h)
        config = _builder_config(trt, builder, inp, h, w, max_batch, fp16=fp16, int8=int8, workspace_gib=workspace_gib)
        calib = path.with_suffix(".calib")
        calibrator = _int8_calibrator(trt, builder, config, inp, h, w, calibration_frames, calib) if int8 else None
        serialized = _build_serialized(builder, network, config, calibrator, onnx_path, calib)
        _write_engine(path, serialized, _engine_info(onnx_path, sha, dc, trt.__version__, max_batch, precision, h, w))
        return path


def _tensorrt_and_device_context() -> tuple[ModuleType, type[DeviceContext]]:
    try:
        import tensorrt as trt

        from inspector.pipeline.gpu import DeviceContext
    except ImportError as exc:
        raise EngineBuildError(f"tensorrt: cannot build engines here ({exc})") from None
    return trt, DeviceContext


def _open_device(device_context: type[DeviceContext], index: int) -> DeviceContext:
    try:
        return device_context(index)
    except ImportError as exc:
        raise EngineBuildError(f"tensorrt: pycuda is needed to build engines ({exc})") from None


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """The network parsed from ``onnx_path`` and its input tensor, whose batch axis must be dynamic."""
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"tensorrt: {onnx_path} does not parse: {errors}")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if shape[0] > 0:
        raise EngineBuildError(
            f"tensorrt: {onnx_path} has a fixed batch of {shape[0]}; export it with a dynamic batch"
        )
    return network, inp


def _builder_config(
    trt: Any, builder: Any, inp: Any, h: int, w: int, max_batch: int, *, fp16: bool, int8: bool, workspace_gib: float
) -> Any:
    """The builder config: workspace, the batch 1..max_batch profile, FP16 (and the fp16 input) where allowed."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, 3, h, w), (max_batch, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    if fp16 or int8:
        config.set_flag(trt.BuilderFlag.FP16)
    if fp16 and not int8:
        inp.dtype = trt.DataType.HALF  # the fused kernel writes fp16: no reformat layer
    return config


def _int8_calibrator(
    trt: Any, builder: Any, config: Any, inp: Any, h: int, w: int,
    calibration_frames: Iterable[np.ndarray] | None, cache_file: Path,
) -> Any:
    """Turn on INT8 with a calibration profile at `CALIBRATION_BATCH`; the entropy calibrator it now uses."""
    config.set_flag(trt.BuilderFlag.INT8)
    cb = CALIBRATION_BATCH
    cal = builder.create_optimization_profile()
    cal.set_shape(inp.name, (cb, 3, h, w), (cb, 3, h, w), (cb, 3, h, w))
    config.set_calibration_profile(cal)
    frames = calibration_frames if calibration_frames is not None else default_calibration_frames()
    batches = calibration_batches(frames, w, h, cb)
    calibrator = _make_calibrator(trt, batches, cache_file, cb, cb * 3 * h * w * 4)
    config.int8_calibrator = calibrator
    return calibrator


def _build_serialized(
    builder: Any, network: Any, config: Any, calibrator: Any, onnx_path: Path, calibration_cache: Path
) -> Any:
    """The serialised engine; a failed build, or an INT8 build that saw no calibration batch, is an error."""
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"tensorrt: building the engine for {onnx_path} failed (see the tensorrt log lines)")
    if calibrator is not None and calibrator.batches_fed == 0 and not calibration_cache.is_file():
        raise EngineBuildError("tensorrt: INT8 calibration got no complete batch of frames")
    return serialized


def _engine_info(
    onnx_path: Path, sha: str, dc: DeviceContext, trt_version: str, max_batch: int, precision: str, h: int, w: int
) -> dict[str, Any]:
    """What the JSON beside an engine records: the ONNX it was built from, and the GPU and options it was built for."""
    return {
        "onnx": str(onnx_path),
        "onnx_sha256": sha,
        "gpu": dc.name,
        "compute_capability": list(dc.compute_capability),
        "tensorrt": trt_version,
        "max_batch": max_batch,
        "precision": precision,
        "input_hw": [h, w],
    }


def _write_engine(path: Path, serialized: Any, info: dict[str, Any]) -> None:
    """Write the engine at ``path`` and, beside it, the JSON ``info`` of what it was built from and for."""
    write_atomically(path, bytes(serialized))
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("tensorrt: engine written to %s (%.1f MB)", path, path.stat().st_size / 1e6)
