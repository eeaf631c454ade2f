"""The camera settings dialog: edits reach the camera through the audited control API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from gui.settings_dialog import CameraSettingsDialog
from tests.gui.conftest import PASSWORDS, FakeStation, make_control


@pytest.fixture
def live(station: Any, engine: Any) -> Iterator[tuple[Any, Any]]:
    control = make_control(station, engine)
    station.start()
    yield station, control
    station.stop()


def test_engineer_edit_reaches_the_running_camera(qtbot: Any, live: tuple[Any, Any]) -> None:
    station, control = live
    control.login("eng", PASSWORDS["eng"])
    cam = station.cameras["cam-a"]
    digest = station.lanes["cam-a"].provenance.camera_settings_digest
    dlg = CameraSettingsDialog(control, "cam-a")
    qtbot.addWidget(dlg)
    dlg.set_value("ExposureTime", 8000.0)
    dlg.set_value("Width", 256)
    assert dlg.dirty == {"ExposureTime", "Width"}
    answers = dlg.apply()
    assert answers == {"ExposureTime": 8000.0, "Width": 256}
    assert cam.features.get("ExposureTime") == 8000.0
    assert dlg.items["Width"].text(2) == "✓ 256" and not dlg.dirty
    # the running camera now delivers 256-pixel-wide frames, and results say so
    def newest_width() -> int:
        h = cam.pool.latest()
        if h is None:
            return 0
        try:
            return h.image.shape[1]
        finally:
            h.release()

    qtbot.waitUntil(lambda: newest_width() == 256, timeout=5000)
    assert station.lanes["cam-a"].provenance.camera_settings_digest != digest
    rows = control.audit_entries(limit=2)
    assert [(r.user, r.action, r.target, r.old, r.new) for r in rows] == [  # newest first, tree order applied
        ("eng", "camera.set_feature", "cam-a/ExposureTime", "5000.0", "8000.0"),
        ("eng", "camera.set_feature", "cam-a/Width", "320", "256"),
    ]


@pytest.mark.parametrize("who", [None, "op"])
def test_watchers_are_refused_by_the_engine(qtbot: Any, fake_station: FakeStation, engine: Any, who: str | None) -> None:
    control = make_control(fake_station, engine)
    if who:
        control.login(who, PASSWORDS[who])
    before = control.audit.count()
    cam = fake_station.cameras["fake-1"]
    dlg = CameraSettingsDialog(control, "fake-1")
    qtbot.addWidget(dlg)
    assert "Read-only" in dlg.role_hint.text()
    dlg.set_value("ExposureTime", 9000.0)
    assert dlg.apply() == {}
    assert dlg.status.text().startswith("Refused: camera.set_feature: needs the engineer role")
    assert cam.features.get("ExposureTime") == 5000.0
    assert control.audit.count() == before
    assert not dlg.save_recipe_to(Path("/nonexistent/never-written.toml"))
    assert control.audit.count() == before


def test_device_refusal_is_shown_inline(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    control = make_control(fake_station, engine)
    control.login("eng", PASSWORDS["eng"])
    before = control.audit.count()
    dlg = CameraSettingsDialog(control, "fake-1")
    qtbot.addWidget(dlg)
    dlg.set_value("Width", 330)  # not on the 16-pixel increment
    assert dlg.apply() == {}
    assert dlg.items["Width"].text(2).startswith("✗ Width: 330 is not a multiple of 16")
    assert "Width" in dlg.dirty and control.audit.count() == before


def test_editors_follow_the_feature_types(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    dlg = CameraSettingsDialog(make_control(fake_station, engine), "fake-1")
    qtbot.addWidget(dlg)
    width = dlg.editors["Width"]
    assert isinstance(width, QSpinBox)
    assert (width.minimum(), width.maximum(), width.singleStep()) == (64, 4096, 16)
    assert isinstance(dlg.editors["ExposureTime"], QDoubleSpinBox) and dlg.editors["ExposureTime"].maximum() == 100000.0
    fmt = dlg.editors["PixelFormat"]
    assert isinstance(fmt, QComboBox) and [fmt.itemText(i) for i in range(fmt.count())] == ["BGR8", "Mono8"]
    assert "DeviceVendorName" not in dlg.editors  # read-only: shown as text
    assert dlg.items["DeviceVendorName"].text(1) == "inspector"
    assert isinstance(dlg.editors["UserOutputValue"], QCheckBox)  # bools (the reject output) are check boxes
    assert [n for n, e in dlg.editors.items() if isinstance(e, QCheckBox)] == ["UserOutputValue"]


def test_visibility_and_search_filter_the_tree(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    dlg = CameraSettingsDialog(make_control(fake_station, engine), "fake-1")
    qtbot.addWidget(dlg)
    beginner = set(dlg.visible_features())
    assert "Width" in beginner and "ExposureTime" not in beginner and "PartSeed" not in beginner
    dlg.visibility_combo.setCurrentText("Expert")
    assert "ExposureTime" in dlg.visible_features() and "PartSeed" not in dlg.visible_features()
    dlg.visibility_combo.setCurrentText("Guru")
    assert set(dlg.visible_features()) == set(dlg.items)
    dlg.search.setText("expo")
    assert dlg.visible_features() == ["ExposureTime"]
    simulation = next(dlg.tree.topLevelItem(i) for i in range(dlg.tree.topLevelItemCount()) if dlg.tree.topLevelItem(i).text(0) == "Simulation")
    assert simulation.isHidden()  # a category with nothing to show is hidden


def test_recipe_buttons(qtbot: Any, fake_station: FakeStation, engine: Any, tmp_path: Path) -> None:
    control = make_control(fake_station, engine)
    control.login("eng", PASSWORDS["eng"])
    dlg = CameraSettingsDialog(control, "fake-1")
    qtbot.addWidget(dlg)
    path = tmp_path / "fake-1.toml"
    assert dlg.save_recipe_to(path) and "Width = 320" in path.read_text()
    dlg.set_value("Gain", 12.0)
    dlg.apply()
    assert dlg.load_recipe_from(path)
    assert dlg.items["Gain"].text(2) == "✓ 0 (recipe)"
    assert fake_station.cameras["fake-1"].features.get("Gain") == 0.0
    assert [e.action for e in control.audit_entries(limit=2)] == ["recipe.load", "camera.set_feature"]


def test_settings_on_a_viky_gentl_camera(qtbot: Any, engine: Any) -> None:
    pytest.importorskip("harvesters")
    gentl = pytest.importorskip("camera.gentl")
    system_mod = pytest.importorskip("camera.gentl_system")
    viky = next((p for p in system_mod.find_producers({}) if p.name == "viky.cti"), None)
    if viky is None:
        pytest.skip("genicam's viky.cti producer is not installed")
    with system_mod.GenTLSystem([viky]) as system:
        cam = gentl.GenTLCamera("viky-red", system, device_id="VikyTL_DEV_red")
        with cam:
            st = FakeStation()
            st.cameras["viky-red"] = cam
            control = make_control(st, engine)
            control.login("eng", PASSWORDS["eng"])
            dlg = CameraSettingsDialog(control, "viky-red")
            qtbot.addWidget(dlg)
            assert {"Width", "Height", "PixelFormat"} <= set(dlg.editors)
            assert "Width" in dlg.visible_features()
            dlg.set_value("Width", 320)
            assert dlg.apply() == {"Width": 320}
            assert cam.features.get("Width") == 320 and cam.settings["Width"] == 320
            assert control.audit_entries(limit=1)[0].target == "viky-red/Width"


@pytest.mark.parametrize("who", [None, "op"])
def test_apply_is_off_in_the_read_only_dialog(qtbot: Any, fake_station: FakeStation, engine: Any, who: str | None) -> None:
    """Issue 15.3: read-only means Apply (and the recipe buttons) cannot be pressed, and says why."""
    control = make_control(fake_station, engine)
    if who:
        control.login(who, PASSWORDS[who])
    dlg = CameraSettingsDialog(control, "fake-1")
    qtbot.addWidget(dlg)
    for b in (dlg.apply_button, dlg.save_button, dlg.load_button):
        assert not b.isEnabled() and "needs the engineer role" in b.toolTip()
    control.logout()
    control.login("eng", PASSWORDS["eng"])
    dlg.reload()
    assert dlg.apply_button.isEnabled() and dlg.save_button.isEnabled() and dlg.load_button.isEnabled()
    assert dlg.role_hint.text() == ""
