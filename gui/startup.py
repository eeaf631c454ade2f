"""The start-up window, and the station build it watches off the GUI thread.

Building a station (model compile and warm-up, database, simulated frame banks) takes
seconds; the launcher shows `StartupWindow` before it imports the rest of the app, and
`run_build` builds the station on a thread of its own while the window shows each stage.

Only QtCore/QtWidgets are imported here (no engine module), so the window can open within
a fraction of a second of launch. With ``INSPECTOR_STARTUP_TRACE=<file>`` the app appends
``<event> <time.time()>`` lines to that file (``benchmarks/gui_first_window.py`` reads them);
``INSPECTOR_QUIT_WHEN_SHOWN=1`` closes the main window as soon as it is shown.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QApplication, QLabel, QProgressBar, QVBoxLayout, QWidget

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[str], None]

#: Where the app appends its start-up timestamps (unset: nowhere).
ENV_TRACE = "INSPECTOR_STARTUP_TRACE"
#: Set to 1: close the main window once it is shown (start-up measurements).
ENV_QUIT_WHEN_SHOWN = "INSPECTOR_QUIT_WHEN_SHOWN"


class BuildCancelled(Exception):
    """The start-up window was closed before the station was built."""


def make_application() -> QApplication:
    """The `QApplication` (created if needed) with Qt's own platform plugins.

    ``import cv2`` from the non-headless opencv-python wheel points
    ``QT_QPA_PLATFORM_PLUGIN_PATH`` at the plugins of the Qt bundled with OpenCV, which
    cannot load into PySide6's Qt ("could not load the Qt platform plugin xcb"). Those
    variables are dropped before the application starts.
    """
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        value = os.environ.get(var, "")
        if f"{os.sep}cv2{os.sep}" in value:
            log.debug("ignoring %s=%s (set by OpenCV)", var, value)
            del os.environ[var]
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Inspector")
    return app


def trace(event: str) -> None:
    """Append ``event`` and the wall-clock time to the start-up trace file, when one is asked for."""
    path = os.environ.get(ENV_TRACE)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {time.time():.6f}\n")
    except OSError as exc:  # a measurement aid: never a reason to stop the app
        log.warning("start-up trace %s: %s", path, exc)


class StartupWindow(QWidget):
    """The station's name, the build's current stage and a busy bar.

    Closing it while the station is built emits `close_requested` (the build is then
    cancelled: `run_build`).

    Args:
        station_name: Shown in the title and the heading.
    """

    close_requested = Signal()

    def __init__(self, station_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Inspector — {station_name}")
        self.heading = QLabel(f"Starting station <b>{station_name}</b>")
        self.stage = QLabel("starting…")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy: the stages are not of known length
        self.bar.setTextVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        self.resize(420, 110)

    def show_stage(self, text: str) -> None:
        """Show the build's current stage ("warming up")."""
        self.stage.setText(text)

    def show_now(self) -> None:
        """Show the window and paint it before the caller goes on with slow work."""
        self.show()
        QApplication.processEvents()
        trace("startup_window_shown")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.close_requested.emit()
        event.accept()


class StationBuild(QObject, Generic[T]):
    """Runs ``build(progress)`` on a thread of its own; its stages arrive as the `stage` signal.

    The thread is not a daemon: the process never exits while it is inside native code
    (OpenVINO aborts the process then: "terminate called without an active exception").

    Args:
        build: Builds the thing, telling ``progress`` its stages (called on the build thread).
    """

    stage = Signal(str)
    finished = Signal()

    def __init__(self, build: Callable[[Progress], T]) -> None:
        super().__init__()
        self._build = build
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False
        self._thread = threading.Thread(target=self._run, name="station-build")

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        try:
            self.result = self._build(self.stage.emit)
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread, which re-raises it
            self.error = exc
        finally:
            self.done = True
            self.finished.emit()


def run_build(window: StartupWindow, build: Callable[[Progress], T], discard: Callable[[T], None]) -> T:
    """Build on a thread while ``window`` shows its stages; returns what was built.

    Args:
        window: Shows the stages; closing it cancels.
        build: Builds the thing (see `StationBuild`).
        discard: Called with what was built when the window was closed meanwhile (stops a station).

    Raises:
        BuildCancelled: The window was closed first; returns only once the build thread has ended.
        BaseException: What the build raised, re-raised on this thread.
    """
    if not window.isVisible():  # closed already (while the app loaded): build nothing
        raise BuildCancelled()
    job: StationBuild[T] = StationBuild(build)
    loop = QEventLoop()
    cancelled = False

    def cancel() -> None:
        nonlocal cancelled
        cancelled = True
        loop.quit()

    job.stage.connect(window.show_stage, Qt.ConnectionType.QueuedConnection)
    job.finished.connect(loop.quit, Qt.ConnectionType.QueuedConnection)
    window.close_requested.connect(cancel)
    try:
        job.start()
        if not job.done:
            loop.exec()  # also left when Qt quits (the last window closed)
    finally:
        window.close_requested.disconnect(cancel)
    if cancelled or not job.done:
        log.info("start-up window closed: waiting for the station build to end")
        job.join()
        if job.error is not None:
            log.debug("the cancelled build failed: %s", job.error)
        elif job.result is not None:
            discard(job.result)
        raise BuildCancelled()
    job.join()  # it has ended: reap the thread
    if job.error is not None:
        raise job.error
    return cast(T, job.result)


def after_shown(window: QWidget) -> None:
    """Once the event loop has run (the window is on screen): trace it, and close it when asked to."""

    def shown() -> None:
        trace("main_window_shown")
        if os.environ.get(ENV_QUIT_WHEN_SHOWN) == "1":
            window.close()

    QTimer.singleShot(0, shown)
