"""TensorRT backend: one per GPU, with the fused CUDA preprocessing in front of the engine.

Per batch, on one CUDA stream, with a single host wait at the end:

1. host: `plan_batch` lays the batch out (offsets, per-item records; Bayer items are
   demosaiced here, with the reference's own cv2 call);
2. H2D: each distinct frame once, whole (true async DMA from pinned FramePool slots,
   see `inspector.pipeline.gpu.pinned`), then the item records;
3. ONE ``letterbox_batch`` launch writes the whole ``(B, 3, H, W)`` input binding:
   letterbox + colour + /255 + CHW, in the engine's input dtype (fp16 or fp32);
4. ``set_input_shape`` + ``execute_async_v3`` (or a CUDA graph captured for this
   batch size, when ``cuda_graphs`` is on);
5. D2H of the output into pinned host memory; wait on an event.

``preprocess_ms`` is host planning plus the GPU time of steps 2-3 (CUDA events);
``inference_ms`` is the GPU time of steps 4-5.

Everything CUDA happens with the device's primary context pushed on the calling
thread (`DeviceContext.active`), because the scheduler's worker thread is not the
thread that built the backend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from inspector.pipeline.backends.base import BackendUnavailable, BatchItem, BatchOutput, SynchronousBackend
from inspector.pipeline.backends.tensorrt_build import PRECISIONS, EngineBuildError, build_engine, trt_logger
from inspector.pipeline.gpu import DeviceContext, cuda_device_count, missing_requirements, parse_cuda_device
from inspector.pipeline.gpu.kernel import ITEM_DTYPE, STAGING_ALIGN, load_kernel, plan_batch
from inspector.pipeline.model_repo import ModelCard, check_model_io
from inspector.pipeline.preprocess import Letterbox

log = logging.getLogger(__name__)


def unavailable_reason(device: str) -> str | None:
    """Why a TensorRT backend cannot run on ``device`` here, as one line; None when it can."""
    try:
        index = parse_cuda_device(device)
    except ValueError as exc:
        return f"backend tensorrt: {exc}"
    missing = missing_requirements(("tensorrt", "pycuda"))
    if missing:
        packages = any("not installed" in m for m in missing)
        return f"backend tensorrt: needs {'the gpu extra: ' if packages else ''}{', '.join(missing)}"
    count, _why = cuda_device_count()
    if index >= count:
        return f"backend tensorrt: device cuda:{index} does not exist ({count} CUDA device(s) here)"
    return None


class CudaGraph:
    """One captured TensorRT enqueue, instantiated; a context manager (driver API via cuda-python).

    Released pycuda has no stream capture, so this uses ``cuda.bindings.driver`` on the
    raw stream handle (same driver, same context).
    """

    def __init__(self, cu: Any, graph: Any, exec_: Any) -> None:
        self._cu, self._graph, self._exec = cu, graph, exec_

    @staticmethod
    def _driver() -> Any:
        try:
            from cuda.bindings import driver as cu  # cuda-python >= 12.6
        except ImportError:
            from cuda import cuda as cu  # type: ignore[no-redef]  # older cuda-python
        return cu

    @classmethod
    def capture(cls, stream: int, enqueue: Any) -> CudaGraph:
        """Capture what ``enqueue()`` puts on ``stream`` (thread-local mode; it must return True).

        Raises:
            ImportError: cuda-python is not installed.
            RuntimeError: A driver call or the enqueue failed.
        """
        cu = cls._driver()
        _check(
            cu,
            "cuStreamBeginCapture",
            cu.cuStreamBeginCapture(stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
        )
        ok = False
        try:
            ok = bool(enqueue())
        finally:
            err, graph = cu.cuStreamEndCapture(stream)
        _check(cu, "cuStreamEndCapture", (err,))
        if not ok:
            cu.cuGraphDestroy(graph)
            raise RuntimeError("the enqueue failed during capture")
        err, exec_ = cu.cuGraphInstantiate(graph, 0)
        if err != cu.CUresult.CUDA_SUCCESS:
            cu.cuGraphDestroy(graph)
            raise RuntimeError(f"cuGraphInstantiate failed: {err}")
        return cls(cu, graph, exec_)

    def launch(self, stream: int) -> None:
        _check(self._cu, "cuGraphLaunch", self._cu.cuGraphLaunch(self._exec, stream))

    def close(self) -> None:
        if self._exec is not None:
            self._cu.cuGraphExecDestroy(self._exec)
            self._cu.cuGraphDestroy(self._graph)
            self._exec = self._graph = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check(cu: Any, what: str, result: tuple[Any, ...]) -> None:
    if result[0] != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what} failed: {result[0]}")


class TensorRtBackend(SynchronousBackend):
    """TensorRT on one GPU, fed by the fused preprocessing kernel.

    Args:
        card: Model card (ONNX file, input size, pad value).
        max_batch: Largest batch the scheduler sends (the engine profile's max).
        device: CUDA device: ``cuda:N``, ``gpu:N`` or ``N``.
        precision: ``fp16`` (default), ``fp32`` or ``int8`` (calibrated on the synthetic line).
        cuda_graphs: Capture the TensorRT enqueue as a CUDA graph per batch size
            (after its second use) and replay it; needs cuda-python; falls back
            to plain enqueues when capture fails.
        cache_dir: Engine cache (default: the user cache).

    Raises:
        BackendUnavailable: TensorRT, pycuda or the device is missing, or the engine
            does not fit the card (one-line reason).
    """

    name = "tensorrt"

    def __init__(
        self,
        card: ModelCard,
        max_batch: int = 8,
        device: str = "cuda:0",
        *,
        precision: str = "fp16",
        cuda_graphs: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        reason = unavailable_reason(device)
        if reason is not None:
            raise BackendUnavailable(reason)
        self.card = card
        self.max_batch = max_batch
        self.precision = precision
        index = parse_cuda_device(device)
        self.device = f"cuda:{index}"
        self._closed = False
        self._lock = threading.Lock()
        self._use_graphs = cuda_graphs
        self._graphs: dict[int, Any] = {}
        self._runs: dict[int, int] = {}
        self._staging: Any = None
        self._staging_bytes = 0
        try:
            import pycuda.driver as cuda
            import tensorrt as trt
        except ImportError as exc:  # installed but broken (e.g. built against another CUDA)
            raise BackendUnavailable(f"backend tensorrt: {exc}") from None
        self._cuda: Any = cuda
        self._trt: Any = trt
        self._ctx = DeviceContext(index)
        try:
            with self._ctx.active():
                self._open(index, cache_dir)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ setup
    def _open(self, index: int, cache_dir: Path | None) -> None:
        cuda, trt, card = self._cuda, self._trt, self.card
        h, w = card.input_height, card.input_width
        engine = None
        for attempt in range(2):
            path = self._engine_file(index, cache_dir, rebuild=attempt > 0)
            self._runtime = trt.Runtime(trt_logger())
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is not None:
                break
            log.warning("tensorrt: cached engine %s does not deserialise; rebuilding", path)
            path.unlink(missing_ok=True)
        if engine is None:
            raise BackendUnavailable(f"backend tensorrt: the engine for {card.path} does not deserialise")
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise BackendUnavailable(
                f"backend tensorrt: {path.name} has {len(inputs)} inputs; expected one image input"
            )
        self._in, self._out = inputs[0], outputs[0]
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._in)))
        if in_dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
            raise BackendUnavailable(f"backend tensorrt: input dtype {in_dtype} (the kernel writes fp16 or fp32)")
        self._fp16 = in_dtype == np.dtype(np.float16)
        _lo, _opt, hi = engine.get_tensor_profile_shape(self._in, 0)
        if hi[0] < self.max_batch or (int(hi[2]), int(hi[3])) != (h, w):
            raise BackendUnavailable(
                f"backend tensorrt: engine profile max {tuple(hi)} does not fit batch {self.max_batch} at {w}x{h}"
            )
        self._exec = engine.create_execution_context()
        self._stream = cuda.Stream()
        self._exec.set_input_shape(self._in, (self.max_batch, 3, h, w))
        out_shape = tuple(int(d) for d in self._exec.get_tensor_shape(self._out))
        check_model_io(card, path, (None, None), out_shape[1] if len(out_shape) == 3 else None)
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._out)))
        self._host_out = cuda.pagelocked_empty(out_shape, out_dtype)
        self._dev_out = cuda.mem_alloc(self._host_out.nbytes)
        self._dev_in = cuda.mem_alloc(self.max_batch * 3 * h * w * in_dtype.itemsize)
        self._host_items = cuda.pagelocked_empty(self.max_batch * ITEM_DTYPE.itemsize, np.uint8)
        self._dev_items = cuda.mem_alloc(self._host_items.nbytes)
        self._exec.set_tensor_address(self._in, int(self._dev_in))
        self._exec.set_tensor_address(self._out, int(self._dev_out))
        self._events = [cuda.Event() for _ in range(3)]
        self._kernel = load_kernel("pycuda")
        log.info(
            "tensorrt on %s (%s, sm_%d%d): %s engine %s, input %s %s, output %s, kernel from %s",
            self.device,
            self._ctx.name,
            *self._ctx.compute_capability,
            self.precision,
            path.name,
            self._in,
            in_dtype,
            out_shape,
            self._kernel.origin,
        )

    def _engine_file(self, index: int, cache_dir: Path | None, *, rebuild: bool) -> Path:
        h, w = self.card.input_height, self.card.input_width
        try:
            return build_engine(
                self.card.path,
                max_batch=self.max_batch,
                fp16=self.precision != "fp32",
                int8=self.precision == "int8",
                cache_dir=cache_dir,
                input_size=(h, w),
                device=index,
                rebuild=rebuild,
            )
        except EngineBuildError as exc:  # a model TensorRT cannot build: one line, like other backends
            raise BackendUnavailable(f"backend {exc}") from None

    def _ensure_staging(self, nbytes: int) -> int:
        if nbytes > self._staging_bytes:
            if self._staging is not None:
                self._staging.free()
            size = max(nbytes + nbytes // 4, STAGING_ALIGN)  # headroom: cameras change size rarely
            self._staging = self._cuda.mem_alloc(size)
            self._staging_bytes = size
        return int(self._staging)

    # ------------------------------------------------------------------ inference
    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:
        """Preprocess on the GPU and run the engine; chunks of at most ``max_batch``."""
        if not items:
            raise ValueError("infer: empty batch")
        outs: list[np.ndarray] = []
        pre = inf = 0.0
        with self._lock:
            if self._closed:
                raise RuntimeError(f"backend tensorrt on {self.device} is closed")
            with self._ctx.active():
                for start in range(0, len(items), self.max_batch):
                    raw, p, i = self._run(items[start : start + self.max_batch])
                    outs.append(raw)
                    pre += p
                    inf += i
        raw = outs[0] if len(outs) == 1 else np.concatenate(outs, 0)
        return BatchOutput(raw, pre, inf)

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:
        """Inference on an already letterboxed ``(B, H, W, 3)`` BGR u8 batch (the kernel only converts)."""
        h, w = self.card.input_height, self.card.input_width
        box = Letterbox(1.0, 0, 0, w, h, w, h)
        return self.infer([BatchItem(batch_u8[i], "BGR8", box) for i in range(len(batch_u8))]).raw

    def _run(self, chunk: Sequence[BatchItem]) -> tuple[np.ndarray, float, float]:
        cuda, stream = self._cuda, self._stream
        h, w = self.card.input_height, self.card.input_width
        b = len(chunk)
        t0 = time.perf_counter()
        plan = plan_batch(chunk, w, h)
        items_bytes = self._host_items[: b * ITEM_DTYPE.itemsize]
        items_bytes[:] = plan.items.view(np.uint8)
        staging = self._ensure_staging(plan.staging_bytes)
        host_ms = (time.perf_counter() - t0) * 1e3
        ev_start, ev_pre, ev_end = self._events
        ev_start.record(stream)
        for up in plan.uploads:
            cuda.memcpy_htod_async(staging + up.offset, up.array, stream)
        cuda.memcpy_htod_async(int(self._dev_items), items_bytes, stream)
        self._kernel.launch(
            staging, int(self._dev_items), int(self._dev_in), b, w, h, self.card.pad_value, self._fp16, stream
        )
        ev_pre.record(stream)
        self._enqueue_model(b)
        cuda.memcpy_dtoh_async(self._host_out[:b], int(self._dev_out), stream)
        ev_end.record(stream)
        ev_end.synchronize()  # also keeps the plan's host arrays alive until the copies are done
        raw = np.array(self._host_out[:b], dtype=np.float32, copy=True)
        self._runs[b] = self._runs.get(b, 0) + 1
        if self._use_graphs and b not in self._graphs and self._runs[b] >= 2:
            self._capture(b)
        return raw, host_ms + ev_start.time_till(ev_pre), ev_pre.time_till(ev_end)

    def _enqueue_model(self, b: int) -> None:
        h, w = self.card.input_height, self.card.input_width
        self._exec.set_input_shape(self._in, (b, 3, h, w))
        graph = self._graphs.get(b)
        if graph is not None:
            graph.launch(self._stream.handle)
        elif not self._exec.execute_async_v3(self._stream.handle):
            raise RuntimeError(f"tensorrt on {self.device}: execute_async_v3 failed for batch {b}")

    def _capture(self, b: int) -> None:
        """Capture the engine's enqueue for batch ``b`` (stream idle; tensor addresses fixed)."""
        h, w = self.card.input_height, self.card.input_width
        try:
            self._exec.set_input_shape(self._in, (b, 3, h, w))
            self._graphs[b] = CudaGraph.capture(
                self._stream.handle, lambda: self._exec.execute_async_v3(self._stream.handle)
            )
            log.info("tensorrt on %s: CUDA graph captured for batch %d", self.device, b)
        except Exception as exc:  # noqa: BLE001 - driver/binding errors of several types; plain enqueues still work
            log.warning("tensorrt on %s: CUDA graph capture failed (%s); enqueueing without graphs", self.device, exc)
            self._use_graphs = False
            self._drop_graphs()

    def _drop_graphs(self) -> None:
        for graph in self._graphs.values():
            graph.close()
        self._graphs.clear()

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Free device memory, the engine and the context (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ctx = getattr(self, "_ctx", None)
            if ctx is None:
                return
            with ctx.active():
                self._drop_graphs()
                for attr in ("_staging", "_dev_in", "_dev_out", "_dev_items"):
                    buf = getattr(self, attr, None)
                    if buf is not None:
                        buf.free()
                    setattr(self, attr, None)
                # TensorRT objects before the runtime, all before the context goes
                for attr in (
                    "_exec",
                    "_engine",
                    "_runtime",
                    "_kernel",
                    "_events",
                    "_stream",
                    "_host_out",
                    "_host_items",
                ):
                    setattr(self, attr, None)
            ctx.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
