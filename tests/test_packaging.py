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


def test_every_builtin_stations_model_ships_in_the_wheel_with_its_int8_ir() -> None:
    """A non-editable install (installer/install.sh) finds models only under <prefix>/share/inspector/models: a
    built-in station whose model folder is not in the wheel's data-files does not start once installed (line-demo,
    the app's default, moved to defect-yolo11p-384 while the wheel still carried only defect-yolo11p-320)."""
    from inspector.config import builtin_stations, load_station
    from inspector.pipeline.model_repo import load_card

    shipped = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["data-files"]
    for station in builtin_stations():
        name = load_station(station).model.name
        files = set(shipped.get(f"share/inspector/models/{name}", []))
        card = load_card(name, verify=False)
        wanted = {f"models/{name}/card.toml", f"models/{name}/{card.file}"}
        if card.int8 is not None:  # the IR its card names, which `auto` runs where it is fastest
            wanted.add(f"models/{name}/{card.int8['file']}")
            wanted.add(f"models/{name}/{Path(card.int8['file']).with_suffix('.bin')}")
        assert wanted <= files, f"{station}: {name} lacks {sorted(wanted - files)} in the wheel's data-files"
