"""Each simulated camera reports its own serial number (issue 31.8: all 8 of line-demo said SIM-3000000)."""

from __future__ import annotations

from camera.simulated import SimulatedLineCamera, simulated_serial
from inspector.config import load_station


def test_the_cameras_of_a_line_have_distinct_serials_and_the_device_says_the_same() -> None:
    cfg = load_station("line-demo")
    assert len({c.seed for c in cfg.cameras}) == 1  # the same part seen by every camera
    cams = [SimulatedLineCamera(c.id, fps=1, width=32, height=32, seed=c.seed, bank_size=1) for c in cfg.cameras]
    serials = [cam.info.serial for cam in cams]
    assert len(set(serials)) == len(cams) == 8
    for c, cam in zip(cfg.cameras, cams, strict=True):
        assert cam.features.get("DeviceSerialNumber") == cam.info.serial == simulated_serial(c.id)
    assert simulated_serial("line-cam1") == SimulatedLineCamera("line-cam1", fps=1, bank_size=1).info.serial


def test_cameras_list_shows_the_serial_the_camera_reports() -> None:
    import json

    from typer.testing import CliRunner

    from inspector.cli import app

    res = CliRunner().invoke(app, ["cameras", "list", "--station", "line-demo", "--json"])
    assert res.exit_code == 0, res.output
    rows = [r for r in json.loads(res.output)["cameras"] if r["kind"] == "simulated"]
    assert len(rows) == 8 and len({r["serial"] for r in rows}) == 8
    assert all(r["serial"] == simulated_serial(r["id"]) for r in rows)
