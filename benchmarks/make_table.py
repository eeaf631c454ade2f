"""Render an `inspector bench --json` result as the README's table for its kind of CPU.

The README keeps one block per kind of machine (``amx``, ``avx512-vnni``, ``avx2``, ...)
between ``<!-- bench:KIND:begin -->`` and ``<!-- bench:KIND:end -->``; a kind seen for the first
time gets a new block at the end of the benchmark section (before ``<!-- bench:end -->``).

    python benchmarks/make_table.py benchmarks/results/latest-amx.json README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _streams(v: object) -> str:
    if v == "auto":
        return "streams auto: one while the runtime is idle, two under load"
    return f"{v or 1} stream(s)"


def kind_markers(kind: str) -> tuple[str, str]:
    return f"<!-- bench:{kind}:begin -->", f"<!-- bench:{kind}:end -->"


def table(res: dict) -> str:
    m, c = res["machine"], res["cpu"]
    rows = [
        f"#### {c['kind']}: {c['model']}, {c['cores']} cores ({' '.join(c['isa'])})",
        "",
        f"Measured {m['date']}, backend `{res['backend']}` (precision {res.get('run_precision', 'auto')}, "
        f"{res['in_flight']} batches in flight, {_streams(res['streams'])}), model `{res['model']}`, "
        f"frames {res['frame_size'][0]}x{res['frame_size'][1]}; one run of `benchmarks/run.sh` "
        f"({res['bench_seconds']:.0f} s). Pure backend and pipeline are measured back to back in "
        f"{res['rounds']} rounds; efficiency is the median of the rounds' ratios, CPU efficiency the median of the "
        f"rounds' ratios of the process's CPU time a frame (runtime alone over pipeline; other load moves it less)."
        + (f" **Emulated**: OpenVINO ran with `ONEDNN_MAX_CPU_ISA={c['max_isa']}`, the kernels of a CPU with "
           f"only {', '.join(c['isa'])}, on this CPU ({' '.join(c['cpu_isa'])}): its clock, caches and memory, "
           f"not those of such a machine." if "max_isa" in c else ""),
        "",
        "| cameras | pure backend fps | pipeline fps | efficiency | CPU efficiency | mean batch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    cpu_eff = res.get("cpu_efficiency") or {}  # not in a bench JSON from before it was kept
    for k in res["pipeline_fps"]:
        rows.append(
            f"| {k} | {res['pure_backend_fps_by_batch'][k]:.1f} | {res['pipeline_fps'][k]:.1f} | "
            f"{res['efficiency'][k]:.3f} | {f'{cpu_eff[k]:.3f}' if k in cpu_eff else '-'} | {res['mean_batch'][k]:.2f} |"
        )
    p, nm = res["precision"], res["nominal"]
    rows.append("")
    by = res.get("precision_by_cameras") or ({str(p.get("cameras", p.get("batch", "?"))): p} if p.get("fps") else {})
    timed = {k: q for k, q in by.items() if q.get("fps")}
    if timed:
        names = [n for n in ("f32", "bf16", "int8") if any(n in q["fps"] for q in timed.values())]
        rows += [
            ("Precision as the station's pipeline runs it (every gated precision in turns, fps the median of the "
             "rounds), and what `auto` runs at each camera count:"),
            "",
            "| cameras | " + " | ".join(f"{n} fps" for n in names) + " | `auto` runs | why |",
            "|---:|" + "---:|" * len(names) + "---|---|",
        ]
        for k, q in timed.items():
            cells = " | ".join(f"{q['fps'][n]:.1f}" if n in q["fps"] else "-" for n in names)
            rows.append(f"| {k} | {cells} | **{(q.get('auto') or {}).get('precision', '?')}** | {q.get('why') or '?'} |")
        skipped = next(iter(timed.values())).get("skipped", {})
        rows += [f"\n{name} not measured: {why}." for name, why in skipped.items()]
    elif p.get("int8"):
        rows.append(
            f"Precision, pure backend at batch {p['batch']}: f32 {p['f32']['fps']:.1f} fps, INT8 {p['int8']['fps']:.1f} "
            f"fps: **INT8/f32 {p['int8_over_f32']:.2f}x**"
            + ("" if p["int8"].get("gate_passed") else " (the INT8 model failed its accuracy gate; `auto` does not pick it)")
            + "."
        )
    elif p.get("f32"):
        rows.append(f"Precision, pure backend at batch {p['batch']}: f32 {p['f32']['fps']:.1f} fps; {p.get('note', '')}.")
    rows.append("")
    rows.append(
        f"Nominal: station `{nm['station']}` ({nm['cameras']} cameras x {nm['fps_per_camera']:g} fps): "
        f"{nm['fps']:.1f} fps, worker busy **{nm['busy_fraction']:.0%}**, mean batch {nm['mean_batch']:.2f}, "
        f"p99 **{nm['p99_ms']:.1f} ms**, dropped **{nm['dropped']}**."
    )
    ln, ls = res["latency_nominal"], res["latency_saturation"]
    rows += [
        "",
        "| latency, frame acquired -> result | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| nominal: {ln['cameras']} cameras x {ln['fps_per_camera']:g} fps | {ln['latency_ms']['p50']:.1f} | {ln['latency_ms']['p99']:.1f} |",
        f"| saturation: {ls['cameras']} cameras free-running | {ls['latency_ms']['p50']:.1f} | {ls['latency_ms']['p99']:.1f} |",
        "",
        "Stages at the nominal rate (p50 ms): "
        + ", ".join(f"{k} {v['p50']:.2f}" for k, v in res["stages_ms"].items() if k != "total")
        + ".",
        "",
    ]
    u = res.get("ultralytics")
    if u:
        rows.append(
            f"Ultralytics `YOLO(...).predict` on the same model ({u['runtime']}): {u['fps_batch1']:.1f} fps at batch 1, "
            f"{u['fps_batch8']:.1f} fps at batch 8, {u['overhead_ms']:.2f} ms per frame over pure inference. "
            f"Our 8-camera pipeline: **{u['ratio']:.2f}x** Ultralytics' best (its floating point at "
            f"{u.get('precision_ran', '?')}; our `auto` ran {u.get('ours_precision', '?')})."
        )
        q = u.get("int8") or {}
        if u.get("comparisons"):
            rows += ["", "| ours (pipeline) | fps | Ultralytics predict | fps | ours / theirs |", "|---|---:|---|---:|---:|"]
            rows += [f"| {r['ours']}, {r['ours_precision']} | {r['ours_fps']:.1f} | {r['theirs']}, "
                     f"{r['theirs_precision']} ({r['theirs_batch']}) | {r['theirs_fps']:.1f} | **{r['ratio']:.2f}x** |"
                     for r in u["comparisons"]]
        elif "fps" in q:
            rows.append("")
            rows.append(
                f"At INT8 (Ultralytics' own INT8 recipe on the same ONNX file: NNCF MIXED, the Detect head and sigmoids "
                f"in floating point): {q['fps_batch1']:.1f} fps at batch 1, {q['fps_batch8']:.1f} fps at batch 8; our "
                f"{q.get('ours_cameras', 8)}-camera pipeline on our INT8 IR {q['ours_pipeline_fps']:.1f} fps: "
                f"**{q['ratio']:.2f}x** Ultralytics' best."
            )
        elif q:
            rows.append(f"Ultralytics at INT8: {q['note']}.")
    else:
        rows.append(f"Ultralytics: {res.get('ultralytics_note', 'not measured')}.")
    d = res.get("database")
    if d:
        rows += [
            "",
            (f"Database ({d['url_kind']}): **{d['inserts_per_s']:,.0f} results/s** sustained through the writer "
             f"({d['inserts']:,} results); history queries on a {d['rows']:,}-row database, first and next page of "
             f"200 per GUI filter: **p95 {d['query_p95_ms']:.1f} ms** (worst filter `{d['worst_query']}` "
             f"{d['worst_p95_ms']:.1f} ms)."),
        ]
    return "\n".join(rows)


def main(src: str, readme: str) -> None:
    res = json.loads(Path(src).read_text())
    text = Path(readme).read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{readme}: no {BEGIN} ... {END} markers")
    kb, ke = kind_markers(res["cpu"]["kind"])
    block = f"{kb}\n{table(res)}\n{ke}"
    if kb in text and ke in text:
        head, rest = text.split(kb, 1)
        _, tail = rest.split(ke, 1)
        text = f"{head}{block}{tail}"
    else:
        head, tail = text.split(END, 1)
        text = f"{head}{block}\n{END}{tail}"
    Path(readme).write_text(text)


if __name__ == "__main__":
    main(*sys.argv[1:3])
