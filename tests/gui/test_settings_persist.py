"""Camera settings saved from the settings dialog are what the station starts with (issue 31.5)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.settings_dialog import CameraSettingsDialog
from inspector.config import load_config, parse_config
from inspector.recipes.recipe import load_recipe
from inspector.settings_store import (
    CameraSettingsStore,
    SettingsError,
    write_config_camera_settings,
    write_recipe_camera_settings,
)
from tests.gui.conftest import PASSWORDS, SMALL_STATION, make_control

CONFIG = "# the line's station\n" + SMALL_STATION.replace('id = "cam-b"', 'id = "cam-b"  # the mono one')


def test_exposure_saved_in_the_dialog_is_the_cameras_at_the_next_start(qtbot: Any, engine: Any, tmp_path: Path) -> None:
    from inspector.station import Station

    path = tmp_path / "station.toml"
    path.write_text(CONFIG)
    station = Station(load_config(path), db_url="none", archive=False)
    try:
        assert station.cameras["cam-a"].features.get("ExposureTime") == 5000.0
        control = make_control(station, engine)
        store = CameraSettingsStore(control, path)
        dlg = CameraSettingsDialog(control, "cam-a", store=store)
        qtbot.addWidget(dlg)
        assert not dlg.persist_button.isEnabled()  # watching only: saving needs the engineer role
        control.login("eng", PASSWORDS["eng"])
        dlg.update_permissions()
        assert dlg.persist_button.isEnabled()
        dlg.set_value("ExposureTime", 4000.0)  # not applied yet: saving applies it first
        assert dlg.save_startup_settings()
        assert "station.toml" in dlg.status.text() and "ExposureTime" in dlg.status.text()
        assert station.cameras["cam-a"].features.get("ExposureTime") == 4000.0
        rows = control.audit_entries(limit=2)
        assert (rows[0].user, rows[0].action, rows[0].new) == ("eng", "camera.save_settings", "ExposureTime=4000.0")
    finally:
        station.stop()
    text = path.read_text()
    assert text.startswith("# the line's station\n") and 'id = "cam-b"  # the mono one' in text  # comments kept
    assert tomllib.loads(text)["cameras"][0]["settings"] == {"ExposureTime": 4000.0}
    again = Station(load_config(path), db_url="none", archive=False)
    try:
        assert again.cameras["cam-a"].features.get("ExposureTime") == 4000.0
        assert again.cameras["cam-b"].features.get("ExposureTime") == 5000.0
    finally:
        again.stop()


def test_a_second_save_merges_and_replaces_the_settings_line(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(CONFIG)
    write_config_camera_settings(path, "cam-b", {"ExposureTime": 3000.0, "Gain": 2.0})
    assert write_config_camera_settings(path, "cam-b", {"Gain": 4.5}) == {"ExposureTime": 3000.0, "Gain": 4.5}
    cfg = parse_config(path.read_text())
    assert cfg.cameras[1].settings == {"ExposureTime": 3000.0, "Gain": 4.5}
    assert path.read_text().count("settings =") == 1


def test_settings_the_file_cannot_take_are_one_line_and_leave_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(CONFIG)
    before = path.read_text()
    with pytest.raises(SettingsError, match="no camera 'cam-x'"):
        write_config_camera_settings(path, "cam-x", {"Gain": 1.0})
    with pytest.raises(SettingsError, match="station.toml"):  # the simulated camera's config refuses a list
        write_config_camera_settings(path, "cam-a", {"Gain": [1, 2]})  # type: ignore[dict-item]
    assert path.read_text() == before


def test_with_a_product_recipe_selected_the_settings_go_into_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "housing-a.toml"
    recipe.write_text('[recipe]\nname = "housing-a"\nnumber = 1\n\n[model]\nname = "defect-yolo11p-320"\n\n'
                      '[cameras.cam-b]\nverdict = { default_threshold = 0.5 }\n')
    write_recipe_camera_settings(recipe, "cam-b", {"ExposureTime": 2500.0})
    write_recipe_camera_settings(recipe, "cam-a", {"Gain": 3.0})
    r = load_recipe(recipe)
    assert r.cameras["cam-b"].settings == {"ExposureTime": 2500.0}
    assert r.cameras["cam-b"].verdict is not None and r.cameras["cam-b"].verdict.default_threshold == 0.5
    assert r.cameras["cam-a"].settings == {"Gain": 3.0}


def test_a_built_in_station_says_where_settings_can_be_saved(qtbot: Any, fake_station: Any, engine: Any) -> None:
    control = make_control(fake_station, engine)
    control.login("eng", PASSWORDS["eng"])
    store = CameraSettingsStore(control, None)
    dlg = CameraSettingsDialog(control, "fake-1", store=store)
    qtbot.addWidget(dlg)
    dlg.set_value("Gain", 3.0)
    assert not dlg.save_startup_settings()
    assert "--config" in dlg.status.text()


def test_the_feature_set_buttons_say_feature_set(qtbot: Any, fake_station: Any, engine: Any) -> None:
    control = make_control(fake_station, engine)
    dlg = CameraSettingsDialog(control, "fake-1")
    qtbot.addWidget(dlg)
    assert dlg.save_button.text() == "Export feature set…" and dlg.load_button.text() == "Import feature set…"
    assert "recipe" not in dlg.persist_button.text().lower()
