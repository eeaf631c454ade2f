"""The desktop app: builds the station, the control API and the main window."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QFontMetrics, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox, QSizePolicy, QTabWidget, QToolBar, QWidget

from camera.protocol import CameraState
from gui.audit_view import AuditView
from gui.bridge import CameraLive, EngineBridge
from gui.history import HistoryTab
from gui.live_wall import LiveWall
from gui.plc_view import add_plc_dock
from gui.recipe_selector import RecipeSelector
from gui.settings_dialog import CameraSettingsDialog
from gui.startup import BuildCancelled, StartupWindow, after_shown, make_application, run_build
from gui.teach_dialog import TeachDialog
from gui.users_dialog import FirstStartDialog, LoginDialog, UsersDialog
from inspector.access.control import StationControl
from inspector.access.users import PermissionDenied, UserError
from inspector.config import StationConfig
from inspector.ops.health import health_text
from inspector.ops.report import precision_status
from inspector.settings_store import CameraSettingsStore

log = logging.getLogger(__name__)

#: Status-bar colours of the health levels (OK stays plain).
_HEALTH_COLOURS = {"DEGRADED": "background: #f0b400; color: black;", "ALARM": "background: #c62828; color: white;"}
_RATES_TIP = ("rx: frames received from the cameras per second · inspected: frames inspected per second "
              "(when inspection is slower, the newest frame wins and the others are dropped)")


def status_summary(live: dict[str, CameraLive], states: dict[str, CameraState]) -> tuple[list[str], str]:
    """The status bar's summary of every camera (longest form first) and its per-camera tooltip."""
    n = len(live)
    down = [cid for cid, st in states.items() if st is not CameraState.STREAMING]
    rx = sum(v.fps for v in live.values())
    insp = sum(v.inspected_fps for v in live.values())
    drops = sum(v.dropped for v in live.values())
    ng = sum(v.ng for v in live.values())
    cams = f"{n} cameras" + (f" ({len(down)} not streaming)" if down else "")
    rates = f"rx {rx:.1f} fps · inspected {insp:.1f} fps · drops {drops:,}"
    variants = [f"{cams} · {rates} · NG frames {ng:,}", f"{cams} · {rates}", f"{len(down)} of {n} down · insp {insp:.1f} fps"]
    lines = [
        f"{cid}: rx {v.fps:.1f} fps · inspected {v.inspected_fps:.1f} fps · drops {v.dropped:,} · NG frames {v.ng:,}"
        + (f" · {states[cid].value.upper()}" if cid in states and states[cid] is not CameraState.STREAMING else "")
        for cid, v in live.items()
    ]
    return variants, "\n".join([*lines, _RATES_TIP])


class MainWindow(QMainWindow):
    """Tabs (Live wall, History, Audit) and a toolbar (login, recipe, pause, camera settings, users).

    Args:
        station: The station (started or not; `closeEvent` stops it).
        control: Its control API.
        bridge: Engine events adapted to Qt (started here).
        stale_after_s: When a silent camera's view turns STALE.
        stop_station_on_close: Stop the station when the window closes.
    """

    def __init__(self, station: Any, control: StationControl, bridge: EngineBridge, *, stale_after_s: float = 3.0,
                 stop_station_on_close: bool = True, settings_store: CameraSettingsStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings_store = settings_store
        self.station = station
        self.control = control
        self.bridge = bridge
        self.stop_station_on_close = stop_station_on_close
        self.setWindowTitle(f"Inspector — {getattr(station.config, 'name', 'station')}")
        self.resize(1280, 800)

        self.wall = LiveWall(bridge, control, stale_after_s=stale_after_s)
        card = getattr(station, "card", None)
        classes = list(card.classes) if card is not None else []
        # an attached window reads the history only where the station's database can be opened here
        self.history: HistoryTab | None = (
            HistoryTab(control, list(station.cameras), classes) if getattr(control, "engine", None) is not None else None)
        self.audit = AuditView(control)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.wall, "Live wall")
        if self.history is not None:
            self.tabs.addTab(self.history, "History")
        self.tabs.addTab(self.audit, "Audit")
        self.tabs.currentChanged.connect(self._on_tab)
        self.setCentralWidget(self.tabs)
        self.plc_dock, self.plc_view, self.plc_action = add_plc_dock(self, bridge.plc_status)  # View > PLC link

        tb = QToolBar("Station")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(tb)
        self.login_action = QAction("Log in…", self)
        self.login_action.triggered.connect(self.login_or_logout)
        self.user_label = QLabel()
        self.user_label.setContentsMargins(8, 0, 16, 0)
        self.pause_action = QAction("Pause", self)
        self.pause_action.triggered.connect(self.wall.toggle_pause)
        self.settings_action = QAction("Camera settings…", self)
        self.settings_action.triggered.connect(lambda: self.open_settings())
        self.users_action = QAction("Users…", self)
        self.users_action.triggered.connect(self.open_users)
        self.teach_action = QAction("Teach…", self)
        self.teach_action.setToolTip("Teach a product from good parts (anomaly models); engineer role")
        self.teach_action.triggered.connect(lambda: self.open_teach())
        self.recipes_action = QAction("Recipes…", self)  # versions, gate verdicts, switch, roll back
        self.recipes_action.triggered.connect(lambda: self.open_recipes())
        tb.addAction(self.login_action)
        tb.addWidget(self.user_label)
        # the product recipe: hidden on a station without recipes
        self.recipe_selector = RecipeSelector(station, control)
        self.recipe_separator = tb.addSeparator()
        self.recipe_action = tb.addWidget(self.recipe_selector)
        self.recipe_separator.setVisible(self.recipe_selector.available)
        self.recipe_action.setVisible(self.recipe_selector.available)
        tb.addSeparator()
        tb.addAction(self.pause_action)
        tb.addAction(self.settings_action)
        tb.addAction(self.teach_action)
        tb.addAction(self.recipes_action)
        self.recipes_action.setVisible(self.recipe_selector.available)
        tb.addAction(self.users_action)
        self.quit_action = QAction("Quit", self)
        # the platform's Quit key (Ctrl+Q on Linux); a platform without one (offscreen, Windows) gets Ctrl+Q
        self.quit_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Quit) or [QKeySequence("Ctrl+Q")])
        self.quit_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.quit_action.triggered.connect(self.close)
        self.addAction(self.quit_action)  # a shortcut of the window (Ctrl+Q), no menu needed

        for w in (self.wall, self.history, self.recipe_selector):
            if w is not None:
                w.message.connect(self.show_message)
        bridge.user_changed.connect(lambda _u: self.recipe_selector.update_permissions())
        bridge.user_changed.connect(lambda _u: self._update_user())
        if self.history is not None:
            bridge.user_changed.connect(lambda _u: self.history.update_permissions() if self.history else None)
        bridge.paused_changed.connect(self._update_pause)
        bridge.audit_recorded.connect(lambda _e: self._audit_changed())
        # the station's health, always visible (never pushed aside by a message)
        self.health_label = QLabel("health: …")
        self.health_label.setContentsMargins(8, 0, 8, 0)
        self._health_level = ""
        self.statusBar().addPermanentWidget(self.health_label)
        # the precision the model runs at, and why (measured on this CPU, or the rule until then)
        text, why = precision_status(station)
        self.precision_label = QLabel(text)
        self.precision_label.setToolTip(why)
        self.precision_label.setVisible(bool(text))
        self.statusBar().addPermanentWidget(self.precision_label)
        # the cameras in one summary (a message covers it for a while, then it is back; never blank)
        self.summary_label = QLabel()
        self.summary_label.setContentsMargins(4, 0, 4, 0)
        self.summary_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.statusBar().addWidget(self.summary_label, 1)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(1000)
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start()
        self._update_user()
        self._update_pause(bool(getattr(station, "paused", False)))
        self.settings_dialog: CameraSettingsDialog | None = None
        self.teach_dialog: TeachDialog | None = None
        bridge.start()

    # ------------------------------------------------------------------ actions
    def login_or_logout(self) -> None:
        if self.control.user is not None:
            self.control.logout()
            self.show_message("logged out: watching only")
            return
        LoginDialog(self.control, self).exec()

    def open_settings(self, camera_id: str | None = None) -> CameraSettingsDialog:
        """Open (non-modal) the camera settings dialog."""
        if camera_id is None and self.wall.enlarged:
            camera_id = self.wall.enlarged
        dlg = CameraSettingsDialog(self.control, camera_id, self, store=self.settings_store)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self.settings_dialog = dlg
        return dlg

    def open_teach(self) -> TeachDialog | None:
        """Open (non-modal) the Teach dialog (engineer role)."""
        if not self.control.can("recipe.save"):
            self.show_message(str(PermissionDenied("teach: needs the engineer role")))
            return None
        dlg = TeachDialog(self.station, self.control, self.bridge, parent=self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self.teach_dialog = dlg
        return dlg

    def open_recipes(self) -> Any:
        """Open (non-modal) the product recipe dialog (`gui.recipe_dialog.RecipeDialog`)."""
        from gui.recipe_dialog import RecipeDialog

        dlg = RecipeDialog(self.station, self.control, parent=self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.message.connect(self.show_message)
        dlg.show()
        self.recipe_dialog = dlg
        return dlg

    def open_users(self) -> None:
        if not self.control.can("users.manage"):
            self.show_message(str(PermissionDenied("users.manage: needs the admin role")))
            return
        UsersDialog(self.control, self).exec()

    def show_message(self, text: str) -> None:
        """A message in the status bar (refusals, export results).

        One too long for the room beside the health label is shortened in the middle (a refusal's reason is at its
        start, what still runs at its end; the bar would cut the end off); the whole line is the bar's tooltip.
        """
        bar = self.statusBar()
        # drawn from a few px in up to the leftmost permanent label (the health label), which covers the rest
        lefts = [w.x() for w in (self.health_label, self.precision_label) if w.isVisible() and w.x() > 0]
        room = max(200, (min(lefts) if lefts else bar.width()) - 16)
        shown = QFontMetrics(bar.font()).elidedText(text, Qt.TextElideMode.ElideMiddle, room)
        bar.setToolTip(text if shown != text else "")
        bar.showMessage(shown, 10_000)

    # ------------------------------------------------------------------ updates
    def _update_user(self) -> None:
        user = self.control.user
        self.user_label.setText(f"{user.name} · {user.role.label}" if user else "not logged in · watching")
        self.login_action.setText("Log out" if user else "Log in…")
        self.users_action.setEnabled(self.control.can("users.manage"))
        self.teach_action.setEnabled(self.control.can("recipe.save"))
        self.pause_action.setEnabled(self.control.can("station.pause"))

    def _update_pause(self, paused: bool) -> None:
        self.pause_action.setText("Resume" if paused else "Pause")

    def _audit_changed(self) -> None:
        if self.tabs.currentWidget() is self.audit:
            self.audit.refresh()

    def _on_tab(self, _i: int) -> None:
        w = self.tabs.currentWidget()
        if self.history is not None and w is self.history and not self.history.model.rows:
            self.history.refresh()
        elif w is self.audit:
            self.audit.refresh()

    def _update_status(self) -> None:
        self._update_health()
        self._update_summary()

    def _update_summary(self) -> None:
        cams = self.station.cameras
        live = {cid: self.bridge.live.get(cid) or CameraLive(cid) for cid in cams}
        variants, tip = status_summary(live, {cid: cam.state for cid, cam in cams.items()})
        fm = self.summary_label.fontMetrics()
        width = self.summary_label.width() - 8
        text = next((t for t in variants if fm.horizontalAdvance(t) <= width), variants[-1])
        self.summary_label.setText(text)
        self.summary_label.setToolTip(tip)

    def _update_health(self) -> None:
        assess = getattr(self.station, "health", None)
        if assess is None:
            return
        h = assess()
        text = health_text(h)
        self.health_label.setText(f"health: {text if len(text) <= 110 else text[:109] + '…'}")
        self.health_label.setToolTip("\n".join(h["issues"]) or "no issues")
        if h["level"] != self._health_level:  # style sheets are costly: only on change
            self._health_level = h["level"]
            colour = _HEALTH_COLOURS.get(h["level"], "")
            self.health_label.setStyleSheet(f"QLabel {{ {colour} font-weight: bold; padding: 0 6px; }}")

    def closeEvent(self, event: QCloseEvent) -> None:
        self._status_timer.stop()
        self.bridge.close()
        if self.stop_station_on_close:
            self.station.stop()
        event.accept()


def main(cfg: StationConfig, db_url: str | None = None, admin_password: str | None = None,
         startup: StartupWindow | None = None, config_path: Path | None = None) -> int:
    """Run the desktop app for a station config; returns the process exit code.

    The station is built off the GUI thread while a start-up window shows its stages;
    closing that window waits for the build to end, stops the station and returns 1.

    Args:
        cfg: The station.
        db_url: Database URL (default: SQLite in the user data folder). Users and the
            audit trail live there too, so ``"none"`` is refused.
        admin_password: First start: create the ``admin`` user with this password
            without asking (unattended installs). Ignored when users exist.
        startup: The start-up window the launcher already shows (default: one is opened here).
        config_path: The file ``cfg`` was read from: camera settings saved in the settings dialog go
            there (None: a built-in station, which cannot keep them except in a product recipe).
    """
    from inspector.config import ConfigError
    from inspector.station import Station, StationError
    from inspector.storage.db import StorageError

    app = make_application()
    if db_url == "none":
        return _fail("The desktop app needs a database for users and the audit trail; leave --db out or give a URL.")
    if startup is None:
        startup = StartupWindow(cfg.name)
        startup.show_now()
    try:
        station = run_build(startup, lambda say: Station(cfg, db_url=db_url, progress=say), Station.stop)
    except BuildCancelled:
        return 1
    except (StationError, StorageError, ConfigError, OSError, ValueError) as exc:
        startup.close()  # the message (a dialog on a desktop) stands alone
        return _fail(f"Cannot build station {cfg.name}: {exc}")
    try:
        control = StationControl(station)
        if control.first_start_needed() and admin_password is not None:
            control.create_admin(admin_password)
        # inspection starts before anyone is asked anything: the first-admin dialog never holds the line
        startup.show_stage("starting cameras")
        try:
            station.start()
        except StationError as exc:
            station.stop()
            return _fail(str(exc))
        if control.first_start_needed():
            startup.close()
            answer = FirstStartDialog(control).exec()
            if answer not in (FirstStartDialog.DialogCode.Accepted, FirstStartDialog.WATCH_ONLY):
                station.stop()
                return 1
        bridge = EngineBridge(station, control)
        win = MainWindow(station, control, bridge, settings_store=CameraSettingsStore(control, config_path))
        win.show()
        startup.close()
        after_shown(win)
        return int(app.exec())
    except UserError as exc:
        station.stop()
        return _fail(f"admin password: {exc}")
    finally:
        startup.close()
        station.stop()


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    if log.hasHandlers():  # without a handler, logging's last resort would print the line a second time
        log.error("%s", message)
    if QApplication.instance() is not None and QApplication.platformName() not in ("offscreen", "minimal"):
        QMessageBox.critical(None, "Inspector", message)
    return 2


def run_attached(link: Any, hello: dict[str, Any], startup: StartupWindow | None = None) -> int:
    """Run the desktop app as a window onto the station service ``link`` is connected to.

    The station is the service's: closing the window closes the link and inspection goes
    on; pausing it from here is an operator's action and is asked for first. The window
    starts logged out (watch only), as every new window does; where the station has no
    users yet it offers the first-admin dialog (inspection runs meanwhile).

    Args:
        link: A `gui.remote.RemoteLink` to the service (closed on return).
        hello: The service's answer to ``hello``.
        startup: The start-up window the launcher shows (closed here).
    """
    app = make_application()
    try:
        win, engine = attached_window(link, hello)
    except BaseException:
        link.close()
        raise
    control, bridge = win.control, win.bridge
    try:
        win.show()
        if startup is not None:
            startup.close()
        after_shown(win)
        if control.first_start_needed():
            QTimer.singleShot(0, lambda: FirstStartDialog(control, win).exec())
        return int(app.exec())
    finally:
        bridge.close()
        link.close()
        if engine is not None:
            engine.dispose()


def attached_window(link: Any, hello: dict[str, Any]) -> tuple[MainWindow, Any]:
    """The main window onto the station service ``link`` is connected to, as `run_attached` shows it (the
    screenshot script and the attached-GUI tests build it here too); a `QApplication` must exist.

    Returns:
        The window (not shown; its `gui.remote_bridge.RemoteBridge` started) and the service's database
        opened here for the history (None: not readable here); the caller disposes it after the window.
    """
    from gui.remote import RemoteControl, RemoteStation
    from gui.remote_bridge import RemoteBridge
    from inspector.storage.db import StorageError, open_database

    station = RemoteStation(hello)
    engine = None
    if station.db_url:
        try:
            engine = open_database(station.db_url)
        except StorageError as exc:  # another user's database: the wall works, the history tab is left out
            log.warning("history not shown: %s", exc)
    control = RemoteControl(link, station, engine)
    bridge = RemoteBridge(station, control, link, image_fps=float(hello.get("image_fps", 5.0)))
    win = MainWindow(station, control, bridge, stop_station_on_close=False)
    win.setWindowTitle(f"Inspector — {station.config.name} (station service, pid {station.pid})")
    win.settings_action.setEnabled(False)
    win.settings_action.setToolTip("Camera settings are not served over the station service's link yet")
    control.confirm_pause = lambda: confirm_pause(win, station.config.name)
    bridge.link_lost.connect(lambda reason: win.show_message(f"link to the station service lost: {reason}"))
    return win, engine


def confirm_pause(parent: QWidget, station_name: str) -> bool:
    """Ask before inspection stops: parts that pass meanwhile are not inspected."""
    answer = QMessageBox.question(
        parent, "Pause inspection",
        f"Pause inspection on station {station_name}? Parts passing while it is paused are not inspected.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
