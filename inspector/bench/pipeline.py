"""Side-by-side throughput and latency: pure backend vs the full station pipeline.

Everything runs in one process, one after the other, on the same model file and the
same rendered frames, so the ratios compare like with like on a noisy machine.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camera.renderer import render_part
from inspector.config import ModelConfig, SimulatedCameraConfig, StationConfig
from inspector.ops.run_stats import RunStats, percentiles
from inspector.pipeline.backends import create_backend
from inspector.pipeline.backends.base import CpuBatchBackend
from inspector.pipeline.model_repo import load_card
from inspector.pipeline.preprocess import Letterbox, letterbox_into
from inspector.station import Station

log = logging.getLogger(__name__)

BENCH_SEED = 3_000_000


def bench_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """The frames every measurement uses (held-out seeds, a quarter Mono8 like the demo)."""
    return [render_part(BENCH_SEED + i, width, height, mono=(i % 4 == 3)).image for i in range(n)]


#: The IoU a bench station's graph suppresses at (the config's default): the pure runner compiles the same graph
_STATION_IOU = float(ModelConfig.model_fields["iou_threshold"].default)

#: Rounds a camera count is measured in by `measure_station` (``inspector bench`` and `benchmarks/efficiency.py`
#: alike): each round times the runtime alone and the pipeline side by side. On the 2-core machine one round's
#: ratio swings +-5-10% even when it is quiet (stop 36: 0.87-1.01 at one camera), so the median of 3-4 rounds moved
#: by +-3% between runs of the same code; shorter windows in more rounds pair each pipeline window with a runtime
#: window closer in time.
ROUNDS = 8


@dataclass(frozen=True)
class Span:
    """What one measured window did: frames finished, wall seconds, and the process's CPU seconds (all threads)."""

    frames: float
    wall: float
    cpu: float

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        return self.cpu / self.frames * 1e3 if self.frames else 0.0


def paired_rounds(pure: Callable[[float], Span], pipeline: Callable[[float], Span], rounds: int,
                  span: float) -> list[tuple[Span, Span]]:
    """``rounds`` pairs of (runtime alone, pipeline) windows of ``span`` seconds, in ABBA order: even rounds time the
    runtime first, odd rounds the pipeline first, so that a machine drifting faster or slower over the run (other
    load, clocks) favours neither side in the median of the rounds' ratios."""
    out: list[tuple[Span, Span]] = []
    for r in range(max(1, rounds)):
        if r % 2 == 0:
            p = pure(span)
            q = pipeline(span)
        else:
            q = pipeline(span)
            p = pure(span)
        out.append((p, q))
    return out


class PureRunner:
    """The runtime alone on an already letterboxed batch of ``batch`` frames: ``depth`` batches in
    flight at once as the station's worker keeps them, with the station's backend settings
    (streams, precision), nothing else running (the bound the pipeline is compared with)."""

    def __init__(
        self, backend: str, model: str, batch: int, threads: int, frames: list[np.ndarray], *, depth: int = 1,
        streams: int | str = "auto", precision: str = "auto", nms_iou: float | None = _STATION_IOU,
        max_batch: int = 8,
    ) -> None:
        # ``auto`` as the station resolves it for its own max_batch (not for this runner's batch): both then run
        # the same precision
        precision = station_precision(backend, model, precision, max_batch=max_batch, threads=threads, depth=depth,
                                      streams=streams, nms_iou=nms_iou, batch=min(batch, max_batch))
        #: the precision the runtime runs here
        self.precision = precision
        card = load_card(model, int8=precision == "int8")
        self.batch = batch
        # the station's graph (decoding and NMS inside it, at the station's default IoU), whose detections
        # this runner leaves undecoded on the host: the runtime's work alone
        self.be = create_backend(backend, card, max_batch=batch, threads=threads, precision=precision, depth=depth,
                                 streams=streams, nms_iou=nms_iou)
        data = np.empty((batch, card.input_height, card.input_width, 3), np.uint8)
        for i in range(batch):
            f = frames[i % len(frames)]
            box = Letterbox.fit(f.shape[1], f.shape[0], card.input_width, card.input_height)
            letterbox_into(data[i], f, "Mono8" if f.ndim == 2 else "BGR8", box)
        self._data = data
        wait_static = getattr(self.be, "wait_static", None)
        if wait_static is not None:  # the full batch on its static graph, as the station runs it once ready
            wait_static(120.0)
        # a CPU runtime's slots are filled once and started over and over; other backends run one batch at a time
        self._slotted = self.be if isinstance(self.be, CpuBatchBackend) else None
        if self._slotted is not None:
            for slot in range(self._slotted.depth):
                self._slotted.slot_buffer(slot)[:batch] = data
        self.run(0.0, warm=3 * max(1, depth))

    def run(self, seconds: float, warm: int = 1) -> float:
        """Frames per second over ``seconds`` (after ``warm`` steps); nothing is left in flight."""
        return self.measure(seconds, warm).fps

    def measure(self, seconds: float, warm: int = 1) -> Span:
        """Frames, wall and process CPU time over ``seconds`` (after ``warm`` steps; the filling and emptying of
        the slots are outside the span); nothing is left in flight."""
        from collections import deque

        be, n, slotted = self.be, self.batch, self._slotted
        if slotted is None:  # a backend without slots: one batch at a time
            def step() -> None:
                be.infer_preprocessed(self._data)
            pending: deque[Any] = deque()
        else:
            pending = deque((slot, slotted.start(slot, n)) for slot in range(slotted.depth))

            def step() -> None:
                slot, p = pending.popleft()
                if hasattr(p, "decoded"):  # the graph's detections stay unread: the runtime alone
                    p.wait(decode=False)
                else:
                    p.wait()
                pending.append((slot, slotted.start(slot, n)))
        try:
            for _ in range(warm):
                step()
            done = 0
            c0, t0 = time.process_time(), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                step()
                done += 1
            return Span(done * n, max(1e-9, time.perf_counter() - t0), time.process_time() - c0)
        finally:
            while pending:  # the next run starts on idle slots
                pending.popleft()[1].wait()

    def close(self) -> None:
        self.be.close()


def station_precision(backend: str, model: str, precision: str, *, max_batch: int, threads: int, depth: int,
                      streams: int | str, nms_iou: float | None = _STATION_IOU, device: str = "CPU",
                      batch: int = 0) -> str:
    """The precision a station with these settings runs for ``precision`` (``auto`` resolved as its OpenVINO
    backend resolves it: the cached measurement, else the rule; anything else as it is). ``batch``: the station's
    cameras on the device (its saturated batch)."""
    if precision != "auto" or backend != "openvino":
        return precision
    import openvino as ov

    from inspector.pipeline.backends import precision_choice as pc

    settings = pc.Settings(device, max_batch, threads, streams, depth, nms_iou, batch)
    return pc.choose_auto(ov.Core(), load_card(model), settings).precision


def station_config(
    n_cameras: int, fps: float, model: str, backend: str, threads: int, width: int, height: int, max_batch: int,
    *, in_flight: int = 4, streams: int | str = "auto", precision: str = "auto",
) -> StationConfig:
    cams = [
        SimulatedCameraConfig(
            id=f"bench-cam{i + 1}", fps=fps, width=width, height=height, mono=(i % 4 == 3),
            seed=BENCH_SEED + 1000 * i, bank_size=16,
        )
        for i in range(n_cameras)
    ]
    return StationConfig.model_validate(
        {
            "name": f"bench-{n_cameras}",
            "model": {"name": model, "backend": backend, "threads": threads, "streams": streams,
                      "precision": precision},
            "scheduler": {"max_batch": max_batch, "max_wait_ms": 4.0, "in_flight": in_flight},
            "cameras": [c.model_dump() for c in cams],
        }
    )


def measure_station(
    cfg: StationConfig, db_url: str, warmup: float, seconds: float, *, pure: PureRunner | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Run a station, discard ``warmup`` seconds, measure ``seconds`` in ``rounds`` windows.

    With ``pure``, each window is paired with as long a run of the runtime alone while the station's workers are
    paused, so the two are measured side by side, round after round, under the same drift of a shared machine, in
    ABBA order (`paired_rounds`); ``efficiency`` is the median of the rounds' fps ratios and ``cpu_efficiency`` the
    median of their ratios of the process's CPU time a frame (runtime alone over pipeline: what fps efficiency is
    where the runtime keeps every core busy, and much less moved by other load).
    """
    from inspector.pipeline.backends import precision_choice

    precision_choice.BACKGROUND = False  # no measuring child beside what is measured here
    st = Station(cfg, db_url=db_url, archive=False)  # renders the simulated banks: rendering is not the pipeline
    st.start()
    windows: list[dict[str, Any]] = []
    lat: list[float] = []
    pairs: list[tuple[Span, Span]] = []
    try:
        for w in st.workers:  # what is measured is what the station runs for good (its static graphs too)
            wait_static = getattr(w.backend, "wait_static", None)
            if wait_static is not None:
                wait_static(120.0)
        time.sleep(warmup)
        span = seconds / max(1, rounds)
        per_window: list[RunStats] = []

        def pipeline(span: float) -> Span:
            st.take_stats()  # latencies of this window only
            c0 = time.process_time()
            w = _window(st, span)
            cpu = time.process_time() - c0
            windows.append(w)
            per_window.append(st.take_stats())  # what comes between windows (frames held over a pause) counts nowhere
            return Span(w["inspected"], w["wall"], cpu)

        def alone(span: float) -> Span:
            assert pure is not None
            for w in st.workers:
                w.pause(True)
            time.sleep(0.2)  # the batches in flight are decided
            out = pure.measure(span)
            done = [w.stats.batches for w in st.workers]
            for w in st.workers:
                w.pause(False)
            # back to its steady state: the frames held over the pause are decided (they carry its length
            # in their latency), then a moment more
            settle = time.monotonic() + 10.0
            while time.monotonic() < settle and any(
                    w.stats.batches < d + w.in_flight + 2 for w, d in zip(st.workers, done)):
                time.sleep(0.01)
            time.sleep(0.3)
            return out

        if pure is not None:
            pairs = paired_rounds(alone, pipeline, rounds, span)
        else:
            for _ in range(max(1, rounds)):
                pipeline(span)
        cams = [cs for rs in per_window for cs in rs.cameras.values()]
        lat = [v for cs in cams for v in cs.latency_ms]
        merged: dict[str, list[float]] = {}
        for cs in cams:
            for k, v in cs.stages.items():
                merged.setdefault(k, []).extend(v)
        stages = {k: percentiles(v) for k, v in merged.items()}
        rows = st.db_writer.rows_written if st.db_writer is not None else 0
        ran = [str(getattr(w.backend, "precision", cfg.model.precision)) for w in st.workers]
    finally:
        st.stop()
    total = {k: sum(w[k] for w in windows) for k in ("wall", "inspected", "dropped", "frames", "busy", "infer",
                                                      "batches", "items")}
    n_workers = max(1, len(st.workers))
    out = {
        "fps": total["inspected"] / total["wall"],
        "inspected": total["inspected"],
        "dropped": total["dropped"],
        "busy_fraction": total["busy"] / total["wall"] / n_workers,
        "mean_batch": total["items"] / total["batches"] if total["batches"] else 0.0,
        "non_inference_ms_per_frame": (total["busy"] - total["infer"]) / total["frames"] * 1e3 if total["frames"] else 0.0,
        "inference_ms_per_frame": total["infer"] / total["frames"] * 1e3 if total["frames"] else 0.0,
        "latency_ms": percentiles(lat),
        "stages_ms": stages,
        "db_rows_written": rows,
        "precision": ran[0] if len(set(ran)) == 1 else "/".join(ran),  # what the station's runtime ran
    }
    if pairs:
        out["rounds"] = [{"pure_fps": p.fps, "pipeline_fps": q.fps, "efficiency": q.fps / p.fps if p.fps else 0.0,
                          "pure_cpu_ms_per_frame": p.cpu_ms_per_frame, "pipeline_cpu_ms_per_frame": q.cpu_ms_per_frame,
                          "cpu_efficiency": (p.cpu_ms_per_frame / q.cpu_ms_per_frame if q.cpu_ms_per_frame else 0.0),
                          "pure_first": k % 2 == 0}
                         for k, (p, q) in enumerate(pairs)]
        out["pure_fps"] = statistics.median(p.fps for p, _q in pairs)
        out["efficiency"] = statistics.median(r["efficiency"] for r in out["rounds"])
        out["cpu_efficiency"] = statistics.median(r["cpu_efficiency"] for r in out["rounds"])
    return out


def _window(st: Station, seconds: float) -> dict[str, Any]:
    """Counters of a running station over the next ``seconds``."""
    def snap() -> tuple[float, int, int, list[tuple[int, float, float, int, int]]]:
        pools = [cam.pool.snapshot() for cam in st.cameras.values()]
        ws = [(w.stats.frames, w.busy_now(), w.stats.infer_s, w.stats.batches, w.stats.items) for w in st.workers]
        return time.perf_counter(), sum(p.inspected for p in pools), sum(p.dropped for p in pools), ws

    t0, i0, d0, w0 = snap()
    time.sleep(seconds)
    t1, i1, d1, w1 = snap()
    dw = [sum(b[k] - a[k] for a, b in zip(w0, w1)) for k in range(5)]
    return {"wall": t1 - t0, "inspected": i1 - i0, "dropped": d1 - d0, "frames": dw[0], "busy": dw[1],
            "infer": dw[2], "batches": dw[3], "items": dw[4]}


def run_pipeline_bench(
    *,
    model: str,
    backend: str,
    cameras: list[int],
    threads: int = 0,
    width: int = 320,
    height: int = 320,
    seconds: float = 12.0,
    warmup: float = 3.0,
    max_batch: int = 8,
    in_flight: int = 4,
    streams: int | str = "auto",
    precision: str = "auto",
    nominal: StationConfig | None = None,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """The full side-by-side: pure backend (at each precision), pipeline at each camera count,
    and a station at its nominal rate (``nominal``: the built-in ``demo``, 8 cameras x 5 fps)."""
    frames = bench_frames(32, width, height)
    rounds = min(rounds, max(2, int(seconds)))  # windows of a second or more (a short test run: 2 rounds)
    sizes = sorted(set(cameras))
    pure_s = min(6.0, seconds / 2)
    # every gated precision as each station below runs it (its cameras' batch), first: the winners are what
    # `auto` runs below
    by_cameras = {str(n): precision_fps(backend, model, max_batch, pure_s, threads, in_flight, streams, n)
                  for n in sizes}
    pipeline: dict[str, Any] = {}
    nominal = _nominal_station(nominal, model, backend, threads=threads, streams=streams, precision=precision,
                               in_flight=in_flight)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            cfg = station_config(n, 0.0, model, backend, threads, width, height, max_batch, in_flight=in_flight,
                                 streams=streams, precision=precision)
            runner = PureRunner(backend, model, n, threads, frames, depth=in_flight, streams=streams,
                                precision=precision, max_batch=max_batch)
            try:
                pipeline[str(n)] = measure_station(cfg, f"sqlite:///{Path(tmp) / f'sat{n}.db'}", warmup, seconds,
                                                   pure=runner, rounds=rounds)
            finally:
                runner.close()
            log.info("pipeline %d cameras: %.1f fps", n, pipeline[str(n)]["fps"])
        top = max(sizes)
        nom = measure_station(nominal, f"sqlite:///{Path(tmp) / 'nominal.db'}", warmup, seconds)
    settings = {"backend": backend, "model": model, "frame_size": [width, height], "in_flight": in_flight,
                "streams": streams, "run_precision": precision}
    return _report(settings, by_cameras, pipeline, top, rounds, nominal, nom)


def _nominal_station(
    nominal: StationConfig | None, model: str, backend: str, *, threads: int, streams: int | str, precision: str,
    in_flight: int,
) -> StationConfig:
    """The station measured at its nominal rate (default: the built-in ``demo``) on this bench's runtime."""
    if nominal is None:
        from inspector.config import load_station

        nominal = load_station("demo")
    return nominal.model_copy(update={
        "model": nominal.model.model_copy(update={"name": model, "backend": backend, "threads": threads,
                                                   "streams": streams, "precision": precision}),
        "scheduler": nominal.scheduler.model_copy(update={"in_flight": in_flight}),
    })


def _report(
    settings: dict[str, Any], by_cameras: dict[str, Any], pipeline: dict[str, Any], top: int, rounds: int,
    nominal: StationConfig, nom: dict[str, Any],
) -> dict[str, Any]:
    """The bench's JSON: ``settings`` first, then the pure backend, the pipeline at each camera count
    (``top`` the largest), the precisions as each ran it, and the station at its nominal rate."""
    sat = pipeline[str(top)]
    fps_per_camera = sum(c.fps for c in nominal.cameras) / max(1, len(nominal.cameras))
    return {
        **settings,
        # what the 8-camera station's runtime ran (``auto`` resolved)
        "ran_precision": pipeline[str(top)]["precision"],
        "pure_backend_fps": pipeline[str(top)]["pure_fps"],
        "pure_backend_fps_by_batch": {k: v["pure_fps"] for k, v in pipeline.items()},
        "pipeline_fps": {k: v["fps"] for k, v in pipeline.items()},
        # the median over rounds of pipeline / pure measured back to back (not the ratio of the two medians)
        "efficiency": {k: v["efficiency"] for k, v in pipeline.items()},
        # the same rounds' runtime-alone core-ms a frame over the pipeline's (the process's CPU time, all threads)
        "cpu_efficiency": {k: v["cpu_efficiency"] for k, v in pipeline.items()},
        "rounds": rounds,
        "mean_batch": {k: v["mean_batch"] for k, v in pipeline.items()},
        "non_inference_ms_per_frame": {k: v["non_inference_ms_per_frame"] for k, v in pipeline.items()},
        "precision": by_cameras[str(top)],
        "precision_by_cameras": by_cameras,
        "precision_by_station": {k: v["precision"] for k, v in pipeline.items()},
        "nominal": {
            "station": nominal.name,
            "cameras": len(nominal.cameras),
            "fps_per_camera": fps_per_camera,
            "fps": nom["fps"],
            "busy_fraction": nom["busy_fraction"],
            "p50_ms": nom["latency_ms"]["p50"],
            "p99_ms": nom["latency_ms"]["p99"],
            "dropped": nom["dropped"],
            "mean_batch": nom["mean_batch"],
        },
        "latency_ms": nom["latency_ms"],
        "latency_nominal": {"cameras": len(nominal.cameras), "fps_per_camera": fps_per_camera, **nom},
        "latency_saturation": {"cameras": top, "latency_ms": sat["latency_ms"], "stages_ms": sat["stages_ms"]},
        "stages_ms": nom["stages_ms"],
        "pipeline_detail": pipeline,
    }


def precision_fps(
    backend: str, model: str, max_batch: int, seconds: float, threads: int, depth: int, streams: int | str,
    cameras: int,
) -> dict[str, Any]:
    """Every gated precision (`precision_choice.measure`: f32, bf16 where the CPU has it, the INT8 IR where its
    gate passed) as a station of ``cameras`` cameras runs it (its scheduler, batch, batches in flight and
    streams), in turns, round after round; the result goes to the cache that ``auto`` reads, so the station
    measured after it runs the winner. Also what ``auto`` chose, and why."""
    batch = min(cameras, max_batch)
    out: dict[str, Any] = {"batch": batch, "cameras": cameras}
    if backend != "openvino":
        return {**out, "f32": None, "int8": None, "int8_over_f32": None, "note": f"{backend}: f32 only"}
    import openvino as ov

    from inspector.pipeline.backends import precision_choice as pc

    card = load_card(model)
    settings = pc.Settings("CPU", max_batch, threads, streams, depth, _STATION_IOU, batch)
    m = pc.measure_and_store(card, settings, seconds)
    choice = pc.choose_auto(ov.Core(), card, settings)
    fps = m.fps
    f32, int8 = fps.get("f32"), fps.get("int8")
    timed = any(v > 0 for v in fps.values())
    return {
        **out,
        "fps": fps,
        "rounds": m.rounds,
        "ranking": m.ranking(),
        "winner": m.winner if timed else None,
        "why": pc.pick(m.rounds).describe() if timed else None,
        "cpu_share": m.cpu_share,
        "skipped": m.skipped,
        "auto": {"precision": choice.precision, "reason": choice.reason, "measured": choice.measured},
        "f32": {"fps": f32} if f32 else None,
        "int8": {"fps": int8, "gate_passed": card.int8_gate_passed} if int8 else None,
        "int8_over_f32": int8 / f32 if int8 and f32 else None,
        **({"note": f"int8 not measured: {m.skipped['int8']}"} if "int8" in m.skipped else {}),
    }
