"""Issue 28 in the ATTACHED GUI: a window onto an ``inspector service`` shows the anomaly heat maps (live wall and
history) and its Teach dialog saves the recipe's next version and switches to it through the service.

One ``inspector service`` subprocess serves the module: two simulated cameras, a product recipe, an archive beside
its SQLite database; cam-a runs the shipped plate anomaly model with a threshold so low that every frame is NG
(the demo line is not a plate), so its NG images are archived with their heat maps. The GUI attaches over the
real link (`gui.remote.attach`, `RemoteStation`, `RemoteControl`, `RemoteBridge`) as ``inspector gui`` does.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.remote import RemoteControl, RemoteHeatMaps, RemoteLink, RemoteStation
from gui.remote_bridge import RemoteBridge
from gui.teach_dialog import TeachDialog
from inspector.archive import heat_map_path
from tests.gui.service_child import AttachedWindow, ServiceChild, recipe_service_station

ENGINEER = ("eve", "eve-password")  # tests.inspector.cli_users.database_with_users's
OPERATOR = ("otto", "otto-password")
CAMERAS = """
[[cameras]]
id = "cam-a"
kind = "simulated"
fps = 5
width = 320
height = 320
bank_size = 8
[cameras.anomaly]
model = "anomaly-plate-320"
threshold = 0.3
[[cameras]]
id = "cam-b"
kind = "simulated"
fps = 8
width = 320
height = 320
mono = true
bank_size = 32
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceChild]:
    """The product recipe ``housing`` v1 only; the backbone converted once, in the module's cache folder."""
    folder = tmp_path_factory.mktemp("teach-service")
    svc = ServiceChild(folder, recipe_service_station(folder, "teach-svc", recipes=("housing",), cameras=CAMERAS),
                       args=["--image-fps", "5"], env={"INSPECTOR_CACHE_DIR": str(folder / "cache")})
    with svc.running(timeout=180.0):  # the first start converts the backbone
        yield svc


@pytest.fixture
def window(service: ServiceChild, qtbot: Any) -> Iterator[AttachedWindow]:
    """Built as `gui.app.run_attached` builds it, history included."""
    with AttachedWindow(service, qtbot) as w:
        assert w.engine is not None  # the service's database, opened here for the history
        assert isinstance(w.station, RemoteStation) and isinstance(w.control, RemoteControl)
        assert isinstance(w.bridge, RemoteBridge)
        yield w


def test_the_attached_wall_draws_the_heat_maps_the_service_sends(
        qtbot: Any, window: AttachedWindow) -> None:
    wall = window.win.wall
    assert isinstance(window.station.anomaly_models, RemoteHeatMaps)
    assert wall.heat_button.isVisible() and not wall.heat_button.isChecked()  # off until toggled, as in process
    wall.heat_button.click()
    view = wall.views["cam-a"]
    assert view.heat_maps is not None and view.heat_maps.enabled

    def drawn() -> bool:
        view.repaint()
        return view.heat_maps is not None and view.heat_maps.layer.heat is not None

    qtbot.waitUntil(drawn, timeout=90_000)
    heat = view.heat_maps.layer.heat
    result = view.shown_result
    assert result is not None and result.anomaly_score is not None and result.anomaly_score >= 0.3
    assert heat is not None and heat.dtype == np.uint8 and heat.shape == (160, 160)  # the 320 x 320 frame at 160 px
    assert int(heat.max()) > 0.3 * 127.5  # grey = score x 127.5: this NG frame is hot somewhere
    # cam-b runs no anomaly model: its pictures carry no heat map, and none is drawn
    qtbot.waitUntil(lambda: wall.views["cam-b"].shown_result is not None, timeout=30_000)
    wall.views["cam-b"].repaint()
    assert wall.views["cam-b"].shown_result.anomaly_score is None  # type: ignore[union-attr]
    assert wall.views["cam-b"].heat_maps.layer.heat is None  # type: ignore[union-attr]
    wall.heat_button.click()
    assert not view.heat_maps.enabled


def test_the_attached_history_shows_the_heat_map_archived_beside_an_ng_image(
        qtbot: Any, window: AttachedWindow) -> None:
    history = window.win.history
    assert history is not None  # the service's database opened here, read-only use

    def ng_row_with_image() -> int | None:
        history.refresh()
        for i, row in enumerate(history.model.rows):
            if row.camera_id == "cam-a" and row.verdict == "NG" and row.image_path:
                return i
        return None

    qtbot.waitUntil(lambda: ng_row_with_image() is not None, timeout=90_000)
    i = ng_row_with_image()
    assert i is not None
    row = history.model.rows[i]
    assert heat_map_path(row.image_path).is_file()  # archived by the service beside the image
    history.select_row(i)
    view = history.image_view
    assert view.image is not None and view.heat.available and history.heat_check.isEnabled()
    archived = cv2.imread(str(heat_map_path(row.image_path)), cv2.IMREAD_GRAYSCALE)
    assert view.heat.heat is not None and np.array_equal(view.heat.heat, archived)
    assert history.heat_check.isChecked() and view.heat.enabled
    history.heat_check.setChecked(False)  # the check box hides it
    assert not view.heat.enabled


def test_the_attached_teach_dialog_saves_the_recipe_version_and_switches_through_the_service(
        qtbot: Any, window: AttachedWindow, service: ServiceChild) -> None:
    win, control = window.win, window.control
    # an operator may not teach; the service refuses an operator's save too (its session checks the role)
    control.login(*OPERATOR)
    assert win.open_teach() is None
    from inspector.access.users import PermissionDenied

    with pytest.raises(PermissionDenied):
        control.save_taught_recipe({"cam-b": {"model": "anomaly-plate-320", "threshold": 1.0}})
    control.login(*ENGINEER)
    dlg = win.open_teach()
    assert isinstance(dlg, TeachDialog)
    target = dlg.session.target
    assert target is not None and target.label == "housing v1" and target.folder == service.folder / "recipes"
    dlg.input_side = 96  # a small model: the test teaches in seconds
    dlg.choose(["cam-b"])
    dlg.count.setValue(10)
    assert not dlg.save_button.isEnabled()

    # 1. collect 10 good parts from the running line, over the link, lossless while collecting
    bridge = window.bridge
    assert bridge.lossless_received == 0  # JPEG for the wall
    assert dlg.start_collecting()
    qtbot.waitUntil(lambda: not dlg.busy, timeout=90_000)
    assert bridge.lossless_received >= 10  # each frame collected came as PNG: what the camera saw, no JPEG artefacts
    qtbot.wait(1500)  # PNGs queued before the service heard "collected" still arrive
    n, png = bridge.images_received, bridge.lossless_received
    qtbot.waitUntil(lambda: bridge.images_received >= n + 5, timeout=30_000)
    assert bridge.lossless_received == png  # JPEG again once collected
    saved = sorted(dlg.session.good_folder("cam-b").glob("*.png"))
    assert len(saved) == 10
    first = cv2.imread(str(saved[0]), cv2.IMREAD_UNCHANGED)
    assert first is not None and first.shape == (320, 320)  # the Mono8 frame itself, at its size

    # 2. teach here (the window's process), off the GUI thread
    with qtbot.waitSignal(dlg.taught, timeout=240_000):
        dlg.teach_button.click()
    assert set(dlg.reports) == {"cam-b"} and dlg.histogram.good.size > 0
    dlg.set_threshold("cam-b", 1.2)

    # 3. save: the service's session of this window saves v2 (audited as the engineer) and switches to it
    assert dlg.save_button.isEnabled()
    with qtbot.waitSignal(dlg.saved, timeout=120_000) as got:
        dlg.save_button.click()
    assert got.args == ["housing v2"], dlg.status.text()
    assert control.recipe_in_force()["label"] == "housing v2"  # type: ignore[index]
    folder = service.folder / "recipes"
    recipe = tomllib.loads((folder / "housing.toml").read_text())
    spec = recipe["cameras"]["cam-b"]["anomaly"]
    assert spec["threshold"] == 1.2 and Path(spec["model"]) == dlg.reports["cam-b"].folder.resolve()
    assert (folder / "versions" / "housing" / "v2.toml").is_file()
    assert "taught from good parts" in (folder / "versions" / "housing" / "history.jsonl").read_text()
    entries = control.audit_entries(limit=30)
    mine = [(e.action, e.new) for e in entries if e.user == ENGINEER[0]]
    assert any(a == "recipe.save" and str(n).startswith("housing v2") for a, n in mine), mine
    assert ("recipe.select", "housing v2") in mine, mine

    # 4. the service now scores cam-b with the taught model: its heat maps reach this window too
    win.wall.heat_button.click()
    view = win.wall.views["cam-b"]

    def scored_and_drawn() -> bool:
        view.repaint()
        r = view.shown_result
        return r is not None and r.anomaly_score is not None and view.heat_maps is not None \
            and view.heat_maps.layer.heat is not None

    qtbot.waitUntil(scored_and_drawn, timeout=120_000)


def test_a_taught_save_with_a_model_that_does_not_check_is_refused_in_one_line_and_saves_nothing(
        service: ServiceChild, tmp_path: Path) -> None:
    link = RemoteLink(service.socket)
    try:
        before = link.request("recipe_in_force")
        assert before["name"] == "housing" and Path(before["folder"]) == service.folder / "recipes"
        kept = sorted((service.folder / "recipes" / "versions" / "housing").glob("v*.toml"))
        assert link.request("login", name=ENGINEER[0], password=ENGINEER[1]) is not None
        broken = tmp_path / "broken-model"
        shutil.copytree(Path(__file__).resolve().parents[2] / "models" / "anomaly-plate-320", broken)
        with (broken / "memory_bank.npy").open("r+b") as f:  # one byte changed: its sha256 fails
            f.seek(200)
            b = f.read(1)
            f.seek(200)
            f.write(bytes([b[0] ^ 0xFF]))
        from inspector.access.control import ControlError

        for models, says in (({"cam-b": {"model": str(broken), "threshold": 1.0}}, "sha256"),
                             ({"cam-b": {"model": str(tmp_path / "nowhere")}}, "nowhere"),
                             ({"cam-z": {"model": "anomaly-plate-320"}}, "cam-z"),
                             ({"cam-b": {"threshold": 1.0}}, "model")):
            with pytest.raises(ControlError) as err:
                link.request("save_taught_recipe", models=models)
            text = str(err.value)
            assert says in text and "\n" not in text, text
        assert link.request("recipe_in_force") == before  # nothing saved, nothing switched
        assert sorted((service.folder / "recipes" / "versions" / "housing").glob("v*.toml")) == kept
    finally:
        link.close()
