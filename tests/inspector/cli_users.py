"""A station database with users (root admin, engineer ``eve``, operator ``otto``) and a CLI runner that never
lets a traceback through: for tests of commands that need a login."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from inspector.access.control import StationControl
from inspector.access.users import Role
from inspector.cli import app
from inspector.storage.db import migrate, open_database


def database_with_users(tmp_path: Path) -> str:
    """The URL of a migrated SQLite database holding ``root`` (admin), ``eve`` (engineer), ``otto`` (operator)."""
    u = f"sqlite:///{tmp_path / 'station.db'}"
    eng = open_database(u)
    migrate(eng)
    control = StationControl.offline(eng)
    control.create_admin("root-password", name="root")
    control.login("root", "root-password")
    control.add_user("eve", "eve-password", Role.ENGINEER)
    control.add_user("otto", "otto-password", Role.OPERATOR)
    control.logout()
    eng.dispose()
    return u


def run_cli(args: list[str], **env: str) -> tuple[int, str]:
    """``inspector ARGS`` in process: its exit code and output (never a traceback)."""
    res = CliRunner().invoke(app, args, env=env)
    assert "Traceback" not in res.output
    return res.exit_code, res.output
