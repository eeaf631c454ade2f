"""The station as a service and the GUI as a window onto it (issue 31.1, 31.2).

One ``inspector service`` subprocess with two simulated cameras and a SQLite database
serves the tests of this module; the GUI attaches to it (offscreen) through
`gui.app.run_attached`, the path ``inspector gui`` takes when a service answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from gui.app import MainWindow, run_attached
from gui.remote import LinkLost, RemoteLink, attach
from inspector.access.users import PermissionDenied, Role
from tests.gui.service_child import ServiceChild

STATION = """
name = "svc-test"
[scheduler]
max_wait_ms = 2
[[cameras]]
id = "cam-a"
kind = "simulated"
fps = 20
bank_size = 4
[[cameras]]
id = "cam-b"
kind = "simulated"
fps = 20
mono = true
bank_size = 4
"""
ADMIN = ("admin", "admin-pass-1")
OPERATOR = ("olga", "operator-pass")


class Service(ServiceChild):
    """The module's ``inspector service`` child: two simulated cameras, no archive."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, STATION, args=["--no-archive"], env={"INSPECTOR_NEW_PASSWORD": ADMIN[1]})


def _users_add(svc: Service, name: str, role: str, password: str, acting: str | None = None) -> None:
    svc.add_user(name, role, password, admin_password=ADMIN[1], acting=acting)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("service"))
    svc.start()
    try:
        svc.wait_answering()
        # the first admin and an operator from the command line, non-interactive (issue 31.2)
        _users_add(svc, ADMIN[0], "admin", ADMIN[1])
        _users_add(svc, OPERATOR[0], "operator", OPERATOR[1], acting=ADMIN[0])
        yield svc
    finally:
        svc.kill_if_running()


def wait_rows_above(svc: Service, n: int, timeout: float) -> float:
    """Seconds until the database holds more than ``n`` inspections (raises past ``timeout``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if svc.rows() > n:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"no inspection stored within {timeout} s (rows stayed {n})")


def test_the_socket_is_the_service_users_and_groups_only(service: Service) -> None:
    assert oct(service.socket.stat().st_mode & 0o777) == "0o660"


def test_closing_an_attached_gui_leaves_the_station_inspecting(qtbot: Any, service: Service) -> None:
    got = attach("svc-test", service.socket)
    assert got is not None
    link, hello = got
    assert hello["station"] == "svc-test" and [c["id"] for c in hello["cameras"]] == ["cam-a", "cam-b"]
    seen: dict[str, Any] = {}

    def close_when_live() -> None:
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if wins and all(v.image is not None for v in wins[0].wall.views.values()):
            win = wins[0]
            seen["health"] = win.health_label.text()
            seen["user"] = win.user_label.text()
            seen["pause_enabled"] = win.wall.pause_button.isEnabled()
            seen["rows_before_close"] = service.rows()
            win.close()
        else:
            QTimer.singleShot(100, close_when_live)

    QTimer.singleShot(100, close_when_live)
    assert run_attached(link, hello) == 0
    # the wall showed both cameras' pictures, nobody logged in, pause refused until a login
    assert seen["user"] == "not logged in · watching" and seen["pause_enabled"] is False
    assert seen["health"].startswith("health:")
    assert service.proc is not None and service.proc.poll() is None
    n = service.rows()
    assert n >= seen["rows_before_close"]
    wait_rows_above(service, n, timeout=10)  # still inspecting after the window closed


def test_an_attached_gui_logs_in_over_the_link_and_pausing_is_asked_for(qtbot: Any, service: Service,
                                                                       monkeypatch: Any) -> None:
    got = attach("svc-test", service.socket)
    assert got is not None
    link, hello = got
    from gui.remote import RemoteControl, RemoteStation
    from gui.remote_bridge import RemoteBridge

    station = RemoteStation(hello)
    control = RemoteControl(link, station)
    bridge = RemoteBridge(station, control, link)
    win = MainWindow(station, control, bridge, stop_station_on_close=False)
    qtbot.addWidget(win)
    asked: list[bool] = []
    answer = {"yes": False}

    def confirm() -> bool:
        asked.append(True)
        return answer["yes"]

    control.confirm_pause = confirm
    try:
        with pytest.raises(PermissionDenied):
            control.pause(True)
        assert control.login(OPERATOR[0], "wrong-password") is None
        user = control.login(*OPERATOR)
        assert user is not None and user.role is Role.OPERATOR
        assert win.wall.pause_button.isEnabled()
        win.wall.toggle_pause()  # the operator says no: nothing changes
        assert asked == [True] and not station.paused
        answer["yes"] = True
        win.wall.toggle_pause()
        assert station.paused and win.wall.paused_label.isVisibleTo(win.wall)
        win.wall.toggle_pause()  # resuming is not asked for
        assert asked == [True, True] and not station.paused
        entries = control.audit_entries(limit=20)
        mine = [(e.user, e.action, e.new) for e in entries if e.user == OPERATOR[0]]
        assert ("olga", "station.pause", "true") in mine and ("olga", "station.pause", "false") in mine
        assert any(e.action == "session.login_failed" and e.target == OPERATOR[0] for e in entries)
    finally:
        win.close()
        bridge.close()
        link.close()
    n = service.rows()
    wait_rows_above(service, n, timeout=10)


def test_a_gui_that_reads_nothing_never_holds_the_station(service: Service) -> None:
    """A client asks for images and then never reads: inspection goes on, the client is dropped or starved."""
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(str(service.socket))
    try:
        s.sendall(b'{"id": 1, "op": "images", "args": {"on": true}}\n')
        n = service.rows()
        t0 = time.monotonic()
        time.sleep(8.0)  # past the server's send timeout (5 s)
        grown = service.rows() - n
        assert grown > 8.0 * 10  # two cameras at 20 fps: well over 10 results a second stored meanwhile
        assert time.monotonic() - t0 < 12
        # the service still answers others
        link = RemoteLink(service.socket)
        try:
            assert link.request("hello")["station"] == "svc-test"
        finally:
            link.close()
    finally:
        s.close()


def test_a_restarted_service_inspects_again_with_nobody_logged_in(service: Service) -> None:
    assert service.stop() == 0
    assert not service.socket.exists()  # removed on a clean stop
    n = service.rows()
    service.start()
    took = wait_rows_above(service, n, timeout=60)
    log_text = (service.folder / "service.log").read_text()
    print(f"restart: first new inspection stored {took:.2f} s after the process started")
    # nobody logged in: the service inspected as soon as its station was built
    assert "inspecting; control link" in log_text
    service.wait_answering()
    link = RemoteLink(service.socket)
    try:
        assert link.request("whoami") is None
        with pytest.raises(PermissionDenied):
            link.request("pause", paused=True)
    finally:
        link.close()
    with pytest.raises(LinkLost):
        link.request("hello")


def test_the_first_admin_from_an_attached_guis_first_login(qtbot: Any, engine: Any, tmp_path: Path) -> None:
    """Issue 31.2 over the link: no users yet, the attached window's first-start dialog makes the admin."""
    from gui.remote import RemoteControl, RemoteStation
    from gui.users_dialog import FirstStartDialog
    from inspector.service.server import ControlServer
    from tests.inspector.service.test_server import Station as ServedFake

    st = ServedFake(engine)
    with ControlServer(st, tmp_path / "first.sock") as server:
        got = attach("fake", server.path)
        assert got is not None
        link, hello = got
        try:
            control = RemoteControl(link, RemoteStation(hello))
            assert control.first_start_needed()
            dlg = FirstStartDialog(control)  # type: ignore[arg-type]  # RemoteControl has StationControl's interface
            qtbot.addWidget(dlg)
            dlg.password.setText("first-admin-pass")
            dlg.confirm.setText("first-admin-pass")
            assert dlg.try_create()
            assert control.user is not None and control.user.role is Role.ADMIN and not control.first_start_needed()
            assert [e.action for e in control.audit_entries(limit=3)][:2] == ["session.login", "users.create"]
        finally:
            link.close()
