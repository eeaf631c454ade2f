"""The Teach dialog end to end on the simulated demo station: collect good parts from the running line, teach off
the GUI thread, the histogram and the threshold, save the recipe's next version (audited) and switch to it; the
live wall's heat-map toggle."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.app import MainWindow
from gui.bridge import EngineBridge
from gui.teach_dialog import TeachDialog
from inspector.config import load_config
from inspector.recipes.recipe import load_recipe
from inspector.station import Station
from tests.gui.conftest import PASSWORDS, make_control

DEMO = Path(__file__).resolve().parents[2] / "inspector" / "stations" / "demo.toml"
TAUGHT = ("line-cam1", "line-cam4")  # a colour and a Mono8 camera


@pytest.fixture
def demo(tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch, qtbot: Any) -> Iterator[tuple[Station, MainWindow]]:
    """The demo station (8 simulated cameras at 5 fps) with one product recipe, running, in the main window."""
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))  # the backbone converted once per test
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "housing.toml").write_text('[recipe]\nname = "housing"\nnumber = 1\nversion = 1\n'
                                          '[model]\nname = "defect-yolo11p-320"\n')
    cfg = load_config(DEMO).model_copy(update={"recipes": load_config(DEMO).recipes.model_copy(
        update={"dir": str(recipes), "select": 1})})
    st = Station(cfg, db_url="none", archive=False)
    control = make_control(st, engine)
    win = MainWindow(st, control, EngineBridge(st, control), stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    st.start()
    yield st, win
    st.stop()


def test_teach_collects_teaches_saves_a_recipe_version_and_switches(qtbot: Any, demo: Any) -> None:
    st, win = demo
    control = win.control
    # an operator may not teach: the toolbar's action is off and the dialog does not open
    control.login("op", PASSWORDS["op"])
    assert not win.teach_action.isEnabled() and win.open_teach() is None
    control.login("eng", PASSWORDS["eng"])
    assert win.teach_action.isEnabled()
    dlg = win.open_teach()
    assert isinstance(dlg, TeachDialog)
    dlg.input_side = 96  # a small model: the test teaches in seconds
    dlg.choose(list(TAUGHT))
    dlg.count.setValue(10)
    assert not dlg.save_button.isEnabled()  # nothing taught yet

    # 1. collect 10 good parts per camera from the running line (the station's OK parts only)
    assert dlg.start_collecting()
    qtbot.waitUntil(lambda: not dlg.busy, timeout=60_000)
    assert dlg.progress.value() == dlg.progress.maximum() == 20
    for cid in TAUGHT:
        assert len(list(dlg.session.good_folder(cid).glob("*.png"))) == 10

    # 2. teach, off the GUI thread: the GUI keeps painting meanwhile
    gui_thread = threading.current_thread()
    with qtbot.waitSignal(dlg.taught, timeout=240_000):
        dlg.teach_button.click()
        assert dlg.busy and not dlg.teach_button.isEnabled()
    assert dlg._thread is None and threading.current_thread() is gui_thread
    assert set(dlg.reports) == set(TAUGHT)
    r = dlg.reports["line-cam1"]
    assert len(r.good_scores) >= 5 and dlg.histogram.good.size == len(r.good_scores)
    assert "false rejects" in dlg.rates.text()

    # 3. the threshold moves the line and the counts
    dlg.set_threshold("line-cam4", 1.25)
    assert dlg.thresholds["line-cam4"] == 1.25 and dlg.histogram.threshold == 1.25
    dlg.set_threshold("line-cam1", 0.000001)  # everything above: every held-out good image a false reject
    assert dlg.rates.text().startswith(f"false rejects {len(r.good_scores)}/{len(r.good_scores)}")
    dlg.set_threshold("line-cam1", 1.0)

    # 4. save the recipe's next version (audited) and switch to it
    assert dlg.save_button.isEnabled()
    with qtbot.waitSignal(dlg.saved, timeout=60_000):
        dlg.save_button.click()
    assert st.recipes.current.label == "housing v2"
    saved = load_recipe(Path(st.recipes.current.path))
    assert saved.recipe.version == 2 and saved.cameras["line-cam4"].anomaly.threshold == 1.25  # type: ignore[union-attr]
    assert (Path(st.recipes.folder) / "versions" / "housing" / "v2.toml").is_file()  # kept, with its history
    assert "taught from good parts" in (Path(st.recipes.folder) / "versions" / "housing" / "history.jsonl").read_text()
    actions = [e.action for e in control.audit_entries(20)]
    assert "recipe.save" in actions and "recipe.select" in actions
    st.recipes.wait_retired()
    for cid in TAUGHT:  # the taught cameras now score every frame beside the detector
        lane = st.lanes[cid]
        assert lane.anomaly is not None and Path(lane.anomaly.runtime.model.folder).parent.name == "models"
    assert st.lanes["line-cam2"].anomaly is None
    qtbot.waitUntil(lambda: _scored(win.bridge, "line-cam1"), timeout=30_000)

    # 5. the wall's heat maps: off by default, on with the toggle
    wall = win.wall
    assert wall.heat_button.isVisible() and not wall.heat_button.isChecked()
    wall.heat_button.click()
    view = wall.views["line-cam1"]
    assert view.heat_maps is not None and view.heat_maps.enabled
    qtbot.waitUntil(lambda: view.shown_result is not None and view.shown_result.anomaly_map is not None,
                    timeout=30_000)
    view.repaint()
    heat = view.heat_maps.layer.heat
    assert heat is not None and heat.dtype == np.uint8 and heat.shape == (160, 160)


def _scored(bridge: Any, camera_id: str) -> bool:
    """Whether the camera's newest inspected frame carries an anomaly score (its frame reference given back)."""
    frame, result = bridge.result_frame(camera_id)
    if frame is not None:
        frame.release()
    return result is not None and result.anomaly_score is not None


def test_teach_from_a_folder_shows_the_ng_scores_and_escapes_beside_the_good_ones(
        qtbot: Any, tmp_path: Path, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder source: good images (and NG ones) picked instead of the line; the histogram shows both, the
    rates count the escapes, and a station without product recipes says why nothing can be saved."""
    from camera.products import write_family
    from tests.gui.conftest import FakeStation

    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    write_family("plate", tmp_path / "plate", 24, 6, seed=500, width=96, height=96)
    st = FakeStation("cam-x", "cam-y")
    control = make_control(st, engine)
    control.login("eng", PASSWORDS["eng"])
    dlg = TeachDialog(st, control, SimpleNamespace(line=None, lossless_images=lambda on: None),
                      root=tmp_path / "teach", size=96)
    qtbot.addWidget(dlg)
    assert dlg.session.target is None  # no recipes here
    dlg.choose(["cam-x"])
    dlg.from_folder.setChecked(True)
    assert not dlg.start_teaching()  # no folder picked yet
    assert "folder" in dlg.status.text()
    dlg.good_dir.setText(str(tmp_path / "plate" / "good"))
    dlg.bad_dir.setText(str(tmp_path / "plate" / "bad"))
    seen: list[tuple[str, int, int, int]] = []  # the progress bar during teaching: stage, done, total, bar
    dlg._relay.progress.connect(lambda stage, done, total: seen.append((stage, done, total, dlg.progress.value())))
    with qtbot.waitSignal(dlg.taught, timeout=240_000):
        assert dlg.start_teaching()
    assert seen and any(total > 1 and 0 < done <= total for _s, done, total, _v in seen)
    assert all(s.startswith("cam-x (1 of 1)") for s, *_ in seen)
    assert dlg.progress.value() == dlg.progress.maximum()  # full once taught
    r = dlg.reports["cam-x"]
    assert r.bad_images == 6 and dlg.histogram.bad.size == 6 and dlg.histogram.good.size == len(r.good_scores)
    assert "escapes" in dlg.rates.text() and "NG" in dlg.rates.text()
    low = round(float(r.bad_scores.min()) - 0.02, 2)  # below every NG score: none escapes
    dlg.set_threshold("cam-x", low)
    assert dlg.rates.text().endswith("escapes 0/6 NG") and dlg.histogram.threshold == low
    mid = round(float(np.median(r.bad_scores)), 2)
    dlg.set_threshold("cam-x", mid)
    assert dlg.rates.text().endswith(f"escapes {int(np.sum(r.bad_scores < mid))}/6 NG")
    dlg.histogram.repaint()  # paints the NG bars and the legend without error
    assert not dlg.save_button.isEnabled() and "no product recipes" in dlg.save_button.toolTip()
