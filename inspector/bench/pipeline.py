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
    backend: str, model: str, batch_sizes: list[int], seconds: float, threads: int, frames: list[np.ndarray]
) -> dict[int, float]:
    """Frames per second of ``backend.infer_preprocessed`` alone, per batch size (the bound)."""
    card = load_card(model)
    be = create_backend(backend, card, max_batch=max(batch_sizes), threads=threads)
    out: dict[int, float] = {}
    for bs in batch_sizes:
        batch = np.empty((bs, card.input_height, card.input_width, 3), np.uint8)
        for i in range(bs):
            f = frames[i % len(frames)]
            box = Letterbox.fit(f.shape[1], f.shape[0], card.input_width, card.input_height)
            letterbox_into(batch[i], f, "Mono8" if f.ndim == 2 else "BGR8", box)
        for _ in range(3):
            be.infer_preprocessed(batch)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            be.infer_preprocessed(batch)
            n += 1
        out[bs] = n * bs / (time.perf_counter() - t0)
    be.close()
    return out


def station_config(
    n_cameras: int, fps: float, model: str, backend: str, threads: int, width: int, height: int, max_batch: int
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
            "model": {"name": model, "backend": backend, "threads": threads},
            "scheduler": {"max_batch": max_batch, "max_wait_ms": 4.0},
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
    nominal_fps: float = 5.0,
    seconds: float = 12.0,
    warmup: float = 3.0,
    max_batch: int = 8,
) -> dict[str, Any]:
    """The full side-by-side: pure backend, pipeline at each camera count, latency."""
    frames = bench_frames(32, width, height)
    sizes = sorted(set(cameras))
    pure = pure_backend_fps(backend, model, sizes, min(6.0, seconds / 2), threads, frames)
    pipeline: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            cfg = station_config(n, 0.0, model, backend, threads, width, height, max_batch)
            pipeline[str(n)] = measure_station(cfg, f"sqlite:///{Path(tmp) / f'sat{n}.db'}", warmup, seconds)
            log.info("pipeline %d cameras: %.1f fps", n, pipeline[str(n)]["fps"])
        top = max(sizes)
        nominal = measure_station(
            station_config(top, nominal_fps, model, backend, threads, width, height, max_batch),
            f"sqlite:///{Path(tmp) / 'nominal.db'}",
            warmup,
            seconds,
        )
    sat = pipeline[str(top)]
    return {
        "backend": backend,
        "model": model,
        "frame_size": [width, height],
        "pure_backend_fps": pure[top],
        "pure_backend_fps_by_batch": {str(k): v for k, v in pure.items()},
        "pipeline_fps": {k: v["fps"] for k, v in pipeline.items()},
        "efficiency": {k: v["fps"] / pure[int(k)] for k, v in pipeline.items()},
        "mean_batch": {k: v["mean_batch"] for k, v in pipeline.items()},
        "non_inference_ms_per_frame": {k: v["non_inference_ms_per_frame"] for k, v in pipeline.items()},
        "latency_ms": nominal["latency_ms"],
        "latency_nominal": {"cameras": top, "fps_per_camera": nominal_fps, **nominal},
        "latency_saturation": {"cameras": top, "latency_ms": sat["latency_ms"], "stages_ms": sat["stages_ms"]},
        "stages_ms": nominal["stages_ms"],
        "pipeline_detail": pipeline,
    }
