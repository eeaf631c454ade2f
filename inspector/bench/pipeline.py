"""Side-by-side throughput and latency: pure backend vs the full station pipeline.

Everything runs in one process, one after the other, on the same model file and the
same rendered frames, so the ratios compare like with like on a noisy machine.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from camera.renderer import render_part
from inspector.pipeline.backends import create_backend
from inspector.config import SimulatedCameraConfig, StationConfig
from inspector.pipeline.model_repo import load_card
from inspector.pipeline.preprocess import Letterbox, letterbox_into
from inspector.ops.run_stats import percentiles
from inspector.station import Station

log = logging.getLogger(__name__)

BENCH_SEED = 3_000_000


def bench_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """The frames every measurement uses (held-out seeds, a quarter Mono8 like the demo)."""
    return [render_part(BENCH_SEED + i, width, height, mono=(i % 4 == 3)).image for i in range(n)]


def pure_backend_fps(
    backend: str,
    model: str,
    batch_sizes: list[int],
    seconds: float,
    threads: int,
    frames: list[np.ndarray],
    *,
    depth: int = 1,
    streams: int = 0,
    precision: str = "auto",
) -> dict[int, float]:
    """Frames per second of the runtime alone, per batch size (the bound): already letterboxed
    batches, ``depth`` of them in flight at once as the station's worker keeps them (the same
    backend settings: streams, precision), nothing else running."""
    card = load_card(model, int8=precision == "int8")
    be = create_backend(backend, card, max_batch=max(batch_sizes), threads=threads, precision=precision,
                        depth=depth, streams=streams)
    out: dict[int, float] = {}
    start = getattr(be, "start", None)
    for bs in batch_sizes:
        batch = np.empty((bs, card.input_height, card.input_width, 3), np.uint8)
        for i in range(bs):
            f = frames[i % len(frames)]
            box = Letterbox.fit(f.shape[1], f.shape[0], card.input_width, card.input_height)
            letterbox_into(batch[i], f, "Mono8" if f.ndim == 2 else "BGR8", box)
        drain = None
        if start is None:  # a backend without slots: one batch at a time
            run_once = lambda: be.infer_preprocessed(batch)  # noqa: E731
        else:
            for slot in range(be.depth):
                be.slot_buffer(slot)[:bs] = batch
            run_once, drain = _keep_in_flight(be, bs)
        for _ in range(3 * max(1, depth)):
            run_once()
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            run_once()
            n += 1
        out[bs] = n * bs / (time.perf_counter() - t0)
        if drain is not None:
            drain()  # the next batch size starts on idle slots
    be.close()  # waits for the batches still in flight
    return out


def _keep_in_flight(be: Any, n: int) -> tuple[Any, Any]:
    """A step that waits for the oldest batch in flight and starts its slot again (``be.depth``
    batches stay in flight between steps, as in the station's worker), and a drain that waits
    for all of them."""
    from collections import deque

    pending = deque((slot, be.start(slot, n)) for slot in range(be.depth))

    def step() -> None:
        slot, p = pending.popleft()
        p.wait()
        pending.append((slot, be.start(slot, n)))

    def drain() -> None:
        while pending:
            pending.popleft()[1].wait()

    return step, drain


def station_config(
    n_cameras: int, fps: float, model: str, backend: str, threads: int, width: int, height: int, max_batch: int,
    *, in_flight: int = 2, streams: int = 0, precision: str = "auto",
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


def measure_station(cfg: StationConfig, db_url: str, warmup: float, seconds: float) -> dict[str, Any]:
    """Run a station, discard ``warmup`` seconds, measure the next ``seconds``."""
    st = Station(cfg, db_url=db_url, archive=False)  # renders the simulated banks: rendering is not the pipeline
    st.start()
    try:
        time.sleep(warmup)
        from inspector.ops.run_stats import RunStats

        st.stats = RunStats()
        w0 = [(w.stats.frames, w.stats.busy_s, w.stats.infer_s, w.stats.batches, w.stats.items) for w in st.workers]
        c0 = {cid: cam.pool.snapshot() for cid, cam in st.cameras.items()}
        t0 = time.perf_counter()
        time.sleep(seconds)
        t1 = time.perf_counter()
        c1 = {cid: cam.pool.snapshot() for cid, cam in st.cameras.items()}
        w1 = [(w.stats.frames, w.stats.busy_s, w.stats.infer_s, w.stats.batches, w.stats.items) for w in st.workers]
    finally:
        st.stop()
    inspected = sum(c1[c].inspected - c0[c].inspected for c in c1)
    dropped = sum(c1[c].dropped - c0[c].dropped for c in c1)
    frames = sum(b[0] - a[0] for a, b in zip(w0, w1))
    busy = sum(b[1] - a[1] for a, b in zip(w0, w1))
    infer = sum(b[2] - a[2] for a, b in zip(w0, w1))
    batches = sum(b[3] - a[3] for a, b in zip(w0, w1))
    items = sum(b[4] - a[4] for a, b in zip(w0, w1))
    lat = [v for cs in st.stats.cameras.values() for v in cs.latency_ms]
    return {
        "fps": inspected / (t1 - t0),
        "inspected": inspected,
        "dropped": dropped,
        "busy_fraction": busy / (t1 - t0) / max(1, len(w0)),
        "mean_batch": items / batches if batches else 0.0,
        "non_inference_ms_per_frame": (busy - infer) / frames * 1e3 if frames else 0.0,
        "inference_ms_per_frame": infer / frames * 1e3 if frames else 0.0,
        "latency_ms": percentiles(lat),
        "stages_ms": st.stats.stage_percentiles(),
        "db_rows_written": st.db_writer.rows_written if st.db_writer is not None else 0,
    }


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
    in_flight: int = 2,
    streams: int = 0,
    precision: str = "auto",
    nominal: StationConfig | None = None,
) -> dict[str, Any]:
    """The full side-by-side: pure backend (at each precision), pipeline at each camera count,
    and a station at its nominal rate (``nominal``: the built-in ``demo``, 8 cameras x 5 fps)."""
    frames = bench_frames(32, width, height)
    sizes = sorted(set(cameras))
    pure_s = min(6.0, seconds / 2)
    pure = pure_backend_fps(backend, model, sizes, pure_s, threads, frames, depth=in_flight, streams=streams,
                            precision=precision)
    by_precision = precision_fps(backend, model, max(sizes), pure_s, threads, frames, in_flight, streams)
    pipeline: dict[str, Any] = {}
    if nominal is None:
        from inspector.config import load_station

        nominal = load_station("demo")
    nominal = nominal.model_copy(update={
        "model": nominal.model.model_copy(update={"name": model, "backend": backend, "threads": threads,
                                                   "streams": streams, "precision": precision}),
        "scheduler": nominal.scheduler.model_copy(update={"in_flight": in_flight}),
    })
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            cfg = station_config(n, 0.0, model, backend, threads, width, height, max_batch, in_flight=in_flight,
                                 streams=streams, precision=precision)
            pipeline[str(n)] = measure_station(cfg, f"sqlite:///{Path(tmp) / f'sat{n}.db'}", warmup, seconds)
            log.info("pipeline %d cameras: %.1f fps", n, pipeline[str(n)]["fps"])
        top = max(sizes)
        nom = measure_station(nominal, f"sqlite:///{Path(tmp) / 'nominal.db'}", warmup, seconds)
    sat = pipeline[str(top)]
    fps_per_camera = sum(c.fps for c in nominal.cameras) / max(1, len(nominal.cameras))
    return {
        "backend": backend,
        "model": model,
        "frame_size": [width, height],
        "in_flight": in_flight,
        "streams": streams,
        "run_precision": precision,
        "pure_backend_fps": pure[top],
        "pure_backend_fps_by_batch": {str(k): v for k, v in pure.items()},
        "pipeline_fps": {k: v["fps"] for k, v in pipeline.items()},
        "efficiency": {k: v["fps"] / pure[int(k)] for k, v in pipeline.items()},
        "mean_batch": {k: v["mean_batch"] for k, v in pipeline.items()},
        "non_inference_ms_per_frame": {k: v["non_inference_ms_per_frame"] for k, v in pipeline.items()},
        "precision": by_precision,
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
    backend: str, model: str, batch: int, seconds: float, threads: int, frames: list[np.ndarray], depth: int,
    streams: int,
) -> dict[str, Any]:
    """Pure backend fps at batch ``batch`` in f32 and INT8 (the card's NNCF IR), alternating in
    rounds so that the machine's drift hits both alike; INT8 is None where the card has none."""
    out: dict[str, Any] = {"batch": batch}
    if backend != "openvino":
        return {**out, "f32": None, "int8": None, "int8_over_f32": None, "note": f"{backend}: f32 only"}
    card = load_card(model)
    has_int8 = card.int8 is not None
    runs: dict[str, list[float]] = {"f32": [], "int8": []}
    for _ in range(2):
        for p in ("f32", "int8") if has_int8 else ("f32",):
            fps = pure_backend_fps(backend, model, [batch], seconds / 2, threads, frames, depth=depth,
                                   streams=streams, precision=p)
            runs[p].append(fps[batch])
    f32 = max(runs["f32"])
    int8 = max(runs["int8"]) if runs["int8"] else None
    return {
        **out,
        "f32": {"fps": f32, "rounds": runs["f32"]},
        "int8": {"fps": int8, "rounds": runs["int8"], "gate_passed": card.int8_gate_passed} if int8 else None,
        "int8_over_f32": int8 / f32 if int8 else None,
        **({} if has_int8 else {"note": f"{model} has no INT8 model (inspector quantize)"}),
    }
