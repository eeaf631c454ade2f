"""The start-up window: shown while the station is built off the GUI thread, and what ends the build."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from gui.app import main
from gui.startup import BuildCancelled, StartupWindow, run_build
from inspector.config import parse_config
from inspector.station import StationError
from tests.gui.conftest import SMALL_STATION

#: What Qt's offscreen platform plugin says whenever a window is shown (no display has the noise).
_OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints()"


@pytest.fixture
def slow_build(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """`Station` replaced by one that tells "warming up", then waits for ``gate.release``.

    The test sets ``gate.error`` to make the build fail once released.
    """
    gate = SimpleNamespace(release=threading.Event(), finished=threading.Event(), error=None, stopped=[],
                           thread=None)

    class SlowStation:
        def __init__(self, cfg: Any, *, db_url: str | None = None, progress: Callable[[str], None]) -> None:
            gate.thread = threading.current_thread()
            progress("loading model defect-yolo11p-320")
            progress("warming up")
            assert gate.release.wait(20), "the test never released the build"
            time.sleep(0.05)  # still inside the build when the GUI thread would give up on it
            gate.finished.set()
            if gate.error is not None:
                raise gate.error

        def stop(self) -> None:
            gate.stopped.append(self)

    monkeypatch.setattr("inspector.station.Station", SlowStation)
    return gate


def visible_startup_window() -> StartupWindow | None:
    return next((w for w in QApplication.topLevelWidgets() if isinstance(w, StartupWindow) and w.isVisible()), None)


def poll(check: Callable[[], bool], every_ms: int = 20) -> None:
    """Run ``check`` on the GUI thread until it returns True."""

    def again() -> None:
        if not check():
            QTimer.singleShot(every_ms, again)

    QTimer.singleShot(0, again)


def test_startup_window_shows_the_stages_while_the_station_is_built(
        qtbot: Any, slow_build: SimpleNamespace, tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []

    def look() -> bool:
        win = visible_startup_window()
        if win is None:
            return False
        seen.append((win.stage.text(), slow_build.finished.is_set()))
        if win.stage.text() != "warming up":
            return False
        slow_build.release.set()
        return True

    slow_build.error = StationError("stop here")
    poll(look)
    assert main(parse_config(SMALL_STATION, "gui-test"), db_url=f"sqlite:///{tmp_path / 's.db'}") == 2
    assert seen[-1] == ("warming up", False)  # shown, with the build's stage, before the build ended
    assert slow_build.thread is not threading.main_thread()
    assert visible_startup_window() is None


def test_a_failing_build_is_one_line_and_exit_2(qtbot: Any, slow_build: SimpleNamespace, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    slow_build.error = StationError("camera cam-a: no such device")
    slow_build.release.set()
    assert main(parse_config(SMALL_STATION, "gui-test"), db_url=f"sqlite:///{tmp_path / 's.db'}") == 2
    assert capsys.readouterr().err.splitlines() == ["Cannot build station gui-test: camera cam-a: no such device"]
    assert slow_build.stopped == []


@pytest.mark.parametrize("error", [None, StationError("camera cam-a: no such device")], ids=["built", "failed"])
def test_closing_the_startup_window_waits_for_the_build_then_exits_1_quietly(
        qtbot: Any, slow_build: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        error: Exception | None) -> None:
    slow_build.error = error

    def close() -> bool:
        win = visible_startup_window()
        if win is None or win.stage.text() != "warming up":
            return False
        win.close()
        # the GUI thread now waits for the build: release it from elsewhere, a little later
        threading.Timer(0.3, slow_build.release.set).start()
        return True

    poll(close)
    assert main(parse_config(SMALL_STATION, "gui-test"), db_url=f"sqlite:///{tmp_path / 's.db'}") == 1
    assert slow_build.finished.is_set() and not slow_build.thread.is_alive()
    assert len(slow_build.stopped) == (1 if error is None else 0)  # what was built is stopped
    assert capsys.readouterr().err == ""


def test_run_build_hands_the_stages_over_in_order_and_reraises_on_the_gui_thread(qtbot: Any) -> None:
    win = StartupWindow("s")
    qtbot.addWidget(win)
    win.show()
    shown: list[str] = []
    win.stage.setText = shown.append  # type: ignore[method-assign]  # every stage the window is told

    def build(say: Callable[[str], None]) -> int:
        for i in range(5):
            say(f"stage {i}")
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        run_build(win, build, lambda _r: None)
    qtbot.waitUntil(lambda: len(shown) == 5)
    assert shown == [f"stage {i}" for i in range(5)]


def test_a_window_closed_before_the_build_builds_nothing(qtbot: Any) -> None:
    win = StartupWindow("s")
    qtbot.addWidget(win)
    win.show_now()
    win.close()
    built: list[str] = []
    with pytest.raises(BuildCancelled):
        run_build(win, lambda say: built.append("built"), lambda _r: None)
    assert built == []


def test_gui_build_failure_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "INSPECTOR_NEW_PASSWORD": "admin-pass-1"}
    res = subprocess.run(
        [sys.executable, "-m", "gui.launcher", "gui", "--station", "demo", "--db", f"sqlite:///{tmp_path}/no/such/s.db"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and ln != _OFFSCREEN_NOISE]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Cannot build station demo: ") and "does not exist" in lines[0]
