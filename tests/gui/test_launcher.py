"""``inspector gui``: the first-start admin password never travels on the command line."""

from __future__ import annotations

import os
from typing import Any

import pytest
from typer.testing import CliRunner

from gui import launcher


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_main(cfg: Any, **kwargs: Any) -> int:
        startup = kwargs.pop("startup")  # the start-up window, already on screen (test below)
        assert startup.isVisible()
        calls.append(kwargs)
        return 0

    monkeypatch.setattr("gui.app.main", fake_main)
    return calls


def test_password_on_the_command_line_is_refused(started: list[dict[str, Any]]) -> None:
    res = CliRunner().invoke(launcher.app, ["gui", "--admin-password", "secret-pass"])
    assert res.exit_code == 2 and started == []


def test_password_from_the_environment(started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_NEW_PASSWORD", "secret-pass")
    res = CliRunner().invoke(launcher.app, ["gui"])
    assert res.exit_code == 0, res.output
    assert started == [{"db_url": None, "admin_password": "secret-pass"}]
    assert "INSPECTOR_NEW_PASSWORD" not in os.environ  # children of the app do not inherit it


def test_flag_without_a_terminal_says_what_to_set(started: list[dict[str, Any]]) -> None:
    res = CliRunner().invoke(launcher.app, ["gui", "--admin-password"])
    assert res.exit_code == 2 and "INSPECTOR_NEW_PASSWORD" in res.output and started == []


def test_no_password_leaves_it_to_the_dialog(started: list[dict[str, Any]]) -> None:
    res = CliRunner().invoke(launcher.app, ["gui"])
    assert res.exit_code == 0 and started == [{"db_url": None, "admin_password": None}]


def test_startup_window_is_on_screen_before_the_app_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from gui.startup import StartupWindow

    seen: list[tuple[str, bool, str]] = []

    def fake_main(cfg: Any, *, startup: StartupWindow, **kwargs: Any) -> int:
        seen.append((startup.windowTitle(), startup.isVisible(), startup.stage.text()))
        return 0

    monkeypatch.setattr("gui.app.main", fake_main)
    res = CliRunner().invoke(launcher.app, ["gui", "--station", "demo"])
    assert res.exit_code == 0, res.output
    assert seen == [("Inspector — demo", True, "loading the app")]


def test_login_dialog_shows_throttling(qtbot: Any, fake_station: Any, engine: Any) -> None:
    from gui.users_dialog import LoginDialog
    from tests.gui.conftest import make_control

    control = make_control(fake_station, engine)
    dlg = LoginDialog(control)
    qtbot.addWidget(dlg)
    for attempt in range(3):
        dlg.name.setText("admin")
        dlg.password.setText(f"wrong-{attempt}")
        assert not dlg.try_login()
    assert "try again in" in dlg.error.text() and control.user is None
