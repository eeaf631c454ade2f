"""`inspector bench --json`: the keys the README's tables and the issue's targets are read from."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from inspector.bench import cpu_description, format_table
from inspector.cli import app


def test_cpu_description_names_the_model_and_the_extensions_that_decide_speed() -> None:
    cpu = cpu_description()
    assert cpu["model"] and cpu["cores"] == os.cpu_count()
    flags = set()
    if Path("/proc/cpuinfo").is_file():
        flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                 for f in line.split(":", 1)[1].split()}
    assert set(cpu["isa"]) <= flags and ("avx2" in cpu["isa"]) == ("avx2" in flags)
    assert cpu["kind"] == ("amx" if "amx_tile" in flags else cpu["kind"])
    assert cpu["kind"] in ("amx", "avx512-vnni", "avx2-vnni", "avx2", "other")


def test_bench_json_has_cpu_precision_and_nominal_beside_the_pipeline(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    out = tmp_path / "b.json"
    r = CliRunner().invoke(app, ["bench", "--cameras", "1,2", "--seconds", "1", "--no-db", "--no-ultralytics",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["cpu"]["model"] and isinstance(res["cpu"]["isa"], list)
    p = res["precision"]
    assert p["f32"]["fps"] > 0
    if p["int8"] is not None:  # the shipped model carries an INT8 IR
        assert p["int8_over_f32"] == pytest.approx(p["int8"]["fps"] / p["f32"]["fps"])
    nm = res["nominal"]
    assert nm["station"] == "demo" and nm["cameras"] == 8
    assert 0.0 < nm["busy_fraction"] <= 1.0 and nm["p99_ms"] > 0 and nm["dropped"] >= 0 and nm["fps"] > 0
    # pure and pipeline measured back to back, round after round; efficiency is the median of the rounds' ratios
    rounds = res["pipeline_detail"]["2"]["rounds"]
    assert len(rounds) == res["rounds"] >= 2
    for r in rounds:
        assert r["efficiency"] == pytest.approx(r["pipeline_fps"] / r["pure_fps"])
        # and the process's CPU time a frame of each, runtime alone over pipeline
        assert r["pure_cpu_ms_per_frame"] > 0 and r["pipeline_cpu_ms_per_frame"] > 0
        assert r["cpu_efficiency"] == pytest.approx(r["pure_cpu_ms_per_frame"] / r["pipeline_cpu_ms_per_frame"])
    assert [r["pure_first"] for r in rounds] == [k % 2 == 0 for k in range(len(rounds))]  # ABBA
    assert res["efficiency"]["2"] == pytest.approx(statistics.median(r["efficiency"] for r in rounds))
    assert res["cpu_efficiency"]["2"] == pytest.approx(statistics.median(r["cpu_efficiency"] for r in rounds))
    assert res["in_flight"] == 4 and res["streams"] == "auto"  # the station's defaults
    text = format_table(res)
    assert "nominal: station demo" in text and res["cpu"]["kind"] in text
    # every gated precision timed as each station ran it (its cameras' batch), each station's row naming its own
    assert "precision as the station's pipeline runs it" in text
    assert set(res["precision_by_cameras"]) == {"1", "2"} and res["precision"] == res["precision_by_cameras"]["2"]
    for k, pc in res["precision_by_cameras"].items():
        assert pc["batch"] == int(k) and pc["winner"] in pc["fps"] and all(len(r) >= 2 for r in pc["rounds"].values())
    assert set(res["precision_by_station"]) == {"1", "2"}
