"""What pyproject.toml's extras promise: versions our code paths support."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _extra(name: str) -> dict[str, Requirement]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {r.name: r for r in map(Requirement, extras[name])}


def test_gpu_extra_installs_tensorrt_10_and_never_11() -> None:
    """TensorRT 11 has no INT8 calibrator and no weak typing, which tensorrt_build.py uses."""
    spec = _extra("gpu")["tensorrt"].specifier
    assert spec.contains("10.0.1") and spec.contains("10.13.3.9")
    assert not spec.contains("11.0.0") and not spec.contains("9.3.0")


def test_dev_extra_has_the_checkers_the_style_promises() -> None:
    """mypy, ruff and import-linter come with the dev extra; ruff's minor pinned, since its default rules are ours."""
    dev = _extra("dev")
    assert {"mypy", "ruff", "import-linter"} <= set(dev)
    assert dev["ruff"].specifier.contains("0.17.6") and not dev["ruff"].specifier.contains("0.18.0")
