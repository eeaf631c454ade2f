"""``inspector cameras list`` shows Aravis (GigE Vision) cameras with the id a config's ``device_id`` takes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from camera.aravis import AravisCamera, aravis, discover
from inspector.cli import app

try:
    aravis()
    _MISSING = ""
except RuntimeError as exc:
    _MISSING = str(exc)
FAKE = shutil.which("arv-fake-gv-camera-0.8")


def _listed(*extra: str) -> dict[str, object]:
    res = CliRunner().invoke(app, ["cameras", "list", "--station", "demo", "--json", *extra])
    assert res.exit_code == 0, res.output
    listed: dict[str, object] = json.loads(res.output)
    return listed


@pytest.fixture
def fake_camera() -> Iterator[None]:
    if _MISSING:
        pytest.skip(_MISSING)
    if FAKE is None:
        pytest.skip("arv-fake-gv-camera-0.8 is not installed (apt-get install aravis-tools)")
    proc = subprocess.Popen([FAKE, "-i", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not any(d.serial == "GV01" for d in discover()):
            if proc.poll() is not None:
                pytest.skip(f"arv-fake-gv-camera-0.8 exited ({proc.returncode})")
            assert time.monotonic() < deadline, "the fake camera was not discovered within 10 s"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.mark.timeout(60)
def test_an_aravis_camera_is_listed_with_an_id_that_opens_it(fake_camera: None) -> None:
    listed = _listed()
    rows = [r for r in listed["cameras"] if r["kind"] == "aravis"]  # type: ignore[union-attr,index]
    assert [(r["serial"], r["vendor"], r["model"]) for r in rows] == [("GV01", "Aravis", "Fake")]
    assert listed["aravis"] == "1 camera found"
    with AravisCamera("gv0", device_id=rows[0]["id"]) as cam:  # the listed id is what a config names
        assert cam.info.serial == "GV01"
    text = CliRunner().invoke(app, ["cameras", "list", "--station", "demo"]).output
    assert "Aravis: 1 camera found" in text and rows[0]["id"] in text


def test_without_aravis_the_list_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise RuntimeError("Aravis (PyGObject + gir1.2-aravis-0.8) is not installed: no module named 'gi'; install them")

    monkeypatch.setattr("camera.aravis.aravis", missing)
    listed = _listed()
    assert str(listed["aravis"]).startswith("not available (Aravis (PyGObject + gir1.2-aravis-0.8) is not installed")
    assert not [r for r in listed["cameras"] if r["kind"] == "aravis"]  # type: ignore[union-attr,index]
