"""OpenVINO backend (CPU default): u8 BGR NHWC in, preprocessing inside the model.

PrePostProcessor adds u8->f32, BGR->RGB, /255 and NHWC->NCHW to the graph, so the
host only letterboxes u8 pixels into the batch buffer. The INT8 IR (``precision = "int8"``)
was quantized from that same graph and takes the same batch.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inspector.pipeline.backends import compiled_cache, isa
from inspector.pipeline.backends.base import (
    BackendClosed,
    BackendUnavailable,
    BatchOutput,
    CpuBatchBackend,
    give_back_freed_heap,
)
from inspector.pipeline.backends.compiled_cache import prune_compiled_cache
from inspector.pipeline.backends.openvino_nms import detections_per_item, with_nms
from inspector.pipeline.model_repo import ModelCard, ModelError, check_model_io, int8_model_path

log = logging.getLogger(__name__)

#: Streams of the graph that batches run on while another batch is inside the runtime (``streams = "auto"``)
LOADED_STREAMS = 2
#: A loaded station goes back to the one-stream graph when a batch finds the runtime idle and is at most
#: half full, or idle this long: full batches with gaps of a few ms between them are a station back to
#: back whose host work lags the two streams (measured 2-13 ms on 2 cores), not an idle one
LOADED_LINGER_NS = 25_000_000
#: Also run the station's full batch (``batch``: every camera of the worker has a frame) on graphs compiled for
#: exactly that batch: a static shape spares the dynamic graph's per-request shape work (side by side, int8 on
#: 2 Zen 4 cores: -3% core-ms a frame at batch 8, -11% at batch 1), ...
STATIC_FULL_BATCH = True
#: ... compiled once the backend has been deciding batches this long: not beside a starting station's first
#: results, and not at all for a station that runs only seconds (a test's), whose stop would wait for the compile
STATIC_AFTER_S = 5.0


class OpenVinoBackend(CpuBatchBackend):
    """OpenVINO runtime with dynamic batch.

    Args:
        card: Model card (ONNX file, input size).
        max_batch: Largest batch the scheduler sends.
        device: OpenVINO device name (``CPU``, ``GPU``, ``NPU``).
        threads: Inference threads (0: OpenVINO decides).
        streams: ``auto`` (on a CPU): a batch that finds the runtime idle runs as one stream on every
            core (the lowest latency), a batch that comes while another runs goes to a second graph
            compiled with `LOADED_STREAMS` streams, one per share of the cores (the most frames per
            second: measured +18% on 2 cores at batch 8, since one thread per batch waits for no
            other). ``0``: always one stream; ``n``: always ``n`` streams.
        precision: ``auto`` (the fastest gated precision as the station's pipeline runs it, measured on this
            CPU and cached, see `precision_choice`; until measured the device's default, or the card's INT8 IR
            where it passed its gate and the default is f32), ``f32``,
            ``bf16``, ``f16`` or ``int8`` (the card's NNCF-quantized IR, sha256-checked; what stays
            unquantized runs at the device's default precision).
        nms_iou: Decode and NMS inside the graph at this IoU (`openvino_nms`): batches from `start` carry
            their detections, and the host skips that work (~0.05 core-ms a frame on two cores).
        batch: Frames in a batch of the station's worker when all its cameras have one waiting (0: ``max_batch``):
            what ``auto`` times the precisions at, and the batch that runs on graphs compiled for exactly its size
            once they are ready (`STATIC_FULL_BATCH`; `wait_static`).
    """

    name = "openvino"

    def __init__(
        self,
        card: ModelCard,
        max_batch: int = 8,
        device: str = "CPU",
        threads: int = 0,
        precision: str = "auto",
        depth: int = 1,
        streams: int | str = 0,
        nms_iou: float | None = None,
        batch: int = 0,
    ) -> None:
        super().__init__(card, max_batch, device, depth)
        try:
            import openvino as ov
        except ImportError as exc:  # pragma: no cover - a runtime dependency
            raise BackendUnavailable("openvino is not installed: pip install openvino") from exc
        core = ov.Core()
        from inspector.pipeline.backends.precision_choice import PrecisionChoice, Settings, choose_auto

        #: why ``auto`` runs what it runs (measured on this CPU, or the rule until then); None when asked for one
        self.precision_choice: PrecisionChoice | None = None
        if precision == "auto":
            settings = Settings(device, max_batch, threads, streams, depth, nms_iou, batch)
            self.precision_choice = choose_auto(core, card, settings)
            precision = self.precision_choice.precision
        #: the precision this backend runs (``auto`` resolved; ``auto`` still on a device without a default)
        self.precision = precision
        model = _read_model(core, card, precision)
        #: the IoU the graph suppresses at (None: the raw output only, the host decodes)
        self.nms_iou = nms_iou
        if nms_iou is not None:
            model = with_nms(model, len(card.classes), nms_iou)
        adaptive = streams == "auto" and device == "CPU"
        config = _compile_config(device, precision, threads, streams)
        compile_began = time.time()
        try:
            with compiled_cache.compile_lock(config):
                self._compiled = core.compile_model(model, device, config)
                # under load: the same graph with several streams (a cached compile: ~0.06 s)
                loaded = (core.compile_model(model, device, {**config, "PERFORMANCE_HINT": "THROUGHPUT",
                                                             "NUM_STREAMS": LOADED_STREAMS})
                          if adaptive else None)
        except RuntimeError as exc:
            raise BackendUnavailable(f"openvino: device {device!r} cannot run the model: {_first_line(exc)}") from exc
        if "CACHE_DIR" in config:  # OpenVINO never removes a blob: keep the folder within its limit
            prune_compiled_cache(Path(str(config["CACHE_DIR"])), started=compile_began - 1.0)
        #: streams the runtime runs: ``(idle, loaded)``, equal where they do not adapt
        idle_streams = int(self._compiled.get_property("NUM_STREAMS"))
        self.streams = (idle_streams, LOADED_STREAMS if loaded is not None else idle_streams)
        self._request = self._compiled.create_infer_request()
        self._slot_requests = [self._compiled.create_infer_request() for _ in range(self.depth)]
        self._loaded_requests = ([loaded.create_infer_request() for _ in range(self.depth)]
                                 if loaded is not None else None)
        self._loaded: Any = loaded  # released by `close` with the idle graph
        self._slot_tensors: dict[tuple[int, int], Any] = {}  # (slot, n) -> a tensor over the slot's rows
        self._bound: dict[int, Any] = {}  # id(request) -> the input tensor it holds now
        self._running = 0  # batches started and not yet waited for (inside the runtime, or just finished)
        self._last_done_ns = 0  # when the last one waited for finished
        self._largest = 1  # the largest batch started: a full batch of this station (1 for one camera)
        self._loaded_graph = False  # batches go to the loaded graph (see `start`)
        self._running_lock = threading.Lock()
        self._closed = False
        #: batches started on the loaded graph (the rest ran on the idle one)
        self.loaded_batches = 0
        #: batches started on a graph compiled for the full batch (`STATIC_FULL_BATCH`)
        self.static_batches = 0
        #: the batch the static graphs take: a full batch of this station
        self.full_batch = min(batch or max_batch, max_batch)
        self._static: _Static | None = None
        if STATIC_FULL_BATCH and device == "CPU":
            self._static = _Static(core, card, precision, nms_iou, device, config, adaptive, self.full_batch,
                                   self.depth)
        _LIVE.add(self)

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:
        if self._closed:
            raise BackendClosed(f"openvino: backend for {self.card.name} is closed (its recipe was retired)")
        self._request.infer({0: batch_u8})
        return np.array(self._request.get_output_tensor(0).data, copy=True)

    def warmup(self) -> None:
        super().warmup()
        if self._loaded_requests is not None:  # the sizes a loaded station sends most: full and single
            req = self._loaded_requests[0]
            for n in sorted({1, self.max_batch}):
                req.infer({0: self._batch[:n]})

    def start(self, slot: int, n: int, preprocess_ms: float = 0.0) -> _Running:
        with self._running_lock:
            inside = self._running
            if self._closed:
                raise BackendClosed(f"openvino: backend for {self.card.name} is closed (its recipe was retired)")
            if inside >= 2:  # a queue behind the one-stream graph: the station is loaded
                self._loaded_graph = True
            elif self._loaded_graph and not inside and (
                    2 * n <= self._largest or time.perf_counter_ns() - self._last_done_ns > LOADED_LINGER_NS):
                # the runtime is idle and the station keeps up (a batch at most half the largest it sent, i.e.
                # what its cameras fill, not max_batch: one camera's batches are all 1; or a pause): every core
                self._loaded_graph = False
            self._largest = max(self._largest, n)
            self._running += 1
            loaded = self._loaded_requests if self._loaded_graph else None
        graphs = self._static
        static = graphs.requests() if graphs is not None and n == self.full_batch else None
        if static is not None:  # the same graph choice, compiled for exactly this batch
            req = (static[1] if loaded is not None and static[1] is not None else static[0])[slot]
            self.static_batches += 1
            self.loaded_batches += loaded is not None
        elif loaded is not None:
            req = loaded[slot]
            self.loaded_batches += 1
        else:
            req = self._slot_requests[slot]
        running = _Running(req, preprocess_ms, self._finished, n, self.nms_iou)
        # the slot's buffer is not written again before this batch was waited for: no copy; the tensor
        # that wraps its first n rows is made once (the dict form of start_async costs ~0.1 ms a batch)
        tensor = self._slot_tensors.get((slot, n))
        if tensor is None:
            import openvino as ov

            tensor = self._slot_tensors[(slot, n)] = ov.Tensor(self._slots[slot][:n], shared_memory=True)
        if self._bound.get(id(req)) is not tensor:
            req.set_input_tensor(tensor)
            self._bound[id(req)] = tensor
        req.start_async()
        return running

    def wait_static(self, timeout: float | None = None) -> bool:
        """Wait until the full batch's static graphs run (or could not be compiled, or there are none);
        False on timeout. Benchmarks call it so that what they time is what the station runs."""
        return self._static is None or self._static.wait(timeout)

    def _finished(self, running: _Running, done_ns: int) -> None:
        """``running`` was waited for (once counted), having left the runtime at ``done_ns``."""
        graphs = self._static
        if graphs is not None and not graphs.begun:  # the station has run a while: the static graphs compile now
            graphs.begin_after(STATIC_AFTER_S)
        with self._running_lock:
            if not running.counted:
                running.counted = True
                self._running -= 1
                self._last_done_ns = max(self._last_done_ns, done_ns)

    def close(self) -> None:
        """Wait for every batch still inside the runtime (a process that exits while an infer request
        runs is aborted by it: "FATAL: exception not rethrown"), then let go of the compiled models and
        their requests, so that a retired recipe's memory, runtime threads and files are freed even where
        something still holds this backend, and the freed heap given back (`give_back_freed_heap`).
        Idempotent; the backend runs nothing afterwards."""
        with self._running_lock:
            if self._closed:
                return
            self._closed = True
        static, self._static = self._static, None
        if static is not None:  # its compile finishes first: a process must not exit inside it
            static.close()
        for req in (self._request, *self._slot_requests, *(self._loaded_requests or ())):
            req.wait()
        self._slot_tensors.clear()
        self._bound.clear()
        self._request = self._compiled = self._loaded = None
        self._slot_requests = []
        self._loaded_requests = None
        _LIVE.discard(self)
        give_back_freed_heap()


class _Static:
    """The graphs of one backend compiled for exactly its full batch, idle and (``adaptive``) loaded, with a
    request per slot each; compiled and warmed on a thread of their own once the backend has decided batches
    for `STATIC_AFTER_S` (`begin_after`), or at once for a benchmark that waits for them (`wait`), so that the
    first results neither wait for them nor share the cores with their compile (0.1-0.8 s cached, seconds not). Until they are ready, and where they cannot be compiled (logged once),
    full batches run on the dynamic graphs."""

    def __init__(self, core: Any, card: ModelCard, precision: str, nms_iou: float | None, device: str,
                 config: dict[str, object], adaptive: bool, batch: int, depth: int) -> None:
        self._requests: tuple[list[Any], list[Any] | None] | None = None
        self._compiled: list[Any] = []
        self._done = threading.Event()
        self._begun = False
        self._first_call: float | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._compile, args=(core, card, precision, nms_iou, device, config, adaptive, batch, depth),
            name=f"openvino-static-{card.name}", daemon=True)

    @property
    def begun(self) -> bool:
        return self._begun

    def begin_after(self, seconds: float) -> None:
        """`begin` once ``seconds`` have passed since the first call of this (a batch was decided)."""
        now = time.monotonic()
        if self._first_call is None:
            self._first_call = now
        if now - self._first_call >= seconds:
            self.begin()

    def begin(self) -> None:
        """Start compiling (once)."""
        if self._begun:
            return
        with self._lock:
            if not self._begun:
                self._begun = True
                self._thread.start()

    def _compile(self, core: Any, card: ModelCard, precision: str, nms_iou: float | None, device: str,
                 config: dict[str, object], adaptive: bool, batch: int, depth: int) -> None:
        try:
            model = _read_model(core, card, precision)
            first = model.input(0)
            shape = first.get_partial_shape()
            shape[0] = batch
            model.reshape({first.get_any_name(): shape})
            if nms_iou is not None:
                model = with_nms(model, len(card.classes), nms_iou)
            with compiled_cache.compile_lock(config):
                idle = core.compile_model(model, device, config)
                loaded = (core.compile_model(model, device, {**config, "PERFORMANCE_HINT": "THROUGHPUT",
                                                             "NUM_STREAMS": LOADED_STREAMS})
                          if adaptive else None)
            self._compiled = [c for c in (idle, loaded) if c is not None]
            idle_reqs = [idle.create_infer_request() for _ in range(depth)]
            loaded_reqs = [loaded.create_infer_request() for _ in range(depth)] if loaded is not None else None
            zeros = np.full((batch, card.input_height, card.input_width, 3), 114, np.uint8)
            for reqs in (idle_reqs, loaded_reqs):  # its first request prepares what the graph's others share
                if reqs is not None:
                    reqs[0].infer({0: zeros})
            self._requests = (idle_reqs, loaded_reqs)
        except (RuntimeError, ValueError, IndexError, ModelError) as exc:  # the dynamic graphs run every batch
            log.warning("openvino: %s: no graph for batches of %d (%s); the dynamic one runs them", card.name,
                        batch, _first_line(exc))
        finally:
            self._done.set()

    def requests(self) -> tuple[list[Any], list[Any] | None] | None:
        """``(idle, loaded)`` requests per slot once ready (loaded None where streams do not adapt), else None."""
        return self._requests

    def wait(self, timeout: float | None = None) -> bool:
        """Start compiling if not yet begun and wait until done; False on timeout."""
        self.begin()
        return self._done.wait(timeout)

    def close(self) -> None:
        """Wait for the compile (none starts any more) and for every batch still inside a static graph, then
        let them go."""
        with self._lock:
            self._begun = True  # never started after this
        if self._thread.ident is not None:
            self._thread.join()
        reqs, self._requests = self._requests, None
        if reqs is not None:
            for r in (*reqs[0], *(reqs[1] or ())):
                r.wait()
        self._compiled = []


class _Running:
    """One slot's batch inside OpenVINO.

    No completion callback: a Python callback takes the GIL on the runtime's own thread after every batch
    (and its stream's next batch waits for it while the host's threads hold the GIL); the runtime times
    the request itself (``InferRequest.latency``, from its start to its end, in C++), and a batch counts
    as inside (`OpenVinoBackend.start`'s choice of graph) until it is waited for.
    """

    __slots__ = ("_iou", "_n", "_on_done", "_pre_ms", "_req", "_t0", "counted")

    def __init__(self, req: Any, preprocess_ms: float, on_done: Callable[[_Running, int], None], n: int = 0,
                 iou: float | None = None) -> None:
        self._req = req
        self._n = n  # inputs in the batch
        self._iou = iou  # the IoU the graph suppressed at (None: it gives the raw output only)
        self._pre_ms = preprocess_ms
        self._on_done = on_done
        self.counted = False
        self._t0 = time.perf_counter_ns()

    @property
    def decoded(self) -> bool:
        """Whether `wait` hands over the graph's detections (False: the raw output only)."""
        return self._iou is not None

    def wait(self, decode: bool = True) -> BatchOutput:
        """The batch's outputs once the runtime is done; ``decode=False`` leaves the graph's detections
        unread (a benchmark of the runtime alone)."""
        try:
            self._req.wait()  # raises what the inference raised
            inference_ms = float(self._req.latency)
        except BaseException:
            self._on_done(self, time.perf_counter_ns())
            raise
        self._on_done(self, self._t0 + int(inference_ms * 1e6))
        # a view, not a copy (~0.5 MB a batch of 8): the request's output stays as it is until its slot
        # is started again, which the caller does only after it decided this batch
        raw = self._req.get_output_tensor(0).data
        if self._iou is None or not decode:
            return BatchOutput(raw, self._pre_ms, inference_ms)
        dets = detections_per_item(raw, self._req.get_output_tensor(1).data, self._req.get_output_tensor(2).data,
                                   self._n)
        return BatchOutput(raw, self._pre_ms, inference_ms, dets, self._iou)


#: Backends not yet garbage-collected: at exit every one waits for its requests still running.
_LIVE: weakref.WeakSet[OpenVinoBackend] = weakref.WeakSet()


@atexit.register
def _wait_for_requests_at_exit() -> None:
    for be in list(_LIVE):
        be.close()


def compiled_model_cache() -> Path | None:
    """Where OpenVINO keeps compiled models between starts: beside the part-bank cache
    (``INSPECTOR_CACHE_DIR``, "off" for none; else the user cache folder)."""
    from camera.bank_cache import default_cache_dir

    banks = default_cache_dir()
    if banks is None:
        return None
    limit = isa.active_limit()  # a graph compiled for other kernels (bf16 nodes) is not reused under a limit
    return banks.parent / ("openvino" if limit is None else f"openvino-{limit.lower()}")


def _emulated_f32_default(device: str) -> bool:
    """The CPU runs under an ISA limit without bf16 (`isa.default_is_f32`): f32 is its default."""
    return device == "CPU" and isa.default_is_f32()


def auto_picks_int8(core: Any, device: str, card: ModelCard) -> bool:
    """Whether ``auto`` runs the INT8 IR: only when the card's INT8 model passed its held-out gate and the
    device computes in f32 by default (AVX2 CPUs: INT8 measured ~1.45x f32 there). Where the default is
    bf16 (AMX / AVX512-BF16) it stays: bf16 was faster than this INT8 IR (1.35x on a 2-core AMX Xeon)."""
    if card.int8 is None or not card.int8_gate_passed:
        return False
    import openvino as ov

    if _emulated_f32_default(device):
        return True
    try:
        return bool(core.get_property(device, "INFERENCE_PRECISION_HINT") == ov.Type.f32)
    except RuntimeError:  # a device without the property
        return False


def auto_precision(device: str, card: ModelCard) -> str:
    """What ``precision = "auto"`` runs on ``device``: ``int8`` (see `auto_picks_int8`), else the device's
    default (``bf16`` on CPUs with AMX/AVX512-BF16, ``f32`` on the others and under an emulated lesser ISA)."""
    import openvino as ov

    core = ov.Core()
    if auto_picks_int8(core, device, card):
        return "int8"
    if _emulated_f32_default(device):
        return "f32"
    try:
        return precision_name(core.get_property(device, "INFERENCE_PRECISION_HINT"))
    except RuntimeError:  # a device without the property
        return "default"


def precision_name(hint: Any) -> str:
    """An ``INFERENCE_PRECISION_HINT`` value (an ``ov.Type``) as its short name: ``f32``, ``bf16``, ..."""
    return str(hint.to_string() if hasattr(hint, "to_string") else hint)


def runtime_model(core: Any, card: ModelCard, *, fused: bool = False) -> Any:
    """The graph the runtime compiles: the card's ONNX with a dynamic batch and the u8 BGR NHWC
    preprocessing (u8->f32, BGR->RGB, /255, NHWC->NCHW) fused in front of it.

    Quantization (`inspector.quality.quantize`) calibrates this same graph, so the INT8 IR takes
    the same letterboxed u8 batch. It asks for it ``fused``: read through ``ov.convert_model``,
    which folds the exporter's shape arithmetic and fuses SiLU (Sigmoid * x) into Swish, so the
    quantizer does not split the activation that the CPU plugin fuses into each convolution.

    Raises:
        ModelError: The file matches its card but openvino cannot read it as this card's model.
    """
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    try:
        model = ov.convert_model(str(card.path)) if fused else core.read_model(str(card.path))
        name = model.input(0).get_any_name()
        nchw = model.input(0).get_partial_shape()
    except (RuntimeError, ValueError, IndexError) as exc:
        # a file that matches its card's sha256 but is no model (or not this card's model)
        raise ModelError(f"model: {card.path} cannot be loaded by openvino: {_first_line(exc)}") from None
    if nchw.rank.is_static and nchw.rank.get_length() == 4:  # a size fixed in the graph must be the card's
        check_model_io(card, card.path, (_dim(nchw[2]), _dim(nchw[3])), None)
    try:
        model.reshape({name: ov.PartialShape([-1, 3, card.input_height, card.input_width])})
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ModelError(f"model: {card.path} cannot be loaded by openvino: {_first_line(exc)}") from None
    check_model_io(card, card.path, (None, None), _output_channels(model))
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.BGR
    )
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def _dim(d: Any) -> int | None:
    """A graph dimension's length; None where the graph leaves it open."""
    return int(d.get_length()) if d.is_static else None


def _output_channels(model: Any) -> int | None:
    """Channels per anchor of the detection output ``(B, 4 + nc, N)``; None where unknown."""
    shape = model.output(0).get_partial_shape()
    return _dim(shape[1]) if shape.rank.is_static and shape.rank.get_length() == 3 else None


def _read_model(core: Any, card: ModelCard, precision: str) -> Any:
    """The runtime graph of ``card``, or its INT8 IR (checked against the card) for ``int8``."""
    if precision != "int8":
        return runtime_model(core, card)
    # the INT8 IR was quantized from the runtime graph: the u8 NHWC preprocessing is already in it
    xml = int8_model_path(card)
    try:
        model = core.read_model(str(xml))
        nhwc = model.input(0).get_partial_shape()
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ModelError(f"model: {xml} cannot be loaded by openvino: {_first_line(exc)}") from None
    hw = (_dim(nhwc[1]), _dim(nhwc[2])) if nhwc.rank.is_static and nhwc.rank.get_length() == 4 else (None, None)
    check_model_io(card, xml, hw, _output_channels(model))
    return model


def _compile_config(device: str, precision: str, threads: int, streams: int | str) -> dict[str, object]:
    """OpenVINO's compile properties for the idle graph (the loaded one adds THROUGHPUT and its streams)."""
    fixed = 0 if streams == "auto" else int(streams)
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
    if fixed:  # several batches run at once, each on its share of the cores
        config = {"NUM_STREAMS": fixed}
    cache = compiled_model_cache()
    if cache is not None:  # the compiled blob is reused by the next start (same model, device, config)
        config["CACHE_DIR"] = str(cache)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision not in ("auto", "int8"):
        config["INFERENCE_PRECISION_HINT"] = {"f32": "f32", "bf16": "bf16", "f16": "f16"}[precision]
    elif _emulated_f32_default(device):  # that lesser CPU's default, not this one's bf16
        config["INFERENCE_PRECISION_HINT"] = "f32"
    # int8: what NNCF left unquantized runs at the device's default, f32 on AVX2, bf16 on AMX (there,
    # side by side: 1.68x f32 instead of 1.39x with an f32 hint, for 81% instead of 83% of FP32 boxes
    # found again at IoU 0.9)
    return config


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
