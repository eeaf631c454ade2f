"""Screenshots of the desktop app for the docs: live wall, history, camera settings, audit.

Runs a real station (default ``line-demo``, the app's default: a triggered line of 8 simulated
cameras) with a throw-away SQLite database, drives the GUI like a user would, and saves
PNGs under ``docs/screenshots/``::

    xvfb-run -a -s "-screen 0 1600x1000x24" python installer/screenshots.py
    QT_QPA_PLATFORM=offscreen python installer/screenshots.py      # without an X server

If the shipped model finds no defect during the warm-up (an untrained placeholder model),
the history is seeded with *demo* NG inspections: simulator frames labelled with their
ground truth, written through the engine's own database writer. The script says so.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget
from sqlalchemy import func, select

from camera.renderer import render_part
from gui.app import MainWindow, make_application
from gui.bridge import EngineBridge
from inspector.config import load_station
from inspector.access.control import StationControl
from inspector.pipeline.results import InspectionResult, Provenance, StageTimes, Verdict, detections_from_array
from inspector.station import Station
from inspector.storage.models import InspectionRecord

log = logging.getLogger("screenshots")
MAX_BYTES = 400_000


def pump(seconds: float) -> None:
    """Run the Qt event loop for a while."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def save(widget: QWidget, path: Path, settle: float = 0.3) -> None:
    """Grab a widget into a PNG under ``MAX_BYTES`` (palette-reduced if needed)."""
    pump(settle)
    img: QImage = widget.grab().toImage()
    img.save(str(path), "PNG", 0)  # 0: smallest file
    if path.stat().st_size > MAX_BYTES:
        img.convertToFormat(QImage.Format.Format_Indexed8).save(str(path), "PNG", 0)
    log.info("saved %s (%dx%d, %d KB)", path, img.width(), img.height(), path.stat().st_size // 1024)


def audited(action: Any, *args: Any) -> None:
    """Run an audited control action, retried while SQLite says "database is locked".

    Under a busy line's database writer the audit insert can lose SQLite's lock race (seen on
    line-demo); the script retries so the shots still show the audit rows, and says so.
    """
    from sqlalchemy.exc import OperationalError

    for attempt in range(5):
        try:
            action(*args)
            return
        except OperationalError as exc:
            log.warning("%s: %s (retry %d)", getattr(action, "__name__", action), exc.orig, attempt + 1)
            pump(0.5)
    action(*args)


def wait_for_ng_part(win: MainWindow, seconds: float) -> bool:
    """On a triggered line: wait until every view shows one NG part with defect boxes (not incomplete)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pump(0.02)
        shown = {v.shown_part.part_id if v.shown_part else None for v in win.wall.views.values()}
        part = next(iter(shown)) if len(shown) == 1 else None
        current = win.wall.bridge.current_part()
        if part is None or current is None or current.part_id != part:
            continue
        boxed = sum(1 for f in current.frames if f.detections)
        if current.verdict == Verdict.NG and not current.missing and boxed >= 2:
            return True
    log.warning("no NG part with boxes on two cameras within %.0f s: the live wall shows the last part", seconds)
    return False


def ng_rows(station: Station) -> int:
    with station.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).where(InspectionRecord.verdict == "NG")) or 0)


def seed_demo_history(
    station: Station, hours: float = 8.0, parts: int = 1600, ng_share: float = 0.12, distinct: int = 24
) -> int:
    """Write demo inspections of the last ``hours`` (NG ones with images) through the engine's sinks."""
    import cv2
    import numpy as np

    rng = random.Random(7)
    names = station.card.classes
    cams = [cid for cid, c in station.cameras.items() if c.info.kind == "simulated"] or list(station.cameras)
    now = time.time()
    lane = station.lanes[cams[0]]
    prov = Provenance(station.card.name, station.card.sha256, station.backend_name, lane.rules.as_pairs(), "demo")
    frames = [render_part(3_000_000 + k, 320, 320, ok_share=0.0) for k in range(distinct)]
    ng = 0
    for i in range(parts):
        cid = cams[i % len(cams)]
        at = now - hours * 3600 + i * hours * 3600 / parts
        hour_bias = 0.1 if int((now - at) // 3600) == 3 else 0.0  # one bad hour for the chart
        is_ng = rng.random() < ng_share + hour_bias
        dets: tuple = ()
        if is_ng:
            frame = frames[ng % len(frames)]
            rows = [(b.x1, b.y1, b.x2, b.y2, rng.uniform(0.55, 0.97), b.class_id) for b in frame.truth.boxes]
            dets = detections_from_array(np.array(rows, np.float32).reshape(-1, 6), names)
        r = InspectionResult(
            camera_id=cid,
            sequence=100_000 + i,
            acquired_at=at,
            verdict=Verdict.NG if dets else Verdict.OK,
            rule=f"{dets[0].class_name}>=0.35" if dets else "no defect",
            detections=dets,
            times=StageTimes(2.0, 0.4, 8.0, 0.3, 0.02, rng.uniform(15, 40)),
            provenance=prov,
            frame_width=320,
            frame_height=320,
        )
        if dets and station.archive is not None:
            path = Path(station.archive.path_for(r))
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), frame.image)
            ng += 1
        station.db_writer.submit(r)
    return ng


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--station", default="line-demo")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of live inspection before the first shot")
    ap.add_argument("--settings-camera", default="line-cam1")
    ap.add_argument("--offline", metavar="CAMERA", default=None,
                    help="stop this camera before the live-wall shot (the OFFLINE banner; on a triggered line "
                         "every part then fails safe as incomplete)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="inspector-shots-"))

    app = make_application()
    station = Station(load_station(args.station), db_url=f"sqlite:///{tmp / 'inspector.db'}")
    control = StationControl(station)
    control.create_admin("admin-password")
    control.login("admin", "admin-password")
    control.add_user("maria", "engineer-pass", "engineer")
    control.add_user("tom", "operator-pass", "operator")
    control.logout()
    control.login("tom", "wrong-password")  # shows up in the audit trail
    control.login("maria", "engineer-pass")
    station.start()
    bridge = EngineBridge(station, control)
    win = MainWindow(station, control, bridge)
    win.resize(1280, 800)
    win.show()
    try:
        offline = args.offline if args.offline in station.cameras else None
        pump(max(1.0, args.warmup - 6.0))
        if offline is not None:
            station.cameras[offline].stop()  # one camera goes dark: the OFFLINE banner
        pump(6.0)
        settle = 0.3
        if bridge.line is not None and wait_for_ng_part(win, seconds=30.0):
            settle = 0.0  # the next part replaces it within a cycle
        save(win, args.out / "live_wall.png", settle)

        audited(control.set_camera_feature, "line-cam1", "ExposureTime", 7500.0)
        audited(control.set_threshold, "line-cam2", "scratch", 0.45)
        audited(control.logout)
        audited(control.login, "tom", "operator-pass")
        audited(control.pause, True)
        pump(0.5)
        audited(control.pause, False)
        audited(control.logout)
        audited(control.login, "maria", "engineer-pass")
        pump(4.0)  # the health line forgets the pause

        if ng_rows(station) == 0:
            log.warning("the model found no defect during the warm-up: seeding the history with demo NG parts")
            seed_demo_history(station)
        deadline = time.monotonic() + 20
        while ng_rows(station) == 0 and time.monotonic() < deadline:
            pump(0.2)
        hist = win.history
        win.tabs.setCurrentWidget(hist)
        hist.filter_bar.range_combo.setCurrentIndex(1)  # last 8 h
        hist.filter_bar.verdict_combo.setCurrentIndex(1)  # NG only
        pump(0.3)
        hist.select_row(0)
        hist.review("confirmed")
        hist.select_row(1)
        hist.review("false_call")
        hist.select_row(0)
        save(win, args.out / "history.png")
        hist.filter_bar.verdict_combo.setCurrentIndex(0)
        hist.side.setCurrentIndex(1)
        pump(0.5)
        save(win, args.out / "history_stats.png")
        hist.side.setCurrentIndex(0)

        dlg = win.open_settings(args.settings_camera if args.settings_camera in station.cameras else None)
        dlg.resize(900, 700)
        dlg.search.setText("")
        dlg.visibility_combo.setCurrentText("Expert")  # exposure and gain
        for name, value in (("Gain", 6.0), ("BouncingBallSize", 30)):  # a simulated camera, a viky device
            if name in dlg.editors:
                dlg.set_value(name, value)
        audited(dlg.apply)
        pump(0.3)
        save(dlg, args.out / "settings.png")
        dlg.close()

        win.tabs.setCurrentWidget(win.audit)
        pump(0.3)
        save(win, args.out / "audit.png")
    finally:
        win.close()
        station.stop()
    app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
