"""The PLC view (View > PLC link): embedded station and a window attached to a station service (issue 31.6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")
pytest.importorskip("pymodbus")

from gui.app import MainWindow
from gui.bridge import EngineBridge
from gui.plc_view import NOT_CONFIGURED
from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import Command, ErrorCode
from inspector.plc.modbus_server import ModbusPlc
from tests.gui.conftest import FakeStation, make_control
from tests.inspector.plc.test_modbus import FakeStation as PlcCommands
from tests.inspector.plc.test_modbus import free_port, part


@pytest.fixture
def modbus() -> Iterator[tuple[ModbusPlc, PlcClient]]:
    server = ModbusPlc(PlcCommands(), port=free_port(), cameras=("cam1", "cam2"))
    server.start()
    client = PlcClient(port=server.port)
    yield server, client
    client.close()
    server.stop()


def _open_plc_view(qtbot: Any, win: MainWindow) -> Any:
    view_menu = next(a for a in win.menuBar().actions() if a.text() == "&View")
    assert "PLC link" in [a.text() for a in view_menu.menu().actions()]
    assert not win.plc_dock.isVisible()
    win.plc_action.trigger()  # View > PLC link
    qtbot.waitUntil(win.plc_dock.isVisible, timeout=2000)
    return win.plc_view


def _rows(view: Any) -> dict[str, str]:
    return {name: label.text() for name, label in view.modbus.values.items()}


def test_the_plc_view_of_an_embedded_station(qtbot: Any, fake_station: FakeStation, engine: Any,
                                             modbus: tuple[ModbusPlc, PlcClient]) -> None:
    server, client = modbus
    fake_station.plc_modbus = server  # type: ignore[attr-defined]
    fake_station.plc_opcua = None  # type: ignore[attr-defined]
    control = make_control(fake_station, engine)
    bridge = EngineBridge(fake_station, control)
    win = MainWindow(fake_station, control, bridge, stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    try:
        view = _open_plc_view(qtbot, win)
        port = client.client.socket.getsockname()[1]
        qtbot.waitUntil(lambda: _rows(view)["Clients"] == f"127.0.0.1:{port}", timeout=3000)
        assert _rows(view)["Link"] == f"listening on 127.0.0.1:{server.port}\n1 client connected"
        assert not view.none_label.isVisible() and view.modbus.isVisible() and not view.opcua.isVisible()
        assert client.command(Command.TRIGGER_PART, 4711) == 0
        assert client.command(Command.SELECT_RECIPE, 9) == ErrorCode.COMMAND_FAILED
        server.submit_part(part("4711"))
        server.submit_part(part("4712", "NG"))
        view.refresh()
        rows = _rows(view)
        assert rows["Last command"].startswith("select_recipe(9): refused\ncommand_failed (4) · ")
        assert rows["Result FIFO"].startswith("2 of 64 waiting · oldest waited ")
        assert rows["Result FIFO"].endswith("\nno overflow")
        assert view.fifo_bar.value() == 2 and view.fifo_bar.maximum() == 64
        assert rows["Error code"] == "4 command_failed" and rows["State"] == "running · recipe 0"
        assert rows["Counters"].startswith("OK 1 · NG 1 (incomplete 0)\ncommands 1")
        # a PLC that stopped taking results: the FIFO fills and overflows, shown in red
        for i in range(63):
            server.submit_part(part(str(5000 + i)))
        qtbot.waitUntil(lambda: "1 not queued (FIFO full)" in _rows(view)["Result FIFO"], timeout=3000)
        assert "c62828" in view.modbus.values["Result FIFO"].styleSheet() and "c62828" in view.fifo_bar.styleSheet()
        assert view.fifo_bar.value() == 64
        # the command's error still shows: FIFO full does not replace it
        assert _rows(view)["Error code"] == "4 command_failed"
        win.plc_action.trigger()
        assert not win.plc_dock.isVisible() and not view._timer.isActive()  # nothing read while hidden
    finally:
        bridge.close()


def test_a_station_without_a_plc_link_says_so(qtbot: Any, fake_station: FakeStation, engine: Any) -> None:
    control = make_control(fake_station, engine)
    bridge = EngineBridge(fake_station, control)
    win = MainWindow(fake_station, control, bridge, stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    try:
        view = _open_plc_view(qtbot, win)
        assert view.none_label.isVisible() and view.none_label.text() == NOT_CONFIGURED
        assert not view.modbus.isVisible() and not view.opcua.isVisible()
    finally:
        bridge.close()


def test_the_plc_view_of_a_window_attached_to_the_station_service(qtbot: Any, engine: Any, tmp_path: Path,
                                                                   modbus: tuple[ModbusPlc, PlcClient]) -> None:
    """The service's status snapshot carries the links; the attached window shows them as the embedded one."""
    from gui.remote import RemoteControl, RemoteStation, attach
    from gui.remote_bridge import RemoteBridge
    from inspector.service.server import ControlServer
    from tests.inspector.service.test_server import Station as ServedStation

    server, client = modbus
    st = ServedStation(engine)
    st.plc_modbus, st.plc_opcua = server, None  # type: ignore[attr-defined]
    make_control(st, engine)
    service = ControlServer(st, tmp_path / "run" / "st.sock", image_fps=0, status_hz=5)
    service.start()
    got = attach("fake", service.path)
    assert got is not None
    link, hello = got
    station = RemoteStation(hello)
    control = RemoteControl(link, station, None)
    bridge = RemoteBridge(station, control, link)
    win = MainWindow(station, control, bridge, stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    try:
        assert client.command(Command.SELECT_RECIPE, 2) == 0
        server.submit_part(part("77", missing=("cam1",)))
        view = _open_plc_view(qtbot, win)
        port = client.client.socket.getsockname()[1]
        qtbot.waitUntil(lambda: _rows(view)["Clients"] == f"127.0.0.1:{port}", timeout=5000)
        qtbot.waitUntil(lambda: _rows(view)["Last command"].startswith("select_recipe(2): done · "), timeout=5000)
        rows = _rows(view)
        assert rows["State"] == "running · recipe 2" and rows["Result FIFO"].startswith("1 of 64 waiting")
        assert rows["Counters"].startswith("OK 0 · NG 1 (incomplete 1)\ncommands 1")
    finally:
        bridge.close()
        link.close()
        service.stop()
