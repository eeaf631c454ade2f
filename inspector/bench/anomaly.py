"""``inspector bench``'s anomaly rows: the anomaly model beside the detector, side by side in one run.

1. ms per frame at batch 8, frames already letterboxed: the detector alone (its station graph,
   `pipeline.PureRunner`), the anomaly model alone (`inspector.anomaly.runtime.AnomalyScorer`, compiled as the
   station's worker compiles it), and both as the station's worker runs them (the detector's batch started,
   the anomaly batch started, both waited for). Each with the station's ``in_flight`` batches inside the
   runtimes (`InFlight`), as a station runs batches of 8 (its cameras fill whole batches only when it is
   loaded, and then its worker keeps that many inside: the next batch's frames start while the last frames
   of one finish), and again one batch at a time (after a pause: the detector on its idle graph).
   All six take turns (`take_turns`: `ROUNDS` rounds, each running each for a share of the time, in rotated
   order), so that a shared machine's drift hits them alike; each figure is the median over the rounds of a
   turn's wall time per frame (and the best round, and the process's CPU time a frame: core-ms).
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
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The anomaly model the bench runs (shipped with the project).
DEFAULT_ANOMALY = "anomaly-plate-320"
BATCH = 8


#: Rounds the ms-per-frame figures take turns in (`take_turns`)
ROUNDS = 8
#: The pause before a one-batch-at-a-time figure's turn: longer than an OpenVINO backend stays on its loaded graph
#: after its last batch (`openvino_backend.LOADED_LINGER_NS`, 25 ms), so that it runs the idle graph again, as a
#: station does that decides one batch at a time
PAUSE_S = 0.05


def take_turns(steps: dict[str, Callable[[], None]], seconds: float, rounds: int = ROUNDS, *, batch: int = BATCH,
               warm: int = 2, least: int = 3, clock: Callable[[], float] = time.perf_counter,
               cpu_clock: Callable[[], float] = time.process_time) -> dict[str, dict[str, float]]:
    """Time ``steps`` (each runs one batch of ``batch`` frames) in turns: after ``warm`` untimed batches of each,
    every round runs each step for its share of ``seconds`` (``seconds / (rounds x steps)``, at least ``least``
    batches), round r starting with the r-th step (rotated), so that a change of the machine's load between
    rounds hits every step alike. A step with ``begin`` and ``end`` (`InFlight`) has them called at the start
    and the end of each turn (and around its warm-up), its turn counting the batches it ``waited`` for; one with
    a ``pause`` sleeps that long before each turn, untimed. Per step, in ms per frame: the ``median`` and the
    ``best`` of its turns (a turn's wall time over its frames: with batches in flight one wait may take two
    batches' time and the next none, so single batches are not timed), their ``mean``, ``core_ms`` (the
    process's CPU time over the frames, all threads) and the ``rounds``."""
    names = list(steps)
    for name in names:
        step = steps[name]
        if warm and hasattr(step, "begin"):
            step.begin()
        for _ in range(warm):
            step()
        if warm and hasattr(step, "end"):
            step.end()
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    share = seconds / max(1, rounds * len(names))
    for r in range(max(1, rounds)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, own = steps[name], times[name]
            begin, end = getattr(step, "begin", None), getattr(step, "end", None)
            pause = getattr(step, "pause", 0.0)
            if pause:  # not timed
                time.sleep(pause)
            waited = getattr(step, "waited", None)
            c0, t0 = cpu_clock(), clock()
            if begin is not None:  # `InFlight`: its first batches started
                begin()
            t_end, n = t0 + share, 0
            while n < least or clock() < t_end:
                step()
                n += 1
            if end is not None:  # the batches still inside finish before the next figure's turn
                end()
            done = n if waited is None else step.waited - waited  # type: ignore[attr-defined]
            # a batch's share of the whole turn, from the first start to the last batch's end: batches in flight
            # end in bunches, so single waits are not timed (and none is counted that the turn has not finished)
            own.append((clock() - t0) / done)
            cpu[name] += (cpu_clock() - c0) / done
    out = {}
    for name in names:
        v, frames = times[name], len(times[name]) * batch
        out[name] = {"median": statistics.median(v) * 1e3 / batch, "best": min(v) * 1e3 / batch,
                     "mean": sum(v) * 1e3 / frames, "core_ms": cpu[name] * 1e3 / frames, "rounds": len(v)}
    return out


class InFlight:
    """Batches kept ``depth`` deep inside a runtime, as a station's worker keeps them once its cameras fill whole
    batches (``in_flight``): `begin` starts ``depth``, each call waits for the oldest and starts another, `end`
    waits for the rest. A figure of `take_turns` (its calls timed: a batch's share of the runtime's time).

    Args:
        start: Starts one batch (given its number) and returns what `wait` takes.
        wait: Waits for a started batch.
        depth: Batches inside at once.
    """

    def __init__(self, start: Callable[[int], Any], wait: Callable[[Any], None], depth: int) -> None:
        self._start, self._wait, self.depth = start, wait, max(1, depth)
        self._inside: deque[Any] = deque()
        self._started = 0
        #: batches waited for so far
        self.waited = 0

    def _one(self) -> None:
        self._inside.append(self._start(self._started))
        self._started += 1

    def begin(self) -> None:
        while len(self._inside) < self.depth:
            self._one()

    def __call__(self) -> None:
        if not self._inside:
            self.begin()
        self._wait_oldest()
        self._one()

    def _wait_oldest(self) -> None:
        self._wait(self._inside.popleft())
        self.waited += 1

    def end(self) -> None:
        while self._inside:
            self._wait_oldest()


class OneAtATime(InFlight):
    """One batch at a time, after a pause: a backend that adapts its streams is back on its idle graph."""

    pause = PAUSE_S


def figures(runners: dict[str, tuple[Callable[[int], Any], Callable[[Any], None], int]],
            ) -> dict[str, Callable[[], None]]:
    """The figures `take_turns` times for each runner (``name: (start, wait, depth)``, as `InFlight` takes them):
    ``name`` with ``depth`` batches in flight, then ``name_one`` one batch at a time (`OneAtATime`), in that order
    (the order the turns rotate)."""
    out: dict[str, Callable[[], None]] = {name: InFlight(start, wait, depth)
                                          for name, (start, wait, depth) in runners.items()}
    out.update({f"{name}_one": OneAtATime(start, wait, 1) for name, (start, wait, _) in runners.items()})
    return out


def ms_per_frame(model: str, backend: str, anomaly: str, *, threads: int, seconds: float, streams: int | str,
                 precision: str, in_flight: int = 3, images: Path | None = None) -> dict[str, Any]:
    """Detector, anomaly model and both: ms per frame at batch 8 (see the module), with ``in_flight`` batches
    inside the runtimes as the station runs full batches, and one batch at a time. ``images``: a folder of the
    product's own images (searched recursively, the first 8, repeated where fewer) the anomaly model is timed on
    instead of the detector's bench frames: a part's aligned model costs what its own parts cost it (ECC converges
    on them; on frames unlike the part it runs its iterations out or gives up)."""
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.runtime import AnomalyScorer
    from inspector.bench.pipeline import PureRunner, bench_frames
    from inspector.pipeline.backends.base import CpuBatchBackend
    from inspector.pipeline.preprocess import Letterbox, letterbox_into

    depth = max(1, in_flight)
    frames = bench_frames(BATCH, 320, 320)
    runner = PureRunner(backend, model, BATCH, threads, frames, depth=depth, streams=streams, precision=precision)
    try:
        am = load_anomaly_model(anomaly)
        scorer = AnomalyScorer.for_model(am, depth=depth)  # as the station's worker compiles it
        batch = np.empty((BATCH, am.input_height, am.input_width, 3), np.uint8)
        own: list[Path] = []
        if images is not None:  # the product's own parts, letterboxed as teach and score letterbox them
            from inspector.anomaly.images import find_images, load_batch

            own = find_images([images])[:BATCH]
            loaded = load_batch(own, am.input_width, am.input_height, None)
            batch[:] = loaded[np.arange(BATCH) % len(loaded)]
        else:
            for dst, f in zip(batch, frames):
                letterbox_into(dst, f, "Mono8" if f.ndim == 2 else "BGR8",
                               Letterbox.fit(f.shape[1], f.shape[0], am.input_width, am.input_height))
        be = runner.be
        slotted = be if isinstance(be, CpuBatchBackend) else None
        slots = slotted.depth if slotted is not None else 1

        def detector_start(k: int) -> Any:  # one of the runner's slots, each holding the batch
            if slotted is None:  # a runtime without slots infers in the caller's thread
                runner.run(0.0, warm=1)
                return None
            return slotted.start(k % slots, BATCH)

        def detector_wait(p: Any) -> None:
            if p is None:
                return
            if hasattr(p, "decoded"):  # the graph's detections unread, as `PureRunner` leaves them
                p.wait(decode=False)
            else:
                p.wait()

        def both_start(k: int) -> Any:  # as the worker: the detector's batch, then the anomaly batch, both in flight
            if slotted is None:
                a = scorer.start(batch)
                runner.run(0.0, warm=1)
                return None, a
            return slotted.start(k % slots, BATCH), scorer.start(batch)

        def both_wait(pair: Any) -> None:
            detector_wait(pair[0])
            pair[1].wait()

        kept = depth if slotted is not None else 1
        turns = take_turns(figures({
            "detector": (detector_start, detector_wait, kept),
            "anomaly": (lambda k: scorer.start(batch), lambda p: p.wait(), depth),
            "both": (both_start, both_wait, kept),
        }), seconds)
        out: dict[str, Any] = {"batch": BATCH, "in_flight": depth, "rounds": ROUNDS}
        for key, m in turns.items():
            out[f"{key}_ms"] = m["median"]
            out[f"{key}_best_ms"] = m["best"]
            out[f"{key}_core_ms"] = m["core_ms"]
        out.update({"detector_precision": runner.precision, "anomaly_precision": am.precision,
                    "anomaly_model": am.name, "anomaly_input": [am.input_width, am.input_height],
                    "anomaly_streams": scorer.streams})
        if images is not None:
            out["anomaly_images"] = {"folder": str(images), "images": len(own)}
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
                      in_flight: int = 3, teach_images: int = 200, images: Path | None = None) -> dict[str, Any]:
    """All three parts (see the module); ``teach_images`` 0 leaves teaching out; ``images``: the anomaly model's ms
    per frame on a folder of the product's own images (`ms_per_frame`)."""
    import os

    out: dict[str, Any] = {"load_before": list(os.getloadavg())}
    out["ms_per_frame"] = ms_per_frame(model, backend, anomaly, threads=threads, seconds=seconds,
                                       streams=streams, precision=precision, in_flight=in_flight, images=images)
    out["station"] = station_with_anomaly(model, backend, anomaly, threads=threads, seconds=seconds,
                                          streams=streams, precision=precision, in_flight=in_flight)
    out["teach"] = teach_time(teach_images) if teach_images > 0 else None
    out["load_after"] = list(os.getloadavg())
    return out


def _how(m: dict[str, Any]) -> str:
    if "in_flight" not in m:
        return ""
    return f" ({m['in_flight']} batches in flight, medians of {m['rounds']} rounds in turns)"


def format_lines(res: dict[str, Any] | None) -> list[str]:
    """The anomaly rows of `inspector.bench.format_table` (nothing when the bench ran without them)."""
    if not res:
        return []
    m, s, t = res["ms_per_frame"], res["station"], res.get("teach")
    lines = [
        "",
        (f"anomaly model {m['anomaly_model']} ({m['anomaly_input'][0]}x{m['anomaly_input'][1]}, "
         f"{m['anomaly_precision']}) beside the detector ({m['detector_precision']}), ms per frame at batch "
         f"{m['batch']}: detector {m['detector_ms']:.2f}, anomaly {m['anomaly_ms']:.2f}, both "
         f"{m['both_ms']:.2f}{_how(m)}"),
    ]
    if m.get("anomaly_images"):
        lines.append(f"  the anomaly model on {m['anomaly_images']['images']} images of {m['anomaly_images']['folder']} "
                     "(the detector on its bench frames)")
    if "in_flight" in m:  # taken in turns (`take_turns`); results of older benches have one line only
        lines.append(f"  best of the rounds: detector {m['detector_best_ms']:.2f}, anomaly {m['anomaly_best_ms']:.2f}, "
                     f"both {m['both_best_ms']:.2f}; core-ms per frame (CPU time, all threads): detector "
                     f"{m['detector_core_ms']:.2f}, anomaly {m['anomaly_core_ms']:.2f}, both {m['both_core_ms']:.2f}")
        lines.append(f"  one batch at a time: detector {m['detector_one_ms']:.2f}, anomaly {m['anomaly_one_ms']:.2f}, "
                     f"both {m['both_one_ms']:.2f} (best {m['detector_one_best_ms']:.2f}, "
                     f"{m['anomaly_one_best_ms']:.2f}, {m['both_one_best_ms']:.2f})")
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
