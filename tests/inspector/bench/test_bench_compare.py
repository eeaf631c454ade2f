"""``inspector bench`` names the precision of every row: the measured precisions, what ``auto`` chose, and
our default and our same-precision pipeline against Ultralytics' default export and its INT8 recipe."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from inspector import bench

ROOT = Path(__file__).resolve().parents[3]


def ultralytics_result() -> dict:
    """What `run_ultralytics` gives (its default export ran bf16 here), with its INT8 recipe beside it."""
    return {"runtime": "openvino (same ONNX file converted to IR)", "fps_batch1": 150.0, "fps_batch8": 207.3,
            "fps": 207.3, "precision_ran": "bf16", "overhead_ms": 2.0, "ratio": 280.0 / 207.3, "ours_precision": "int8",
            "int8": {"runtime": "openvino, Ultralytics' INT8 recipe", "fps_batch1": 170.0, "fps_batch8": 239.2,
                     "fps": 239.2, "ours_pipeline_fps": 280.0, "ours_cameras": 8, "ratio": 280.0 / 239.2}}


#: what `precision_fps` gives for the 8-camera station and the 1-camera one (bf16 and int8 within the noise there)
PRECISION_8 = {"batch": 8, "cameras": 8, "fps": {"int8": 294.3, "bf16": 256.8, "f32": 149.0},
               "ranking": ["int8", "bf16", "f32"], "skipped": {}, "winner": "int8",
               "why": "int8 ahead of bf16 by 14.6% (noise 1.0%)",
               "auto": {"precision": "int8", "reason": "measured (the station's pipeline, 4 in flight, streams auto): "
                        "int8 294 fps > bf16 257 > f32 149 at batch 8, median of 5 rounds; int8 ahead of bf16 by 14.6% "
                        "(noise 1.0%) (cache /c/precision.json)", "measured": True}}
PRECISION_1 = {"batch": 1, "cameras": 1, "fps": {"int8": 121.0, "bf16": 120.0, "f32": 80.0},
               "ranking": ["int8", "bf16", "f32"], "skipped": {}, "winner": "bf16",
               "why": "int8 and bf16 within the noise (int8 +0.8%, noise 1.9%): the more precise runs",
               "auto": {"precision": "bf16", "reason": "measured (...)", "measured": True}}


def bench_result(ran: str = "int8") -> dict:
    return {
        "backend": "openvino", "model": "defect-yolo11p-320", "in_flight": 3, "streams": "auto",
        "run_precision": "auto", "ran_precision": ran,
        "pipeline_fps": {"8": 280.0}, "pure_backend_fps_by_batch": {"8": 294.0}, "efficiency": {"8": 0.952},
        "mean_batch": {"8": 8.0}, "non_inference_ms_per_frame": {"8": 0.2},
        "precision": PRECISION_8,
        "precision_by_cameras": {"1": PRECISION_1, "8": PRECISION_8},
        "precision_by_station": {"1": "bf16", "8": "int8"},
        "latency_nominal": {"cameras": 8, "fps_per_camera": 5.0, "latency_ms": {"p50": 10.0, "p99": 20.0}},
        "latency_saturation": {"cameras": 8, "latency_ms": {"p50": 70.0, "p99": 90.0}},
        "stages_ms": {"wait": {"p50": 4.0}, "inference": {"p50": 6.0}},
        "nominal": {"station": "demo", "cameras": 8, "fps_per_camera": 5.0, "fps": 40.0, "busy_fraction": 0.3,
                    "mean_batch": 1.2, "p99_ms": 20.0, "dropped": 0},
        "machine": {"cpu": "AMD EPYC", "cores": 2, "date": "2026-12-06"},
        "cpu": {"model": "AMD EPYC", "cores": 2, "isa": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"],
                "kind": "avx512-vnni"},
        "frame_size": [320, 320], "rounds": 4, "bench_seconds": 200.0,
    }


def test_rows_compare_our_default_and_ours_at_each_of_their_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    res, u = bench_result("int8"), ultralytics_result()
    asked: list[str] = []

    def pipeline_at(precision: str, *a: object) -> float:
        asked.append(precision)
        return 250.0

    monkeypatch.setattr(bench, "_pipeline_at", pipeline_at)
    rows = bench._comparisons(res, u, "defect-yolo11p-320", "openvino", 8, 0, 1.0, 3, "auto")
    got = [(r["ours"], r["ours_precision"], r["ours_fps"], r["theirs"], r["theirs_precision"]) for r in rows]
    assert got == [
        ("our default (auto)", "int8", 280.0, "its default export", "bf16"),
        ("our default (auto)", "int8", 280.0, "its INT8 recipe", "int8"),
        ("ours at its precision", "bf16", 250.0, "its default export", "bf16"),
        ("ours at its precision", "int8", 280.0, "its INT8 recipe", "int8"),
    ]
    assert asked == ["bf16"]  # our pipeline at bf16 measured once; at int8 it is our default's own run
    assert rows[0]["ratio"] == pytest.approx(280.0 / 207.3) and rows[0]["theirs_batch"] == "batch 8"
    # where our default already runs their precision, nothing is measured twice
    asked.clear()
    same = bench._comparisons(bench_result("bf16"), u, "m", "openvino", 8, 0, 1.0, 3, "auto")
    assert asked == [] and same[2]["ours_fps"] == 280.0
    assert same[3]["ours_fps"] == u["int8"]["ours_pipeline_fps"]  # our INT8 pipeline from the INT8 comparison

    res["ultralytics"] = {**u, "comparisons": rows}
    text = bench.format_table(res)
    # every gated precision as each station ran it, and what auto runs at each camera count, and why
    assert "precision as the station's pipeline runs it" in text
    assert "       8    149.0    256.8    294.3  int8: int8 ahead of bf16 by 14.6% (noise 1.0%)" in text
    assert "       1     80.0    120.0    121.0  bf16: int8 and bf16 within the noise (int8 +0.8%, noise 1.9%)" in text
    table = [line for line in text.splitlines() if line.startswith(("our default", "ours at"))]
    assert len(table) == 4 and all(("int8" in t or "bf16" in t) and t.endswith("x") for t in table)
    assert "its default export, bf16 (batch 8)" in table[0] and table[0].endswith("1.35x")


def test_the_readme_table_names_every_precision() -> None:
    make_table = _make_table()
    res = bench_result("int8")
    u = ultralytics_result()
    res["ultralytics"] = {**u, "comparisons": [
        {"ours": "our default (auto)", "ours_precision": "int8", "ours_fps": 280.0, "theirs": "its default export",
         "theirs_precision": "bf16", "theirs_fps": 207.3, "theirs_batch": "batch 8", "ratio": 280.0 / 207.3}]}
    text = make_table.table(res)
    assert "| cameras | f32 fps | bf16 fps | int8 fps | `auto` runs | why |" in text
    assert "| 8 | 149.0 | 256.8 | 294.3 | **int8** | int8 ahead of bf16 by 14.6% (noise 1.0%) |" in text
    assert "| 1 | 80.0 | 120.0 | 121.0 | **bf16** | int8 and bf16 within the noise" in text
    assert "| our default (auto), int8 | 280.0 | its default export, bf16 (batch 8) | 207.3 | **1.35x** |" in text


def _make_table():  # type: ignore[no-untyped-def]
    """``benchmarks/make_table.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "benchmarks" / "make_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_table"] = module
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_shows_cpu_efficiency_beside_efficiency() -> None:
    res = bench_result("int8")
    res["cpu_efficiency"] = {"8": 0.9584}
    text = _make_table().table(res)
    assert "| cameras | pure backend fps | pipeline fps | efficiency | CPU efficiency | mean batch |" in text
    assert "| 8 | 294.0 | 280.0 | 0.952 | 0.958 | 8.00 |" in text
    assert "CPU efficiency the median of the rounds' ratios of the process's CPU time a frame" in text


def test_the_readme_table_of_a_bench_without_cpu_efficiency_leaves_its_cells_empty() -> None:
    text = _make_table().table(bench_result("int8"))  # a bench JSON from before CPU efficiency was kept
    assert "| 8 | 294.0 | 280.0 | 0.952 | - | 8.00 |" in text
