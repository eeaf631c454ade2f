"""Screenshot of the PLC view (View > PLC link) for the docs: a PLC that stopped taking results.

Runs a triggered 2-camera station with a Modbus TCP and an OPC UA server on 127.0.0.1 and a
throw-away SQLite database; a Modbus PLC triggers parts, takes the first few results, then
stops taking them (the FIFO fills and overflows) and sends a recipe number that does not
exist; an MES is logged in over OPC UA. Saves ``docs/screenshots/plc_view.png``::

    xvfb-run -a -s "-screen 0 1600x1000x24" python installer/screenshot_plc.py
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QImage

from gui.app import MainWindow, make_application
from gui.bridge import EngineBridge
from inspector.access.control import StationControl
from inspector.config import parse_config
from inspector.plc.modbus_client import PlcClient
from inspector.plc.modbus_map import Command
from inspector.station import Station

STATION = """
name = "plc-demo"
[model]
threads = 1
[line]
mode = "triggered"
trigger = "external"
budget_ms = 1000
[plc]
modbus = "127.0.0.1:{modbus}"
opcua = "opc.tcp://127.0.0.1:{opcua}"
opcua_insecure = true
fifo_depth = 64
"""
CAM = """
[[cameras]]
id = "{cid}"
kind = "simulated"
width = 320
height = 320
bank_size = 8
position_mm = {pos}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "plc_view.png")
    ap.add_argument("--parts", type=int, default=75, help="parts the PLC triggers (64 fit in the FIFO)")
    args = ap.parse_args(argv)
    app = make_application()
    modbus, opcua = _free_port(), _free_port()
    text = STATION.format(modbus=modbus, opcua=opcua) + "".join(
        CAM.format(cid=f"cam{i + 1}", pos=50 * i) for i in range(2))
    with tempfile.TemporaryDirectory() as tmp:
        st = Station(parse_config(text, "plc-demo"), db_url=f"sqlite:///{tmp}/plc.db", archive=False)
        with st:
            control = StationControl(st)
            control.create_admin("admin-pass-1")
            control.login("admin", "admin-pass-1")
            control.add_user("mes", "mes-pass-123", "operator")
            control.logout()
            from asyncua.sync import Client

            mes = Client(f"opc.tcp://127.0.0.1:{opcua}")
            mes.set_user("mes")
            mes.set_password("mes-pass-123")
            mes.connect()
            try:
                with PlcClient(port=modbus) as plc:
                    stop = threading.Event()
                    for pid in range(1, args.parts + 1):
                        plc.command(Command.TRIGGER_PART, 81_000 + pid)
                        time.sleep(0.08)
                        if pid <= 5 and plc.read("fifo_count"):
                            plc.command(Command.DEQUEUE_RESULT)  # then the PLC stops taking results
                    plc.command(Command.SELECT_RECIPE, 9)  # no such recipe: refused

                    def keep_triggering() -> None:  # the line goes on; nobody takes the results
                        pid = 82_000
                        while not stop.wait(0.25):
                            pid += 1
                            plc.command(Command.TRIGGER_PART, pid)

                    feeder = threading.Thread(target=keep_triggering, daemon=True)
                    feeder.start()
                    bridge = EngineBridge(st, control)
                    win = MainWindow(st, control, bridge, stop_station_on_close=False)
                    win.resize(1500, 900)
                    win.show()
                    win.plc_action.trigger()
                    win.resizeDocks([win.plc_dock], [470], Qt.Orientation.Horizontal)
                    pump(4.0)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    img = win.grab().toImage()
                    img.convertToFormat(QImage.Format.Format_Indexed8).save(str(args.out), "PNG", 0)  # ~4x smaller
                    print(f"saved {args.out}; health: {st.health()['summary']}")
                    stop.set()
                    feeder.join(5)
                    bridge.close()
                    win.close()
            finally:
                mes.disconnect()
    app.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
