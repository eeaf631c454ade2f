"""`StationControl`: permission checks, audited changes, recipes (no Qt, no inference)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine

from camera.features import FeatureError
from camera.simulated import SimulatedLineCamera
from inspector.access.control import ControlError, RecipeError, StationControl
from inspector.access.users import PermissionDenied, Role, UserError
from inspector.pipeline.verdict import VerdictRules


class FakeStation:
    """Just what `StationControl` touches: cameras, lanes, provenance, pause."""

    def __init__(self, *ids: str) -> None:
        self.config = SimpleNamespace(name="fake")
        self.cameras = {i: SimulatedLineCamera(i, fps=5, bank_size=1) for i in ids}
        self.lanes = {i: SimpleNamespace(rules=VerdictRules()) for i in ids}
        self.refreshed: list[str] = []
        self.paused = False

    def refresh_provenance(self, camera_id: str) -> None:
        self.refreshed.append(camera_id)

    def pause(self, paused: bool) -> None:
        self.paused = paused


@pytest.fixture
def control(engine: Engine) -> StationControl:
    ctl = StationControl(FakeStation("cam1", "cam2"), engine=engine)  # type: ignore[arg-type]
    ctl.create_admin("admin-pass")
    ctl.login("admin", "admin-pass")
    ctl.add_user("eng", "engineer-pass", Role.ENGINEER)
    ctl.add_user("op", "operator-pass", "operator")
    ctl.logout()
    return ctl


def test_needs_a_database() -> None:
    with pytest.raises(ControlError, match="database"):
        StationControl(FakeStation("cam1"))  # type: ignore[arg-type]


def test_first_start(engine: Engine) -> None:
    ctl = StationControl(FakeStation("cam1"), engine=engine)  # type: ignore[arg-type]
    assert ctl.first_start_needed()
    ctl.create_admin("admin-pass")
    assert not ctl.first_start_needed()
    assert ctl.user is None  # creating the admin does not log anyone in
    with pytest.raises(PermissionDenied, match="users exist"):
        ctl.create_admin("another-pass", name="admin2")


def test_login_logout_audited(control: StationControl) -> None:
    seen: list[object] = []
    control.events.user_changed.connect(seen.append)
    assert control.login("eng", "wrong-password") is None
    user = control.login("eng", "engineer-pass")
    assert user is not None and user.role is Role.ENGINEER and control.user == user
    control.logout()
    assert control.user is None
    assert seen == [user, None]
    actions = [e.action for e in control.audit_entries(limit=3)]
    assert actions == ["session.logout", "session.login", "session.login_failed"]


@pytest.mark.parametrize("who", [None, "op"])
def test_watchers_cannot_change_features(control: StationControl, who: str | None) -> None:
    if who:
        control.login(who, "operator-pass")
    cam = control.station.cameras["cam1"]
    before = control.audit.count()
    threshold_before = control.station.lanes["cam1"].rules.default_threshold
    with pytest.raises(PermissionDenied, match="camera.set_feature"):
        control.set_camera_feature("cam1", "ExposureTime", 8000.0)
    with pytest.raises(PermissionDenied):
        control.set_threshold("cam1", None, 0.9)
    with pytest.raises(PermissionDenied):
        control.add_user("x", "long-enough", "admin")
    assert cam.features.get("ExposureTime") == 5000.0
    assert control.station.lanes["cam1"].rules.default_threshold == threshold_before != 0.9
    assert control.audit.count() == before


def test_engineer_sets_feature(control: StationControl) -> None:
    control.login("eng", "engineer-pass")
    got: list[tuple[str, str, object]] = []
    control.events.feature_changed.connect(lambda *a: got.append(a))
    assert control.set_camera_feature("cam1", "ExposureTime", 8000) == 8000.0
    assert control.station.cameras["cam1"].features.get("ExposureTime") == 8000.0
    assert control.station.refreshed == ["cam1"]
    assert got == [("cam1", "ExposureTime", 8000.0)]
    row = control.audit_entries(limit=1)[0]
    assert (row.user, row.action, row.target, row.old, row.new) == ("eng", "camera.set_feature", "cam1/ExposureTime", "5000.0", "8000.0")


def test_refused_value_is_not_audited(control: StationControl) -> None:
    control.login("eng", "engineer-pass")
    before = control.audit.count()
    with pytest.raises(FeatureError, match="multiple of 16"):
        control.set_camera_feature("cam1", "Width", 321)
    with pytest.raises(ControlError, match="no such camera"):
        control.set_camera_feature("nope", "Width", 320)
    assert control.audit.count() == before


def test_operator_may_pause_anonymous_may_not(control: StationControl) -> None:
    with pytest.raises(PermissionDenied, match="not logged in"):
        control.pause(True)
    control.login("op", "operator-pass")
    control.pause(True)
    assert control.station.paused is True
    row = control.audit_entries(limit=1)[0]
    assert (row.action, row.old, row.new) == ("station.pause", "false", "true")


def test_set_threshold_replaces_frozen_rules(control: StationControl) -> None:
    control.login("eng", "engineer-pass")
    lane = control.station.lanes["cam2"]
    original = lane.rules
    assert control.set_threshold("cam2", "scratch", 0.6) == 0.35
    assert control.set_threshold("cam2", None, 0.5) == 0.35
    assert lane.rules is not original and original.class_thresholds == {}
    assert lane.rules.threshold_for("scratch") == 0.6 and lane.rules.default_threshold == 0.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        control.set_threshold("cam2", None, 1.5)


def test_recipe_round_trip(control: StationControl, tmp_path: Path) -> None:
    control.login("eng", "engineer-pass")
    path = tmp_path / "cam1.toml"
    saved = control.save_recipe("cam1", path)
    assert saved["Width"] == 320 and "DeviceVendorName" not in saved  # read-only nodes are not settings
    control.set_camera_feature("cam1", "Gain", 6.0)
    control.set_camera_feature("cam1", "PixelFormat", "Mono8")
    result = control.load_recipe("cam1", path)
    assert result.applied == {"PixelFormat": "BGR8", "Gain": 0.0}
    assert result.errors == {} and "Width" in result.unchanged
    assert control.station.cameras["cam1"].pool._shape == (320, 320, 3)
    # the same recipe fits another camera of the same model
    assert control.load_recipe("cam2", path).errors == {}


def test_recipe_errors(control: StationControl, tmp_path: Path) -> None:
    control.login("eng", "engineer-pass")
    bad = tmp_path / "bad.toml"
    bad.write_text("[features]\nWidth = 321\nGain = 3.0\n")
    result = control.load_recipe("cam1", bad)
    assert set(result.errors) == {"Width"} and result.applied == {"Gain": 3.0}
    bad.write_text("not = [toml")
    with pytest.raises(RecipeError, match="not valid TOML"):
        control.load_recipe("cam1", bad)
    other = tmp_path / "other.toml"
    other.write_text('[recipe]\nmodel = "Gizmo 3000"\n[features]\nGain = 1.0\n')
    with pytest.raises(RecipeError, match="Gizmo 3000"):
        control.load_recipe("cam1", other)
    with pytest.raises(RecipeError, match="cannot read"):
        control.load_recipe("cam1", tmp_path / "missing.toml")


def test_admin_manages_users(control: StationControl) -> None:
    control.login("admin", "admin-pass")
    assert [u.name for u in control.list_users()] == ["admin", "eng", "op"]
    assert control.set_role("op", "engineer") is Role.OPERATOR
    with pytest.raises(UserError, match="last admin"):
        control.set_role("admin", "engineer")
    control.set_password("op", "new-password")
    row = control.audit_entries(limit=1)[0]
    assert row.action == "users.set_password" and row.new is None and "new-password" not in str(row)
    control.logout()
    assert control.login("op", "new-password") is not None and control.user.role is Role.ENGINEER


def test_login_throttling_is_audited(engine: Engine) -> None:
    from inspector.access.users import LOCKOUT_AFTER, LoginRefused, login_delay

    now = [1_000_000.0]
    ctl = StationControl(FakeStation("cam1"), engine=engine, clock=lambda: now[0])  # type: ignore[arg-type]
    ctl.create_admin("admin-pass")
    for n in range(1, LOCKOUT_AFTER + 1):
        assert ctl.login("admin", f"wrong-{n}") is None
        now[0] += login_delay(n)
    with pytest.raises(LoginRefused, match="locked") as err:
        ctl.login("admin", "admin-pass")
    assert "\n" not in str(err.value) and ctl.user is None
    rows = ctl.audit.list(limit=3)
    assert [r.action for r in rows] == ["session.user_locked", "session.login_failed", "session.login_failed"]
    assert rows[1].new == f"{LOCKOUT_AFTER} in a row"


def test_too_early_attempt_is_refused_not_slept(engine: Engine) -> None:
    from inspector.access.users import LoginRefused

    now = [1_000_000.0]
    ctl = StationControl(FakeStation("cam1"), engine=engine, clock=lambda: now[0])  # type: ignore[arg-type]
    ctl.create_admin("admin-pass")
    ctl.login("admin", "wrong-1")
    ctl.login("admin", "wrong-2")
    with pytest.raises(LoginRefused, match="try again in 1 s"):
        ctl.login("admin", "admin-pass")
    now[0] += 1
    assert ctl.login("admin", "admin-pass") is not None


def test_admin_unlocks_and_removes_users(control: StationControl) -> None:
    control.login("admin", "admin-pass")
    assert control.unlock_user("op") is False
    assert control.remove_user("op") is Role.OPERATOR
    with pytest.raises(UserError, match="logged in here"):
        control.remove_user("admin")
    actions = [e.action for e in control.audit_entries(limit=2)]
    assert actions == ["users.remove", "users.unlock"]
    control.logout()
    with pytest.raises(PermissionDenied):
        control.remove_user("eng")
