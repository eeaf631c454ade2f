"""``inspector bench``: throughput, efficiency, latency, Ultralytics and database, side by side."""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


#: The instruction-set extensions that decide how fast the model runs on a CPU.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU's model name, which of `ISA_FLAGS` it has, and its kind for the README's tables:
    ``amx``, ``avx512-vnni``, ``avx2-vnni``, ``avx2`` (or ``other``).

    Under an ``ONEDNN_MAX_CPU_ISA`` limit (`inspector.pipeline.backends.isa`) ``isa`` lists what the kernels
    may use, ``kind`` gets ``-emulated`` (``avx2-emulated``), ``max_isa`` names the limit and
    ``cpu_isa`` what the CPU has. ``cpuinfo``: the text of ``/proc/cpuinfo`` (read when None)."""
    from inspector.pipeline.backends import isa

    model, flags = isa.read_cpuinfo(cpuinfo)
    have = [f for f in ISA_FLAGS if f in flags]
    used = isa.kept_flags(have)
    kind = next((k for flag, k in _KINDS if flag in used), "other")
    out: dict[str, Any] = {"model": model or platform.processor() or platform.machine(), "isa": used, "kind": kind,
                           "cores": os.cpu_count()}
    limit = isa.active_limit()
    if limit is not None and used != have:  # the kernels of a lesser CPU on this one: a table of its own
        out.update(kind=f"{kind}-emulated", max_isa=limit, cpu_isa=have)
    return out


#: (flag, kind), the most capable first: a CPU's kind is that of the first flag it has.
_KINDS = (("amx_tile", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx2-vnni"), ("avx2", "avx2"))


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = cpu_description()
    import onnxruntime
    import openvino

    return {
        "cpu": cpu["model"],
        "isa": cpu["isa"],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "openvino": openvino.__version__ if hasattr(openvino, "__version__") else openvino.get_version(),
        "onnxruntime": onnxruntime.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def run_bench(
    *,
    model: str,
    backend: str,
    cameras: list[int],
    threads: int = 0,
    seconds: float = 12.0,
    db: bool = True,
    ultralytics: bool = True,
    in_flight: int = 4,
    streams: int | str = "auto",
    precision: str = "auto",
    anomaly: str | None = None,
    anomaly_teach: int = 200,
    anomaly_images: Path | None = None,
) -> dict[str, Any]:
    """Everything in one run; see the README's benchmark section for what each number means.

    ``anomaly``: also the anomaly model's rows (`inspector.bench.anomaly`), teaching from ``anomaly_teach`` images,
    its ms per frame on ``anomaly_images`` (a folder of the product's own images) where given.
    """
    from inspector.bench.pipeline import bench_frames, run_pipeline_bench
    from inspector.pipeline.backends import precision_choice

    # the bench measures the precisions itself, first, with nothing else running: no child beside its stations
    precision_choice.BACKGROUND = False
    t0 = time.perf_counter()
    res = run_pipeline_bench(model=model, backend=backend, cameras=cameras, threads=threads, seconds=seconds,
                             in_flight=in_flight, streams=streams, precision=precision)
    res["cpu"] = cpu_description()
    res["machine"] = machine_description()
    ours = res["pipeline_fps"][str(max(cameras))]
    if ultralytics:
        from inspector.bench.ultralytics_compare import run_ultralytics, ultralytics_available

        reason = ultralytics_available()
        if reason is None:
            frames = bench_frames(32, 320, 320)
            try:  # a third-party package: what it raises is a line in the results, not the end of the bench
                u = run_ultralytics(model, frames, seconds=seconds)
            except Exception as exc:  # noqa: BLE001
                u, reason = None, f"Ultralytics predict failed: {_first_line(exc)}"
            if u is not None:
                pure1 = res["pure_backend_fps_by_batch"].get("1")
                u["overhead_ms"] = (1e3 / u["fps_batch1"] - 1e3 / pure1) if pure1 else None
                u["ratio"] = ours / u["fps"]
                u["ours_precision"] = res["ran_precision"]
                try:
                    u["int8"] = _ultralytics_int8(model, backend, max(cameras), threads, seconds, in_flight, streams,
                                                  frames)
                except Exception as exc:  # noqa: BLE001
                    u["int8"] = {"note": f"Ultralytics predict at INT8 failed: {_first_line(exc)}"}
                try:
                    u["comparisons"] = _comparisons(res, u, model, backend, max(cameras), threads, seconds,
                                                    in_flight, streams)
                except Exception as exc:  # noqa: BLE001
                    u["comparisons_note"] = f"our pipeline at Ultralytics' precision failed: {_first_line(exc)}"
            res["ultralytics"] = u
            if u is None:
                res["ultralytics_note"] = reason
        else:
            res["ultralytics"] = None
            res["ultralytics_note"] = reason
    else:
        res["ultralytics"] = None
        res["ultralytics_note"] = "skipped (--no-ultralytics)"
    if anomaly:
        from inspector.bench.anomaly import run_anomaly_bench

        res["anomaly"] = run_anomaly_bench(model=model, backend=backend, anomaly=anomaly, threads=threads,
                                           seconds=seconds, streams=streams, precision=precision,
                                           in_flight=in_flight, teach_images=anomaly_teach,
                                           images=anomaly_images)
    if db:
        from inspector.bench.database import run_db_bench

        res["database"] = run_db_bench()
    res["bench_seconds"] = time.perf_counter() - t0
    return res


def _comparisons(res: dict[str, Any], u: dict[str, Any], model: str, backend: str, cameras: int, threads: int,
                 seconds: float, in_flight: int, streams: int | str) -> list[dict[str, Any]]:
    """Our default against Ultralytics' default export and its INT8 recipe, and ours at the precision each of
    them ran: one row each, every row naming both precisions. Our side is the ``cameras``-camera pipeline; theirs
    is predict at its best batch (1 or 8)."""
    ours_default = res["pipeline_fps"][str(cameras)]
    ran = res["ran_precision"]
    q = u.get("int8") or {}

    def row(ours: str, ours_precision: str, ours_fps: float, theirs: str, t: dict[str, Any]) -> dict[str, Any]:
        best = "batch 8" if t["fps_batch8"] >= t["fps_batch1"] else "batch 1"
        return {"ours": ours, "ours_precision": ours_precision, "ours_fps": ours_fps, "theirs": theirs,
                "theirs_precision": t.get("precision_ran", "?"), "theirs_fps": t["fps"], "theirs_batch": best,
                "ratio": ours_fps / t["fps"]}

    rows = [row("our default (auto)", ran, ours_default, "its default export", u)]
    if "fps" in q:
        rows.append(row("our default (auto)", ran, ours_default, "its INT8 recipe", {**q, "precision_ran": "int8"}))
    theirs = u.get("precision_ran", "?")
    if theirs in ("f32", "bf16", "f16"):  # ours at the precision its default export ran
        same = ours_default if theirs == ran else _pipeline_at(theirs, model, backend, cameras, threads, seconds,
                                                                in_flight, streams)
        rows.append(row("ours at its precision", theirs, same, "its default export", u))
    if "fps" in q:
        same8 = ours_default if ran == "int8" else q["ours_pipeline_fps"]
        rows.append(row("ours at its precision", "int8", same8, "its INT8 recipe", {**q, "precision_ran": "int8"}))
    return rows


def _pipeline_at(precision: str, model: str, backend: str, cameras: int, threads: int, seconds: float,
                 in_flight: int, streams: int | str) -> float:
    """Our ``cameras``-camera pipeline's fps at ``precision``."""
    import tempfile
    from pathlib import Path

    from inspector.bench.pipeline import measure_station, station_config

    cfg = station_config(cameras, 0.0, model, backend, threads, 320, 320, 8, in_flight=in_flight, streams=streams,
                         precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        return float(measure_station(cfg, f"sqlite:///{Path(tmp) / 'same.db'}", 3.0, seconds)["fps"])


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _ultralytics_int8(model: str, backend: str, cameras: int, threads: int, seconds: float, in_flight: int,
                      streams: int | str, frames: list[Any]) -> dict[str, Any]:
    """Ultralytics predict on its INT8 recipe beside our pipeline of ``cameras`` cameras (as the floating-point
    comparison's) running the card's INT8 IR."""
    import tempfile
    from pathlib import Path

    from inspector.bench.pipeline import measure_station, station_config
    from inspector.bench.ultralytics_compare import int8_unavailable, run_ultralytics

    reason = int8_unavailable()
    if reason is not None:
        return {"note": reason}
    if backend != "openvino":
        return {"note": f"the INT8 comparison runs the OpenVINO backend, not {backend}"}
    u = run_ultralytics(model, frames, seconds=seconds, int8=True)
    cfg = station_config(cameras, 0.0, model, backend, threads, 320, 320, 8, in_flight=in_flight, streams=streams,
                         precision="int8")
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure_station(cfg, f"sqlite:///{Path(tmp) / 'int8.db'}", 3.0, seconds)
    u["ours_cameras"] = cameras
    u["ours_pipeline_fps"] = ours["fps"]
    u["ratio"] = ours["fps"] / u["fps"]
    return u


def format_table(res: dict[str, Any]) -> str:
    """A table a person can read."""
    lines = []
    m = res.get("machine", {})
    c = res.get("cpu", {})
    lines.append(
        f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, ISA {' '.join(c.get('isa', [])) or '?'} "
        f"({c.get('kind', '?')}); backend {res['backend']}; model {res['model']}; "
        f"precision {res.get('run_precision', 'auto')}, {res.get('in_flight', 1)} batch(es) in flight, "
        f"streams {res.get('streams', 0) or 1}"
    )
    lines.append("")
    lines.append(f"{'cameras':>8} {'precision':>9} {'pure backend fps':>17} {'pipeline fps':>13} {'efficiency':>11} "
                 f"{'CPU eff.':>9} {'mean batch':>11} {'non-inference ms/frame':>23}")
    cpu_eff = res.get("cpu_efficiency") or {}  # absent from a bench JSON before it was measured
    ran = res.get("precision_by_station") or {}
    for k in res["pipeline_fps"]:
        lines.append(
            f"{k:>8} {ran.get(k, '?'):>9} {res['pure_backend_fps_by_batch'][k]:17.1f} {res['pipeline_fps'][k]:13.1f} "
            f"{res['efficiency'][k]:11.3f} {cpu_eff[k] if k in cpu_eff else float('nan'):9.3f} "
            f"{res['mean_batch'][k]:11.2f} {res['non_inference_ms_per_frame'][k]:23.3f}"
        )
    ln = res["latency_nominal"]
    ls = res["latency_saturation"]
    lines.extend(_precision_lines(res))
    nm = res.get("nominal")
    if nm:
        lines.append(
            f"nominal: station {nm['station']} ({nm['cameras']} x {nm['fps_per_camera']:g} fps): {nm['fps']:.1f} fps, "
            f"worker busy {nm['busy_fraction']:.0%}, mean batch {nm['mean_batch']:.2f}, p99 {nm['p99_ms']:.1f} ms, "
            f"dropped {nm['dropped']}"
        )
    lines.append("")
    lines.append(
        f"latency, acquired -> result: nominal ({ln['cameras']} x {ln['fps_per_camera']:g} fps) p50 {ln['latency_ms']['p50']:.1f} ms, "
        f"p99 {ln['latency_ms']['p99']:.1f} ms; saturation p50 {ls['latency_ms']['p50']:.1f} ms, p99 {ls['latency_ms']['p99']:.1f} ms"
    )
    st = res["stages_ms"]
    lines.append(
        "stages at nominal rate, p50 ms: "
        + ", ".join(f"{k} {v['p50']:.2f}" for k, v in st.items() if k != "total")
    )
    lines.extend(_ultralytics_lines(res))
    from inspector.bench.anomaly import format_lines as anomaly_lines

    lines.extend(anomaly_lines(res.get("anomaly")))
    d = res.get("database")
    if d:
        lines.append(
            f"database ({d['url_kind']}): {d['inserts_per_s']:.0f} results/s through the writer; history queries on "
            f"{d['rows']:,} rows: p95 {d['query_p95_ms']:.1f} ms (worst filter {d['worst_query']}: {d['worst_p95_ms']:.1f} ms)"
        )
    lines.append(f"bench took {res.get('bench_seconds', 0):.0f} s")
    return "\n".join(lines)

def _precision_lines(res: dict[str, Any]) -> list[str]:
    """Every gated precision as each station ran it (median of the rounds) and what ``auto`` runs."""
    lines: list[str] = []
    by = res.get("precision_by_cameras") or {str(res.get("precision", {}).get("cameras", "?")): res.get("precision") or {}}
    timed = {k: p for k, p in by.items() if p.get("fps")}
    if timed:
        names = sorted({n for p in timed.values() for n in p["fps"]}, key=lambda n: ("f32", "bf16", "int8").index(n)
                       if n in ("f32", "bf16", "int8") else 9)
        lines.append("precision as the station's pipeline runs it (every gated precision in turns, fps = median of "
                     "the rounds):")
        lines.append(f"{'cameras':>8} " + " ".join(f"{n:>8}" for n in names) + "  auto runs")
        for k, p in timed.items():
            cells = " ".join(f"{p['fps'][n]:8.1f}" if n in p["fps"] else f"{'-':>8}" for n in names)
            a = p.get("auto") or {}
            ran = (res.get("precision_by_station") or {}).get(k)
            lines.append(f"{k:>8} {cells}  {a.get('precision', '?')}: {p.get('why') or '?'}"
                         + (f" (its station ran {ran})" if ran not in (None, a.get("precision")) else ""))
        for name, why in next(iter(timed.values())).get("skipped", {}).items():
            lines.append(f"{name:>8} not measured: {why}")
    else:
        p = res.get("precision") or {}
        if p.get("note"):
            lines.append(f"precision: {p['note']}")
    return lines


def _ultralytics_lines(res: dict[str, Any]) -> list[str]:
    """Ultralytics' predict beside ours, each row naming the precision it ran at."""
    lines: list[str] = []
    u = res.get("ultralytics")
    if u:
        lines.append(
            f"ultralytics predict ({u['runtime']}, at {u.get('precision_ran', '?')}): {u['fps_batch1']:.1f} fps "
            f"batch 1, {u['fps_batch8']:.1f} fps batch 8; overhead {u['overhead_ms']:.2f} ms/frame over pure inference"
        )
        q = u.get("int8") or {}
        if "fps" in q:
            lines.append(
                f"ultralytics predict, INT8 ({q['runtime']}): {q['fps_batch1']:.1f} fps batch 1, {q['fps_batch8']:.1f} fps "
                f"batch 8"
            )
        elif q:
            lines.append(f"ultralytics INT8: {q['note']}")
        rows = u.get("comparisons") or []
        if rows:
            lines.append(f"{'ours (pipeline)':<34} {'fps':>7}   {'ultralytics predict':<34} {'fps':>7} {'ours/theirs':>11}")
            for r in rows:
                ours = f"{r['ours']}, {r['ours_precision']}"
                theirs = f"{r['theirs']}, {r['theirs_precision']} ({r['theirs_batch']})"
                lines.append(f"{ours:<34} {r['ours_fps']:7.1f}   {theirs:<34} {r['theirs_fps']:7.1f} {r['ratio']:10.2f}x")
        elif u.get("comparisons_note"):
            lines.append(f"ultralytics comparisons: {u['comparisons_note']}")
    else:
        lines.append(f"ultralytics: {res.get('ultralytics_note', 'not measured')}")
    return lines
