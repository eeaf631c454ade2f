"""The main window, login and user dialogs, the audit view, and `gui.app.main`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from camera.protocol import CameraState
from gui.app import MainWindow, main
from gui.audit_view import AuditView
from gui.bridge import EngineBridge
from gui.users_dialog import FirstStartDialog, LoginDialog, UsersDialog
from inspector.access.control import StationControl
from inspector.access.users import Role, User, UserStore
from inspector.config import parse_config
from inspector.storage.db import open_database
from tests.gui.conftest import PASSWORDS, SMALL_STATION, FakeStation, make_control


@pytest.fixture
def window(qtbot: Any, fake_station: FakeStation, engine: Any) -> Any:
    control = make_control(fake_station, engine)
    bridge = EngineBridge(fake_station, control)
    win = MainWindow(fake_station, control, bridge, stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    bridge.close()


def test_main_window_follows_the_session(qtbot: Any, window: MainWindow) -> None:
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Live wall", "History", "Audit"]
    assert window.user_label.text() == "not logged in · watching"
    assert not window.pause_action.isEnabled() and not window.users_action.isEnabled()
    dlg = LoginDialog(window.control, window)
    dlg.name.setText("eng")
    dlg.password.setText("nope-nope")
    assert not dlg.try_login() and "Wrong" in dlg.error.text()
    dlg.password.setText(PASSWORDS["eng"])
    with qtbot.waitSignal(window.bridge.user_changed):
        assert dlg.try_login()
    assert window.user_label.text() == "eng · engineer" and window.login_action.text() == "Log out"
    assert window.pause_action.isEnabled() and not window.users_action.isEnabled()
    window.tabs.setCurrentWidget(window.audit)
    with qtbot.waitSignal(window.bridge.audit_recorded):
        window.login_or_logout()  # logs out
    qtbot.waitUntil(lambda: window.audit.model.entries[0].action == "session.logout", timeout=2000)
    assert window.user_label.text() == "not logged in · watching"


def test_settings_opens_on_the_enlarged_camera(qtbot: Any, window: MainWindow) -> None:
    window.wall.toggle_enlarged("fake-2")
    dlg = window.open_settings()
    assert dlg.camera_id == "fake-2"
    dlg.close()


def test_audit_view_is_read_only(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    control = make_control(fake_station, engine)
    view = AuditView(control)
    qtbot.addWidget(view)
    assert view.model.rowCount() == control.audit.count() > 0
    idx = view.model.index(0, 5)
    assert not view.model.setData(idx, "tampered")
    assert not (view.model.flags(idx) & view.model.flags(idx).ItemIsEditable)


def test_first_start_dialog(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    control = StationControl(fake_station, engine=engine)  # type: ignore[arg-type]
    assert control.first_start_needed()
    dlg = FirstStartDialog(control)
    qtbot.addWidget(dlg)
    dlg.password.setText("admin-pass")
    dlg.confirm.setText("admin-pazz")
    assert not dlg.try_create() and "differ" in dlg.error.text()
    dlg.confirm.setText("admin-pass")
    assert dlg.try_create() and not control.first_start_needed()


def test_first_start_can_be_postponed_to_watch_only(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    from PySide6.QtWidgets import QPushButton

    control = StationControl(fake_station, engine=engine)  # type: ignore[arg-type]
    dlg = FirstStartDialog(control)
    qtbot.addWidget(dlg)
    results: list[int] = []
    dlg.finished.connect(results.append)
    watch = next(b for b in dlg.findChildren(QPushButton) if b.text() == "Watch only for now")
    watch.click()
    assert results == [FirstStartDialog.WATCH_ONLY]
    assert control.first_start_needed() and control.user is None  # nobody may change anything yet


def test_users_dialog(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    control = make_control(fake_station, engine)
    control.login("admin", PASSWORDS["admin"])
    dlg = UsersDialog(control)
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 3
    dlg.new_name.setText("kim")
    dlg.new_password.setText("short")
    assert not dlg.add_user() and "at least 8" in dlg.message.text()
    dlg.new_password.setText("kims-password")
    dlg.new_role.setCurrentText("engineer")
    assert dlg.add_user() and dlg.table.rowCount() == 4
    assert dlg.change_role("kim", "admin")
    assert control.users.get("kim") == User("kim", Role.ADMIN)
    control.logout()
    control.login("op", PASSWORDS["op"])
    refused = UsersDialog(control)
    qtbot.addWidget(refused)
    assert refused.table.rowCount() == 0 and "users.manage" in refused.message.text()


def test_main_unattended_first_start(qtbot: Any, tmp_path: Path) -> None:
    cfg = parse_config(SMALL_STATION, "gui-test")
    url = f"sqlite:///{tmp_path / 'station.db'}"

    def close_when_live() -> None:
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if wins and all(v.image is not None for v in wins[0].wall.views.values()):
            wins[0].close()
        else:
            QTimer.singleShot(200, close_when_live)

    QTimer.singleShot(200, close_when_live)
    assert main(cfg, db_url=url, admin_password="admin-pass") == 0
    eng = open_database(url)
    try:
        assert UserStore(eng).list_users() == [User("admin", Role.ADMIN)]
    finally:
        eng.dispose()


def test_main_refuses_to_run_without_a_database(qtbot: Any) -> None:
    assert main(parse_config(SMALL_STATION, "gui-test"), db_url="none") == 2


def test_status_bar_shows_the_stations_health_not_ok_when_frames_are_dropped(
    qtbot: Any, window: MainWindow, fake_station: FakeStation
) -> None:
    from inspector.ops.health import assess
    from tests.inspector.ops.test_health import _station

    behind = _station(dropped_fps=11.1)  # 37% of the frames dropped: the GUI said "health: OK"
    fake_station.health = lambda: assess(behind)  # type: ignore[attr-defined]
    window._update_status()
    text = window.health_label.text()
    assert text.startswith("health: DEGRADED") and "37% of frames dropped" in text
    assert "OK" not in text
    behind.watchdog._rates["c0"]["dropped"] = 27.6  # now 92% of c0's frames, 50% overall
    window._update_status()
    assert window.health_label.text().startswith("health: ALARM")
    assert "#c62828" in window.health_label.styleSheet()
    fake_station.health = lambda: assess(_station())  # type: ignore[attr-defined]
    window._update_status()
    assert window.health_label.text() == "health: OK"


def test_ctrl_q_quits(qtbot: Any, window: MainWindow) -> None:
    """Issue 15.5: a keyboard way to quit."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QKeySequence

    window.activateWindow()
    qtbot.waitActive(window)
    qtbot.keyClick(window.tabs, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2000)
    assert window.quit_action.shortcut().matches(QKeySequence("Ctrl+Q")) == QKeySequence.SequenceMatch.ExactMatch


def test_first_start_logs_the_new_administrator_in(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    """Issue 15.4: the admin just created is the user of this session."""
    control = StationControl(fake_station, engine=engine)  # type: ignore[arg-type]
    dlg = FirstStartDialog(control)
    qtbot.addWidget(dlg)
    dlg.name.setText("chief")
    dlg.password.setText("admin-pass")
    dlg.confirm.setText("admin-pass")
    assert dlg.try_create()
    assert control.user == User("chief", Role.ADMIN) and control.can("users.manage")


def test_status_bar_summarises_eight_cameras_at_1280_px(qtbot: Any, engine: Any) -> None:
    """Issue 15.2: a labelled summary that fits (the per-camera list is in its tooltip), never blank."""
    from PySide6.QtGui import QFontMetrics

    st = FakeStation(*(f"line-cam{i}" for i in range(1, 9)))
    control = make_control(st, engine)
    bridge = EngineBridge(st, control)
    win = MainWindow(st, control, bridge, stop_station_on_close=False)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    bridge._timer.stop()  # the test sets the numbers
    for i, live in enumerate(bridge.live.values()):
        live.fps, live.inspected_fps, live.dropped, live.ng = 5.0, 3.0, 1234 + i, 7
    st.cameras["line-cam8"].set_state(CameraState.OFFLINE)
    win._update_status()
    label = win.summary_label
    text = label.text()
    assert "…" not in text and QFontMetrics(label.font()).horizontalAdvance(text) <= label.width()
    assert "8 cameras" in text and "1 not streaming" in text
    assert "rx 40.0 fps" in text and "inspected 24.0 fps" in text and "drops 9,900" in text
    tip = label.toolTip()
    assert all(f"line-cam{i}" in tip for i in range(1, 9)) and "received" in tip
    win.show_message("exported 3 rows to /tmp/x.csv")  # a message covers the summary, which comes back
    assert win.statusBar().currentMessage().startswith("exported")
    win.statusBar().clearMessage()
    win._update_status()
    assert label.isVisible() and label.text() == text
    bridge.close()


def test_history_buttons_follow_the_login(qtbot: Any, window: MainWindow) -> None:
    control = window.control
    assert not window.history.csv_button.isEnabled()
    control.login("eng", PASSWORDS["eng"])
    qtbot.waitUntil(window.history.csv_button.isEnabled, timeout=2000)
    control.logout()
    qtbot.waitUntil(lambda: not window.history.csv_button.isEnabled(), timeout=2000)


def test_first_start_dialog_does_not_hold_inspection(qtbot: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Issue 31.2: while the first-admin dialog is open the station inspects and stores results."""
    from sqlalchemy import text

    import gui.app as app_module

    cfg = parse_config(SMALL_STATION, "gui-test")
    url = f"sqlite:///{tmp_path / 'station.db'}"
    seen: list[int] = []

    def rows() -> int:
        eng = open_database(url)
        try:
            with eng.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM inspections")).scalar_one())
        finally:
            eng.dispose()

    class WaitingDialog:
        """The first-admin dialog left open by nobody: it watches the database for a while."""

        WATCH_ONLY = FirstStartDialog.WATCH_ONLY
        DialogCode = FirstStartDialog.DialogCode

        def __init__(self, control: Any) -> None:
            self.control = control

        def exec(self) -> int:
            try:
                qtbot.waitUntil(lambda: rows() > 0, timeout=20_000)
            finally:
                seen.append(rows())
            return self.WATCH_ONLY

    monkeypatch.setattr(app_module, "FirstStartDialog", WaitingDialog)
    monkeypatch.setenv("INSPECTOR_QUIT_WHEN_SHOWN", "1")
    assert main(cfg, db_url=url) == 0
    assert seen and seen[0] > 0


def test_a_message_too_long_for_the_status_bar_keeps_its_start_and_end(
    qtbot: Any, window: MainWindow, fake_station: FakeStation
) -> None:
    """A refused recipe switch names the gate at its start and the recipe still running at its end: the status
    bar, shortened by the health label, cut it mid-word and lost the end (seen attached to the demo service)."""
    from PySide6.QtGui import QFontMetrics

    from inspector.ops.health import assess
    from tests.inspector.ops.test_health import _station

    fake_station.health = lambda: assess(_station(dropped_fps=11.1))  # type: ignore[attr-defined]  # a long label
    window.resize(1100, 700)
    window._update_status()
    qtbot.waitUntil(lambda: window.statusBar().width() <= 1100)
    said = ("recipe cover v1: model defect-new: its card holds no promotion gate ([gate]) against "
            "defect-yolo11p-320; run inspector model gate --candidate defect-new --current defect-yolo11p-320 "
            "--data HELD_OUT/data.yaml; an admin may override it with a reason (audited) (still on housing v1)")
    window.show_message(said)
    shown = window.statusBar().currentMessage()
    assert shown.startswith("recipe cover v1: model defect-new") and shown.endswith("(still on housing v1)")
    assert "…" in shown and len(shown) < len(said)
    # the message is drawn from the bar's left edge (a few px in) up to the health label, which covers the rest
    assert QFontMetrics(window.statusBar().font()).horizontalAdvance(shown) <= window.health_label.x() - 8
    assert window.statusBar().toolTip() == said  # the whole line on hover
    window.show_message("exported 3 rows to /tmp/x.csv")  # one that fits is shown as it is
    assert window.statusBar().currentMessage() == "exported 3 rows to /tmp/x.csv"
    assert window.statusBar().toolTip() == ""
