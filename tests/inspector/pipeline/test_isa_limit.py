"""A lesser CPU's kernels on this one (ONEDNN_MAX_CPU_ISA): labelled as such, and the graph still compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.bench import cpu_description
from inspector.pipeline.backends import isa

XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu
"""
EPYC = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n"


def test_without_a_limit_the_cpu_is_what_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(isa.ENV, raising=False)
    cpu = cpu_description(XEON)
    assert cpu["kind"] == "amx" and cpu["isa"][-1] == "amx_int8" and "max_isa" not in cpu
    assert not isa.default_is_f32()


def test_a_limit_names_the_kernels_used_and_the_cpu_they_ran_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isa.ENV, "AVX2")
    cpu = cpu_description(XEON)
    assert cpu["model"] == "Intel(R) Xeon(R) Processor"
    assert cpu["isa"] == ["avx2"] and cpu["kind"] == "avx2-emulated" and cpu["max_isa"] == "AVX2"
    assert "amx_tile" in cpu["cpu_isa"]
    assert isa.default_is_f32()
    monkeypatch.setenv(isa.ENV, "avx512_core_vnni")
    cpu = cpu_description(XEON)
    assert cpu["isa"] == ["avx2", "avx512f", "avx512_vnni"] and cpu["kind"] == "avx512-vnni-emulated"


def test_a_limit_above_what_the_cpu_has_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isa.ENV, "AVX512_CORE_VNNI")
    assert cpu_description(EPYC) == {**cpu_description(EPYC), "kind": "avx2", "isa": ["avx2"]}
    assert "max_isa" not in cpu_description(EPYC)


def test_a_limit_that_keeps_bf16_keeps_the_cpus_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isa.ENV, "AVX512_CORE_BF16")
    assert not isa.default_is_f32()


def test_under_avx2_every_precision_but_bf16_compiles_and_runs_f32_floats(tmp_path: Path) -> None:
    """On an AMX or AVX512-BF16 CPU the plugin's own default is bf16, which AVX2 kernels cannot run: without
    the f32 hint `auto` and `int8` did not compile ("Supported primitive descriptors list is empty")."""
    pytest.importorskip("openvino")
    code = (
        "import json, numpy as np\n"
        "from inspector.pipeline.backends import create_backend\n"
        "from inspector.pipeline.model_repo import load_card\n"
        "card = load_card('defect-yolo11p-320', int8=True)\n"
        "out = {}\n"
        "for p in ('auto', 'int8', 'f32'):\n"
        "    be = create_backend('openvino', card, max_batch=2, precision=p)\n"
        "    raw = be.infer_preprocessed(np.full((2, 320, 320, 3), 114, np.uint8))\n"
        "    out[p] = [be.precision, str(be._compiled.get_property('INFERENCE_PRECISION_HINT')), list(raw.shape)]\n"
        "    be.close()\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, isa.ENV: "AVX2", "INSPECTOR_CACHE_DIR": str(tmp_path / "cache" / "banks")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=Path(__file__).resolve().parents[3], check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert {p: v[1] for p, v in out.items()} == {"auto": "<Type: 'float32'>", "int8": "<Type: 'float32'>",
                                                  "f32": "<Type: 'float32'>"}
    assert all(v[2] == [2, 8, 2100] for v in out.values())
    # the compiled graphs went to a cache folder of their own
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("openvino")] == ["openvino-avx2"]


def test_bench_max_isa_refuses_an_unknown_name_in_one_line() -> None:
    from typer.testing import CliRunner

    from inspector.cli import app

    res = CliRunner().invoke(app, ["bench", "--max-isa", "sse9", "--cameras", "1"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == ["inspector: --max-isa: 'sse9' is not one of avx2, avx2-vnni, avx512, avx512-vnni"]
