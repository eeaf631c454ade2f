"""Screenshots of issue 28 in a window ATTACHED to a station service: the Teach dialog after teaching (histogram of
good and NG scores with the threshold) and the live wall with the anomaly heat maps the service sends.

Starts ``inspector service`` on the built-in ``demo`` station (8 simulated cameras) with one product recipe and a
throw-away SQLite database, attaches the GUI as ``inspector gui`` does, logs in as an engineer and drives the Teach
dialog like a user: collect N good parts of cameras 2-8 from the running line and teach; then camera 1 with a
folder of its NG images (the ones the service archived, the detector's NG parts) and teach; save the recipe's
next version and switch to it; turn the wall's heat maps on::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python installer/screenshot_teach.py \\
        --wall /work/lead/wall_heatmaps.png --teach /work/lead/teach_dialog.png
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QWidget

from gui.app import attached_window, make_application
from gui.remote import attach

log = logging.getLogger("screenshot_teach")
ADMIN, ENGINEER = ("admin", "admin-pass-1"), ("eve", "engineer-pass-1")


def pump(seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Run the Qt event loop for up to ``seconds`` (until ``until()`` holds); returns whether it held."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def shoot(widget: QWidget, path: Path) -> None:
    pump(0.5)
    img = widget.grab().toImage()
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(str(path), "PNG")
    log.info("saved %s (%dx%d, %d KB)", path, img.width(), img.height(), path.stat().st_size // 1024)


def start_service(folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """The demo station as a service, with a recipes folder and one recipe; returns (process, socket)."""
    recipes = folder / "recipes"
    recipes.mkdir()
    (recipes / "housing.toml").write_text(
        '[recipe]\nname = "housing"\nnumber = 1\nversion = 1\n[model]\nname = "defect-yolo11p-320"\n')
    config = folder / "demo.toml"
    config.write_text((ROOT / "inspector" / "stations" / "demo.toml").read_text()
                      + f'\n[recipes]\ndir = "{recipes}"\nselect = 1\n')
    url, sock = f"sqlite:///{folder / 'station.db'}", folder / "demo.sock"
    env = {k: v for k, v in os.environ.items() if k != "INSPECTOR_SOCKET"}
    proc = subprocess.Popen([sys.executable, "-m", "inspector.cli", "service", "--config", str(config), "--db", url,
                             "--socket", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=open(folder / "service.log", "ab"), env=env)  # noqa: SIM115
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("the service stopped: " + (folder / "service.log").read_text()[-2000:])
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(sock))
            break
        except OSError:
            time.sleep(0.3)
        finally:
            s.close()
    for name, role, password, acting in ((*ADMIN[:1], "admin", ADMIN[1], None),
                                         (*ENGINEER[:1], "engineer", ENGINEER[1], ADMIN[0])):
        cmd = [sys.executable, "-m", "inspector.cli", "users", "add", name, "--role", role, "--db", url]
        cmd += ["--as", acting] if acting else []
        subprocess.run(cmd, env={**env, "INSPECTOR_NEW_PASSWORD": password, "INSPECTOR_PASSWORD": ADMIN[1]},
                       check=True, capture_output=True, timeout=120)
    return proc, sock


def archived_ng(folder: Path, camera: str, out: Path, want: int, seconds: float) -> int:
    """Copy up to ``want`` NG images of ``camera`` that the service archived into ``out``; returns how many."""
    out.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = sorted(p for p in folder.rglob(f"{camera}*.jpg") if out not in p.parents)
        if len(found) >= want:
            break
        pump(1.0)
    for p in found[:want]:
        shutil.copy2(p, out / p.name)
    return min(want, len(found))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wall", type=Path, default=ROOT / "docs" / "screenshots" / "wall_heatmaps.png")
    ap.add_argument("--teach", type=Path, default=ROOT / "docs" / "screenshots" / "teach_dialog.png")
    ap.add_argument("--count", type=int, default=40, help="good parts collected per camera")
    ap.add_argument("--side", type=int, default=320, help="model input side (320: as the detector's)")
    ap.add_argument("--ng", type=int, default=12, help="NG images of camera 1 given to its teaching")
    ap.add_argument("--hot", type=int, default=3, help="wait (up to 90 s) for this many NG views to shoot the wall")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    folder = Path(tempfile.mkdtemp(prefix="screenshot_teach_"))
    app = make_application()
    proc, sock = start_service(folder)
    try:
        got = attach("demo", sock)
        if got is None:
            raise SystemExit("no service answers at " + str(sock))
        link, hello = got
        win, engine = attached_window(link, hello)  # as `inspector gui` attached to a service
        station, control, bridge = win.station, win.control, win.bridge
        win.resize(1920, 1050)
        win.show()
        control.login(*ENGINEER)
        dlg = win.open_teach()
        if dlg is None:
            raise SystemExit("the Teach dialog did not open")
        dlg.input_side = args.side
        dlg.count.setValue(args.count)
        cams = list(station.cameras)
        first, rest = cams[0], cams[1:]
        for group, bad in ((rest, None), ([first], folder / "ng" / first)):
            if bad is not None:
                n = archived_ng(folder, first, bad, args.ng, 240)
                log.info("%d archived NG images of %s given to its teaching", n, first)
                dlg.bad_dir.setText(str(bad))
            dlg.choose(group)
            dlg.start_collecting()
            if not pump(900, lambda: not dlg.busy):
                raise SystemExit("collecting did not end: " + dlg.status.text())
            log.info("collected %s", dlg.session.collected)
            dlg.start_teaching()
            if not pump(1800, lambda: not dlg.busy):
                raise SystemExit("teaching did not end: " + dlg.status.text())
            log.info("%s", dlg.status.text())
        dlg.choose(cams)
        dlg.shown_camera.setCurrentText(first)
        dlg.raise_()
        shoot(dlg, args.teach)
        label = dlg.save()
        log.info("saved: %s (%s)", label, dlg.status.text())
        dlg.close()
        win.wall.heat_button.click()
        pump(6)

        def hot() -> int:  # views whose frame shown now is above its threshold somewhere (grey 128: score 1.0)
            return sum(v.heat_maps is not None and v.heat_maps.layer.heat is not None
                       and int(v.heat_maps.layer.heat.max()) >= 128 for v in win.wall.views.values())

        pump(90, lambda: hot() >= args.hot)  # a moment with several NG parts in view, for the picture
        log.info("%d views with a heat map above the threshold", hot())
        shoot(win, args.wall)
        win.close()
        bridge.close()
        link.close()
        if engine is not None:
            engine.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        app.processEvents()
    log.info("folder %s", folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
