"""``inspector bench``'s anomaly rows: the anomaly model beside the detector, side by side in one run.

1. ms per frame at batch 8, one batch at a time, frames already letterboxed: the detector alone (its station
   graph, `pipeline.PureRunner`), the anomaly model alone (`inspector.anomaly.runtime.AnomalyScorer`), and
   both as the station's worker runs them (the detector's batch started, the anomaly batch started, both
   waited for). The three take turns (`take_turns`: `ROUNDS` rounds, each running each of them for a share of
   the time, in rotated order), so that a shared machine's drift hits them alike; each figure is the median
   of its timed batches (and the best, and the process's CPU time a frame: core-ms).
2. The demo station's 8 cameras x 5 fps with the anomaly model on every camera beside the detector (and the
   same station with the detector alone): worker busy fraction, frames dropped, p99 latency.
3. Teaching time for N good images (default 200, 320 x 320, of the ``plate`` family the renderer draws),
   the backbone already converted (as on a station after its first teach).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The anomaly model the bench runs (shipped with the project).
DEFAULT_ANOMALY = "anomaly-plate-320"
BATCH = 8


#: Rounds the three ms-per-frame figures take turns in (`take_turns`)
ROUNDS = 8


def take_turns(steps: dict[str, Callable[[], None]], seconds: float, rounds: int = ROUNDS, *, batch: int = BATCH,
               warm: int = 2, least: int = 3, clock: Callable[[], float] = time.perf_counter,
               cpu_clock: Callable[[], float] = time.process_time) -> dict[str, dict[str, float]]:
    """Time ``steps`` (each runs one batch of ``batch`` frames) in turns: after ``warm`` untimed batches of each,
    every round runs each step for its share of ``seconds`` (``seconds / (rounds x steps)``, at least ``least``
    batches), round r starting with the r-th step (rotated), so that a change of the machine's load between
    rounds hits every step alike. Per step, in ms per frame: ``median`` and ``best`` of its batches, ``mean``
    (its wall time over its frames) and ``core_ms`` (the process's CPU time over its frames, all threads);
    ``batches`` timed."""
    names = list(steps)
    for name in names:
        for _ in range(warm):
            steps[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    share = seconds / max(1, rounds * len(names))
    for r in range(max(1, rounds)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, own = steps[name], times[name]
            c0, t_end, n = cpu_clock(), clock() + share, 0
            while n < least or clock() < t_end:
                t0 = clock()
                step()
                own.append(clock() - t0)
                n += 1
            cpu[name] += cpu_clock() - c0
    out = {}
    for name in names:
        v, frames = times[name], len(times[name]) * batch
        out[name] = {"median": statistics.median(v) * 1e3 / batch, "best": min(v) * 1e3 / batch,
                     "mean": sum(v) * 1e3 / frames, "core_ms": cpu[name] * 1e3 / frames, "batches": len(v)}
    return out


def ms_per_frame(model: str, backend: str, anomaly: str, *, threads: int, seconds: float, streams: int | str,
                 precision: str) -> dict[str, Any]:
    """Detector, anomaly model and both: ms per frame at batch 8 (see the module)."""
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.runtime import AnomalyScorer
    from inspector.bench.pipeline import PureRunner, bench_frames
    from inspector.pipeline.backends.base import CpuBatchBackend
    from inspector.pipeline.preprocess import Letterbox, letterbox_into

    frames = bench_frames(BATCH, 320, 320)
    runner = PureRunner(backend, model, BATCH, threads, frames, depth=1, streams=streams, precision=precision)
    try:
        am = load_anomaly_model(anomaly)
        scorer = AnomalyScorer.for_model(am, depth=1)
        batch = np.empty((BATCH, am.input_height, am.input_width, 3), np.uint8)
        for dst, f in zip(batch, frames):
            letterbox_into(dst, f, "Mono8" if f.ndim == 2 else "BGR8",
                           Letterbox.fit(f.shape[1], f.shape[0], am.input_width, am.input_height))
        be = runner.be
        slotted = be if isinstance(be, CpuBatchBackend) else None

        def anomaly_alone() -> None:
            scorer.score(batch)

        def both() -> None:  # as the worker: the detector's batch, then the anomaly batch, both in flight
            if slotted is None:  # a runtime without slots infers in the caller's thread, the anomaly batch meanwhile
                a = scorer.start(batch)
                runner.run(0.0, warm=1)
                a.wait()
                return
            p: Any = slotted.start(0, BATCH)  # the OpenVINO graph's pending batch may decode or not
            a = scorer.start(batch)
            if hasattr(p, "decoded"):  # the graph's detections unread, as `PureRunner` leaves them
                p.wait(decode=False)
            else:
                p.wait()
            a.wait()

        def detector_alone() -> None:  # one batch of 8 at a time (depth 1), its detections unread
            if slotted is None:
                runner.run(0.0, warm=1)
                return
            p: Any = slotted.start(0, BATCH)
            if hasattr(p, "decoded"):
                p.wait(decode=False)
            else:
                p.wait()

        turns = take_turns({"detector": detector_alone, "anomaly": anomaly_alone, "both": both}, seconds)
        out: dict[str, Any] = {"batch": BATCH, "rounds": ROUNDS}
        for key, m in turns.items():
            out[f"{key}_ms"] = m["median"]
            out[f"{key}_best_ms"] = m["best"]
            out[f"{key}_core_ms"] = m["core_ms"]
        out.update({"detector_precision": runner.precision, "anomaly_precision": am.precision,
                    "anomaly_model": am.name, "anomaly_input": [am.input_width, am.input_height],
                    "anomaly_streams": scorer.streams})
    finally:
        runner.close()
    return out


def station_with_anomaly(model: str, backend: str, anomaly: str, *, threads: int, seconds: float,
                         streams: int | str, precision: str, in_flight: int) -> dict[str, Any]:
    """The demo station (8 cameras x 5 fps) with the detector alone, then with the anomaly model on every camera."""
    from inspector.bench.pipeline import _nominal_station, measure_station
    from inspector.config import AnomalyConfig

    base = _nominal_station(None, model, backend, threads=threads, streams=streams, precision=precision,
                            in_flight=in_flight)
    with_anomaly = base.model_copy(update={"cameras": [
        c.model_copy(update={"anomaly": AnomalyConfig(model=anomaly)}) for c in base.cameras]})
    out: dict[str, Any] = {"station": base.name, "cameras": len(base.cameras),
                           "fps_per_camera": float(base.cameras[0].fps)}
    for key, cfg in (("detector", base), ("both", with_anomaly)):
        m = measure_station(cfg, "none", 3.0, seconds)
        out[key] = {"fps": m["fps"], "busy_fraction": m["busy_fraction"], "dropped": m["dropped"],
                    "inspected": m["inspected"], "p99_ms": m["latency_ms"]["p99"]}
        log.info("anomaly bench: %s: busy %.0f%%, dropped %d", key, 100 * m["busy_fraction"], m["dropped"])
    return out


def teach_time(images: int, *, family: str = "plate", size: int = 320) -> dict[str, Any]:
    """Seconds to teach from ``images`` rendered good parts (the backbone converted beforehand, not timed)."""
    from camera.products import write_family
    from inspector.anomaly import teach
    from inspector.anomaly.backbone import cached_feature_model

    cached_feature_model(teach.DEFAULT_SPEC, size, size)  # converted once per machine, as on a station
    with tempfile.TemporaryDirectory() as tmp:
        write_family(family, Path(tmp), images, 0, seed=0, width=size, height=size)
        t0 = time.perf_counter()
        report = teach.teach([Path(tmp) / "good"], Path(tmp) / "model", width=size, height=size)
        seconds = time.perf_counter() - t0
    return {"images": images, "family": family, "size": size, "seconds": seconds, "bank_rows": report.bank_rows}


def run_anomaly_bench(*, model: str, backend: str, anomaly: str = DEFAULT_ANOMALY, threads: int = 0,
                      seconds: float = 12.0, streams: int | str = "auto", precision: str = "auto",
                      in_flight: int = 3, teach_images: int = 200) -> dict[str, Any]:
    """All three parts (see the module); ``teach_images`` 0 leaves teaching out."""
    import os

    out: dict[str, Any] = {"load_before": list(os.getloadavg())}
    out["ms_per_frame"] = ms_per_frame(model, backend, anomaly, threads=threads, seconds=seconds,
                                       streams=streams, precision=precision)
    out["station"] = station_with_anomaly(model, backend, anomaly, threads=threads, seconds=seconds,
                                          streams=streams, precision=precision, in_flight=in_flight)
    out["teach"] = teach_time(teach_images) if teach_images > 0 else None
    out["load_after"] = list(os.getloadavg())
    return out


def format_lines(res: dict[str, Any] | None) -> list[str]:
    """The anomaly rows of `inspector.bench.format_table` (nothing when the bench ran without them)."""
    if not res:
        return []
    m, s, t = res["ms_per_frame"], res["station"], res.get("teach")
    lines = [
        "",
        (f"anomaly model {m['anomaly_model']} ({m['anomaly_input'][0]}x{m['anomaly_input'][1]}, "
         f"{m['anomaly_precision']}) beside the detector ({m['detector_precision']}), ms per frame at batch "
         f"{m['batch']}: detector {m['detector_ms']:.2f}, anomaly {m['anomaly_ms']:.2f}, both {m['both_ms']:.2f}"),
    ]
    if "rounds" in m:  # taken in turns (`take_turns`); results of older benches have the medians only
        lines.append(f"  in turns, {m['rounds']} rounds: best detector {m['detector_best_ms']:.2f}, anomaly "
                     f"{m['anomaly_best_ms']:.2f}, both {m['both_best_ms']:.2f}; core-ms per frame (CPU time, all "
                     f"threads) detector {m['detector_core_ms']:.2f}, anomaly {m['anomaly_core_ms']:.2f}, both "
                     f"{m['both_core_ms']:.2f}")
    for key, what in (("detector", "detector alone"), ("both", "detector + anomaly")):
        r = s[key]
        lines.append(f"station {s['station']} ({s['cameras']} x {s['fps_per_camera']:g} fps), {what}: "
                     f"{r['fps']:.1f} fps, worker busy {r['busy_fraction']:.0%}, dropped {r['dropped']}, "
                     f"p99 {r['p99_ms']:.1f} ms")
    if t:
        lines.append(f"teach: {t['images']} good {t['size']}x{t['size']} {t['family']} images in {t['seconds']:.1f} s "
                     f"(bank {t['bank_rows']} rows)")
    lines.append(f"load average before {res['load_before'][0]:.1f}, after {res['load_after'][0]:.1f}")
    return lines
