"""Where INT8 gains and where it does not: each convolution's time in the INT8 IR beside f32 and bf16.

OpenVINO's per-node profiling (PERF_COUNT) of the same batch through the card's INT8 IR and the
FP32 graph compiled at f32 (and at bf16 where the CPU has it), averaged over the runs after a
warm-up. Convolutions are matched by name and grouped by input channels and kernel size, so it
shows which layer shapes the CPU's INT8 kernels speed up; the rest of the graph (reorders,
concatenations, quantize/dequantize) is summed by node type.

    python benchmarks/int8_layers.py --model defect-yolo11p-320 --batch 8 --runs 20

Profiling slows every node a little; compare the columns, not the totals with other benchmarks.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.bench import cpu_description
from inspector.pipeline.backends.openvino_backend import runtime_model
from inspector.pipeline.model_repo import int8_model_path, load_card


def profile(core: Any, model: Any, config: dict[str, Any], batch: np.ndarray, runs: int) -> tuple[dict[str, float], dict[str, str]]:
    """Mean ms per node name over ``runs`` inferences (after 5), and each node's type."""
    compiled = core.compile_model(model, "CPU", {**config, "PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    for _ in range(5):
        req.infer({0: batch})
    ms: dict[str, float] = collections.defaultdict(float)
    kind: dict[str, str] = {}
    for _ in range(runs):
        req.infer({0: batch})
        for p in req.get_profiling_info():
            ms[p.node_name] += p.real_time.total_seconds() * 1e3 / runs
            kind[p.node_name] = p.node_type
    return ms, kind


def conv_shapes(model: Any) -> dict[str, tuple[int, int]]:
    """Convolution name -> (input channels, kernel size), from the FP32 graph."""
    out = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            w = op.input_value(1).get_partial_shape()
            out[op.get_friendly_name()] = (w[1].get_length(), w[2].get_length())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="defect-yolo11p-320")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    import openvino as ov

    card = load_card(args.model, int8=True)
    core = ov.Core()
    graph = runtime_model(core, card)
    batch = np.random.default_rng(0).integers(0, 256, (args.batch, card.input_height, card.input_width, 3), np.uint8)
    cpu = cpu_description()
    columns: dict[str, tuple[Any, dict[str, Any]]] = {"f32": (graph, {"INFERENCE_PRECISION_HINT": "f32"})}
    if "avx512_bf16" in cpu["isa"] or "amx_bf16" in cpu["isa"]:
        columns["bf16"] = (graph, {"INFERENCE_PRECISION_HINT": "bf16"})
    # the INT8 IR as the backend compiles it: what stays unquantized at the device's default
    # (f32 under an ISA limit without bf16, see inspector.pipeline.backends.isa)
    from inspector.pipeline.backends import isa

    columns["int8"] = (core.read_model(str(int8_model_path(card))),
                       {"INFERENCE_PRECISION_HINT": "f32"} if isa.default_is_f32() else {})
    prof = {name: profile(core, m, cfg, batch, args.runs) for name, (m, cfg) in columns.items()}
    shapes = conv_shapes(graph)
    groups: dict[tuple[int, int], dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
    count: collections.Counter[tuple[int, int]] = collections.Counter()
    matched: set[str] = set()
    for name, (ic, k) in shapes.items():
        if all(name in prof[c][0] for c in columns):
            count[(ic, k)] += 1
            matched.add(name)
            for c in columns:
                groups[(ic, k)][c] += prof[c][0][name]
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores), ISA: {' '.join(cpu['isa'])}"
          + (f" (ONEDNN_MAX_CPU_ISA={cpu['max_isa']}; the CPU has {' '.join(cpu['cpu_isa'])})" if "max_isa" in cpu else ""))
    print(f"batch {args.batch}, mean of {args.runs} profiled runs; ms per batch\n")
    head = "".join(f"{c:>9}" for c in columns)
    print(f"{'in ch':>6} {'kernel':>6} {'convs':>5}{head}  int8/f32" + ("  int8/bf16" if "bf16" in columns else ""))
    for key in sorted(groups):
        g = groups[key]
        line = "".join(f"{g[c]:9.2f}" for c in columns)
        extra = f"  {g['int8'] / g['bf16']:9.2f}" if "bf16" in columns else ""
        print(f"{key[0]:6d} {key[1]:>4}x{key[1]} {count[key]:5d}{line}  {g['int8'] / g['f32']:8.2f}{extra}")
    tot = {c: sum(groups[k][c] for k in groups) for c in columns}
    print(f"{'all matched convolutions':>19}{''.join(f'{tot[c]:9.2f}' for c in columns)}  {tot['int8'] / tot['f32']:8.2f}"
          + (f"  {tot['int8'] / tot['bf16']:9.2f}" if "bf16" in columns else ""))
    for c in columns:
        ms, kind = prof[c]
        rest: dict[str, float] = collections.defaultdict(float)
        for name, v in ms.items():
            if name not in matched:
                rest[kind[name]] += v
        top = sorted(rest.items(), key=lambda kv: -kv[1])[:6]
        print(f"{c}: everything else {sum(rest.values()):.2f} ms (" + ", ".join(f"{t} {v:.2f}" for t, v in top) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
