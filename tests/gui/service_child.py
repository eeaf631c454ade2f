"""An ``inspector service`` child process for the attached-GUI tests, and where it keeps things; the product
recipe station the recipe tests run it on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlalchemy import text

from inspector.storage.db import open_database
from tests.inspector.cli_users import database_with_users


class ServiceChild:
    """``inspector service --config station.toml --db sqlite:///station.db --socket svc.sock`` in ``folder``.

    Args:
        folder: Holds the config, the database, the socket and ``service.log`` (the child's stderr).
        station_toml: The station's config text.
        args: More arguments of ``inspector service``.
        env: More environment of the child (``INSPECTOR_SOCKET`` is always removed).
    """

    def __init__(self, folder: Path, station_toml: str, *, args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.config = folder / "station.toml"
        self.config.write_text(station_toml)
        self.name = str(tomllib.loads(station_toml).get("name", "station"))
        self.url = f"sqlite:///{folder / 'station.db'}"
        self.socket = folder / "svc.sock"
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.env.pop("INSPECTOR_SOCKET", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inspector.cli", "service", "--config", str(self.config), "--db", self.url,
             "--socket", str(self.socket), *self.args],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "service.log", "ab"), env=self.env)  # noqa: SIM115

    def wait_answering(self, timeout: float = 90.0) -> None:
        """Until the control socket accepts a connection; the child's log in the failure otherwise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None and self.proc.poll() is None, (self.folder / "service.log").read_text()
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(self.socket))
                return
            except OSError:
                time.sleep(0.1)
            finally:
                s.close()
        raise AssertionError("the service never answered: " + (self.folder / "service.log").read_text()[-2000:])

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    @contextmanager
    def running(self, timeout: float = 90.0) -> Iterator[ServiceChild]:
        """Started and answering (within ``timeout`` s) inside the block; stopped as it ends (SIGTERM, killed if
        it has not stopped within 60 s)."""
        self.start()
        try:
            self.wait_answering(timeout=timeout)
            yield self
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.kill_if_running()

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def rows(self) -> int:
        """Inspections stored in the service's database."""
        eng = open_database(self.url)
        try:
            with eng.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM inspections")).scalar_one())
        finally:
            eng.dispose()

    def add_user(self, name: str, role: str, password: str, *, admin_password: str,
                 acting: str | None = None) -> None:
        """``inspector users add`` against the service's database, non-interactive (``acting``: the admin who
        adds; none for the first admin)."""
        env = {**self.env, "INSPECTOR_NEW_PASSWORD": password, "INSPECTOR_PASSWORD": admin_password}
        cmd = [sys.executable, "-m", "inspector.cli", "users", "add", name, "--role", role, "--db", self.url]
        if acting:
            cmd += ["--as", acting]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr


class AttachedWindow:
    """A main window attached to a `ServiceChild` over the real link, built as ``inspector gui`` builds it where a
    service answers (`gui.app.attached_window`), shown; closed (window, bridge, link, database) as a ``with`` ends.

    Attributes:
        link: The control link.
        win: The main window; ``station``, ``control`` and ``bridge`` are its own.
        engine: The service's database opened here for the history (None: not readable here).
    """

    def __init__(self, svc: ServiceChild, qtbot: Any) -> None:
        from gui.app import attached_window  # Qt: only where a test attaches a window
        from gui.remote import attach

        got = attach(svc.name, svc.socket)
        assert got is not None, f"no service answers on {svc.socket}"
        self.link, hello = got
        self.win, self.engine = attached_window(self.link, hello)
        self.station, self.control, self.bridge = self.win.station, self.win.control, self.win.bridge
        qtbot.addWidget(self.win)
        self.win.show()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.win.close()
        self.bridge.close()
        self.link.close()
        if self.engine is not None:
            self.engine.dispose()


#: A product recipe on a detector (version 1), as `recipe_service_station` writes it.
RECIPE = '[recipe]\nname = "{name}"\nnumber = {number}\nversion = 1\n[model]\nname = "{model}"\n'
SHIPPED = "defect-yolo11p-320"
#: Two simulated cameras at 5 fps, cam-b Mono8: the line of the recipe service stations unless told otherwise.
TWO_CAMERAS = """
[[cameras]]
id = "cam-a"
kind = "simulated"
fps = 5
bank_size = 4
[[cameras]]
id = "cam-b"
kind = "simulated"
fps = 5
mono = true
bank_size = 4
"""


def recipe_service_station(folder: Path, name: str, *, recipes: Sequence[str] = ("housing", "cover"),
                           cameras: str = TWO_CAMERAS) -> str:
    """A station with product recipes for a `ServiceChild` in ``folder``: its recipe files and database written.

    Args:
        folder: ``folder/recipes`` gets one file a recipe; ``folder/station.db`` (the child's database) holds root
            (admin), eve (engineer) and otto (operator), see `tests.inspector.cli_users.database_with_users`.
        name: The station's name.
        recipes: The recipes' names, numbered 1, 2, … in this order, each on the shipped detector; the station
            starts on recipe 1.
        cameras: The ``[[cameras]]`` tables.

    Returns:
        The station's config text (for `ServiceChild`).
    """
    (folder / "recipes").mkdir()
    for number, recipe in enumerate(recipes, start=1):
        (folder / "recipes" / f"{recipe}.toml").write_text(RECIPE.format(name=recipe, number=number, model=SHIPPED))
    database_with_users(folder)
    return f"""
name = "{name}"
[scheduler]
max_wait_ms = 2
[recipes]
dir = "{folder / 'recipes'}"
select = 1
{cameras}"""
