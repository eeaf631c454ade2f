"""A screenshot of the live wall during one camera's outage, with the reject gate's counters.

Runs the ``line-demo`` station (8 triggered simulated cameras, a reject gate at 1200 mm) with a
throw-away database, lets it inspect, disconnects one camera for ``--seconds`` (the same
injection as ``inspector run --headless --inject line-cam3:disconnect:20``), and saves the main
window a few seconds into the outage::

    xvfb-run -a -s "-screen 0 1600x1000x24" python installer/screenshot_outage.py
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gui.app import MainWindow, make_application
from gui.bridge import EngineBridge
from inspector.access.control import StationControl
from inspector.config import load_station
from inspector.station import Station
from installer.screenshots import pump, save


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "live_wall_outage.png")
    ap.add_argument("--camera", default="line-cam3")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the camera is disconnected")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--into", type=float, default=6.0, help="seconds into the outage when the shot is taken")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="inspector-outage-"))
    make_application()
    station = Station(load_station("line-demo"), db_url=f"sqlite:///{tmp / 'inspector.db'}")
    control = StationControl(station)
    control.create_admin("admin-password")
    control.login("admin", "admin-password")
    station.start()
    bridge = EngineBridge(station, control)
    win = MainWindow(station, control, bridge)
    win.resize(1280, 800)
    win.show()
    try:
        pump(args.warmup)
        station.inject_fault(args.camera, "disconnect", args.seconds)
        pump(args.into)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save(win, args.out, 0.0)
        print(f"saved {args.out}")
    finally:
        bridge.close()
        station.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
