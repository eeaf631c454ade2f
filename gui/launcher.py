"""The ``inspector`` console script: the engine's CLI plus the ``gui`` command.

It lives in the outermost layer so that the engine never imports the GUI; Qt itself is
imported only when the ``gui`` command runs, so headless installs need no PySide6.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from inspector.cli import make_app, run_cli
from inspector.cli.common import fail, load_station_config, user_errors
from inspector.cli.login import ENV_NEW_PASSWORD, ENV_PASSWORD, read_password

gui_app = typer.Typer()


@gui_app.command()
def gui(
    station: str | None = typer.Option(None, help="Built-in station (default line-demo)."),
    config: Path | None = typer.Option(None, help="Station config TOML."),
    db: str | None = typer.Option(None, help="Database URL."),
    admin_password: bool = typer.Option(
        False, "--admin-password",
        help=f"First start: ask on the terminal for the admin password instead of the dialog "
             f"(unattended: set {ENV_NEW_PASSWORD}). Never give the password itself on the command line.",
    ),
    socket_path: Path | None = typer.Option(
        None, "--socket", help="Attach to the station service on this socket (default: where `inspector service` "
        "puts it); where none answers, the app runs a station of its own."),
) -> None:
    """Open the desktop app (live wall, history, settings)."""
    from gui.qt_probe import check as qt_problem

    # Before QtGui loads: without a display or the plugin's libraries Qt aborts the process.
    problem = qt_problem()
    if problem:
        fail(problem)
    try:
        # QtWidgets only: the start-up window opens before the app, the engine and OpenVINO load
        from gui.startup import StartupWindow, make_application
    except ImportError as exc:
        fail(f"the GUI needs PySide6 (pip install -e '.[gui]'): {exc}")
    try:
        cfg = load_station_config(station, config)
    except user_errors() as exc:
        fail(str(exc))
    # Taken out of the environment so that nothing the app starts inherits it.
    password = os.environ.pop(ENV_NEW_PASSWORD, None) or os.environ.pop(ENV_PASSWORD, None) or None
    if password is None and admin_password:
        from inspector.access.users import UserError

        try:
            password = read_password(ENV_NEW_PASSWORD, "Admin password: ", confirm=True)
        except UserError as exc:
            fail(str(exc))
    make_application()
    startup = StartupWindow(cfg.name)
    startup.show_stage("looking for the station service")
    startup.show_now()
    from gui.remote import attach

    # ``inspector run`` calls this function directly: its --socket is then typer's default object
    socket_path = socket_path if isinstance(socket_path, Path) else None
    attached = attach(cfg.name, socket_path)  # a station already inspects here: open a window onto it
    if attached is None and socket_path is not None:
        startup.close()
        fail(f"--socket: no station service answers on {socket_path}")
    startup.show_stage("loading the app")
    try:
        if attached is not None:
            from gui.app import run_attached

            raise typer.Exit(run_attached(*attached, startup=startup))
        try:
            from gui.app import main as gui_main
        except ImportError as exc:
            fail(f"the GUI needs PySide6 (pip install -e '.[gui]'): {exc}")
        # a station read from a file keeps the settings saved in the settings dialog there
        where = {"config_path": config} if config is not None else {}
        code = gui_main(cfg, db_url=db, admin_password=password, startup=startup, **where)
    finally:
        startup.close()
    raise typer.Exit(code)


#: The console script's app: the engine's commands, ``inspector gui``, and ``inspector run`` opening the app.
app = make_app(open_gui=gui, extra=(gui_app,))


def main() -> None:
    """Console-script entry point."""
    run_cli(cli=app)


if __name__ == "__main__":  # pragma: no cover
    main()
