"""What the command line prints is whole: no markup eaten, no column cut, one name per camera model."""

from __future__ import annotations

import json
from typing import Any, Self

import pytest
from typer.testing import CliRunner

from camera.protocol import CameraInfo
from camera.simulated import SimulatedLineCamera
from inspector.cli import app
from inspector.config import load_station

WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


def _out(args: list[str]) -> str:
    res = CliRunner().invoke(app, args, env=WIDE)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize(("args", "shown"), [
    (["train", "--help"], "pip install -e '.[train]'"),
    (["--help"], "pip install -e '.[train]'"),
    (["run", "--help"], "CAMERA:FAULT[:VALUE][@S]"),
])
def test_brackets_in_help_are_shown(args: list[str], shown: str) -> None:
    assert shown in _out(args)


class FakeGenTL:
    """A GenTL system with one camera whose vendor name is long (viky's is 25 characters)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def devices(self) -> list[CameraInfo]:
        return [CameraInfo(id="Viky-0", kind="gentl", vendor="Machine Vision Games Ltd.", model="Viky",
                           serial="0", producer="/opt/viky.cti")]


@pytest.fixture
def gentl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("camera.gentl_system.GenTLSystem", FakeGenTL)
    monkeypatch.setattr("camera.gentl_system.find_producers", lambda *a, **k: [])


def test_cameras_list_shows_the_whole_vendor(gentl: None) -> None:
    out = _out(["cameras", "list", "--station", "line-demo"])
    row = next(line for line in out.splitlines() if line.startswith("Viky-0"))
    assert "Machine Vision Games Ltd." in row and row.split()[-1] == "0"
    header = next(line for line in out.splitlines() if line.startswith("ID"))
    assert header.index("MODEL") == row.rindex("Viky")  # columns line up


def test_cameras_list_names_a_simulated_camera_as_the_camera_does(gentl: None) -> None:
    """The CLI reads the config, the GUI the camera's CameraInfo: both must say the same."""
    rows: list[dict[str, Any]] = json.loads(_out(["cameras", "list", "--station", "line-demo", "--json"]))["cameras"]
    cfg = {c.id: c for c in load_station("line-demo").cameras}
    sims = [r for r in rows if r["kind"] == "simulated"]
    assert sims
    for r in sims:
        info = SimulatedLineCamera(r["id"], seed=cfg[r["id"]].seed, bank_size=1).info
        assert (r["vendor"], r["model"], r["serial"]) == (info.vendor, info.model, info.serial)
    text = _out(["cameras", "list", "--station", "line-demo"])
    assert f" {sims[0]['model']} " in text
