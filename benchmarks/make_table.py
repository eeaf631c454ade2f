"""Render benchmarks/results/*.json as the README's benchmark table (between markers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def table(res: dict) -> str:
    m = res["machine"]
    rows = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), backend `{res['backend']}`, model `{res['model']}`, "
        f"frames {res['frame_size'][0]}x{res['frame_size'][1]}; one run of `benchmarks/run.sh` "
        f"({res['bench_seconds']:.0f} s).",
        "",
        "| cameras | pure backend fps | pipeline fps | efficiency | mean batch | non-inference ms/frame |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for k in res["pipeline_fps"]:
        rows.append(
            f"| {k} | {res['pure_backend_fps_by_batch'][k]:.1f} | {res['pipeline_fps'][k]:.1f} | "
            f"{res['efficiency'][k]:.3f} | {res['mean_batch'][k]:.2f} | {res['non_inference_ms_per_frame'][k]:.3f} |"
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
            f"Our 8-camera pipeline: **{u['ratio']:.2f}x** Ultralytics' best."
        )
    else:
        rows.append(f"Ultralytics: {res.get('ultralytics_note', 'not measured')}.")
    d = res.get("database")
    if d:
        rows += [
            "",
            f"Database ({d['url_kind']}): **{d['inserts_per_s']:,.0f} results/s** sustained through the writer "
            f"({d['inserts']:,} results); history queries on a {d['rows']:,}-row database, first and next page of "
            f"200 per GUI filter: **p95 {d['query_p95_ms']:.1f} ms** (worst filter `{d['worst_query']}` "
            f"{d['worst_p95_ms']:.1f} ms).",
        ]
    return "\n".join(rows)


def main(src: str, readme: str) -> None:
    res = json.loads(Path(src).read_text())
    text = Path(readme).read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{readme}: no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    Path(readme).write_text(f"{head}{BEGIN}\n{table(res)}\n{END}{tail}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
