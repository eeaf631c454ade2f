"""How much does an open GUI cost the engine? Side by side in one run.

The same station is run free-running (cameras deliver as fast as frames are taken, so
throughput is bound by the CPU) twice, alternating: headless, and with the main window
showing the live wall (run under Xvfb for a real window: ``xvfb-run -a python
benchmarks/gui_overhead.py``). The ratio of inspected frames per second is the cost.
A second pair runs at the nominal 5 fps per camera, where the question is whether the
GUI makes the engine drop frames.

    python benchmarks/gui_overhead.py [--cameras 8] [--seconds 20] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from inspector.bench.pipeline import station_config
from inspector.pipeline.model_repo import DEFAULT_MODEL
from inspector.station import Station


def measure(n: int, fps: float, seconds: float, gui: bool, db: str) -> dict[str, Any]:
    cfg = station_config(n, fps, DEFAULT_MODEL, "openvino", 0, 320, 320, 8)
    st = Station(cfg, db_url=db, archive=False)  # renders the simulated banks before the clock starts
    win = None
    app = None
    if gui:
        from gui.app import MainWindow, make_application
        from gui.bridge import EngineBridge
        from inspector.access.control import StationControl

        app = make_application()
        control = StationControl(st)
        bridge = EngineBridge(st, control)
        win = MainWindow(st, control, bridge)
        win.resize(1600, 1000)
        win.show()
    st.start()
    try:
        def wait(s: float) -> None:
            end = time.monotonic() + s
            while time.monotonic() < end:
                if app is not None:
                    app.processEvents()
                    time.sleep(0.005)
                else:
                    time.sleep(0.05)

        wait(3.0)
        c0 = {k: c.pool.snapshot() for k, c in st.cameras.items()}
        t0 = time.perf_counter()
        wait(seconds)
        dt = time.perf_counter() - t0
        c1 = {k: c.pool.snapshot() for k, c in st.cameras.items()}
    finally:
        if win is not None:
            win.close()
        st.stop()
    inspected = sum(c1[k].inspected - c0[k].inspected for k in c1)
    dropped = sum(c1[k].dropped - c0[k].dropped for k in c1)
    return {"fps": inspected / dt, "dropped": dropped, "inspected": inspected}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res: dict[str, Any] = {"cameras": a.cameras, "seconds": a.seconds, "saturation": [], "nominal": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for gui in (False, True):  # alternate so drift on a shared machine hits both alike
                m = measure(a.cameras, 0.0, a.seconds, gui, f"sqlite:///{tmp}/s{r}{int(gui)}.db")
                res["saturation"].append({"gui": gui, **m})
                print(f"saturation, {'GUI     ' if gui else 'headless'}: {m['fps']:.1f} fps")
        for gui in (False, True):
            m = measure(a.cameras, 5.0, a.seconds, gui, f"sqlite:///{tmp}/n{int(gui)}.db")
            res["nominal"].append({"gui": gui, **m})
            print(f"nominal 5 fps, {'GUI     ' if gui else 'headless'}: {m['fps']:.1f} fps, {m['dropped']} dropped")
    head = [m["fps"] for m in res["saturation"] if not m["gui"]]
    with_gui = [m["fps"] for m in res["saturation"] if m["gui"]]
    res["throughput_ratio_gui_vs_headless"] = (sum(with_gui) / len(with_gui)) / (sum(head) / len(head))
    print(f"throughput with the GUI open: {res['throughput_ratio_gui_vs_headless']:.3f} of headless "
          f"({(1 - res['throughput_ratio_gui_vs_headless']) * 100:.1f}% drop)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    import os
    import sys

    main()
    sys.stdout.flush()
    # PySide6 6.12 can abort in garbage collection at interpreter exit after a window was
    # shown and closed; the numbers are printed and written by now.
    os._exit(0)
