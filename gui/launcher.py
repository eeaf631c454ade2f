"""The ``inspector`` console script: the engine's CLI plus the ``gui`` command.

It lives in the outermost layer so that the engine never imports the GUI; Qt itself is
imported only when the ``gui`` command runs, so headless installs need no PySide6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from inspector import cli


@cli.app.command()
def gui(
    station: Optional[str] = typer.Option(None, help="Built-in station (default demo)."),
    config: Optional[Path] = typer.Option(None, help="Station config TOML."),
    db: Optional[str] = typer.Option(None, help="Database URL."),
    admin_password: Optional[str] = typer.Option(None, help="First start: set the admin password unattended."),
) -> None:
    """Open the desktop app (live wall, history, settings)."""
    try:
        from gui.app import main as gui_main
    except ImportError as exc:
        cli.fail(f"the GUI needs PySide6 (pip install -e '.[gui]'): {exc}")
    try:
        cfg = cli._load(station, config)
    except cli._user_errors() as exc:
        cli.fail(str(exc))
    code = gui_main(cfg, db_url=db, admin_password=admin_password)
    raise typer.Exit(code)


cli.open_gui = gui


def main() -> None:
    """Console-script entry point."""
    cli.app()
