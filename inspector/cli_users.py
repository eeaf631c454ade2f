"""``inspector users add|list|passwd|remove|unlock``: user management for headless stations.

Passwords never travel on the command line (it is readable by every local user in
/proc): they come from the terminal, or for unattended installs from
``INSPECTOR_PASSWORD`` (the acting admin's) and ``INSPECTOR_NEW_PASSWORD`` (the one being
set). The first user of an empty database must be an admin and needs no login; after
that an admin logs in with ``--as``, throttled and audited like a GUI login.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:  # the engine is imported when a command runs, not with the CLI
    from inspector.access.control import StationControl

ENV_PASSWORD = "INSPECTOR_PASSWORD"
ENV_NEW_PASSWORD = "INSPECTOR_NEW_PASSWORD"

users_app = typer.Typer(no_args_is_help=True, help="Station users (operator, engineer, admin); every change audited.")

_DB = typer.Option(None, help="Database URL (default: the station's SQLite database).")
_AS = typer.Option(None, "--as", help="The admin who does this (asked for their password).")


def read_password(env: str, prompt: str, *, confirm: bool = False) -> str:
    """A password from the environment variable ``env``, else from the terminal (not echoed).

    Raises:
        UserError: Neither is available, or the two typed passwords differ.
    """
    from inspector.access.users import UserError

    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UserError(f"{prompt.rstrip(': ').lower()}: no terminal to ask on; set {env}")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat: ") != password:
        raise UserError("the two passwords differ")
    return password


def _fail(msg: str) -> NoReturn:
    from inspector.cli import fail

    fail(msg)


@contextlib.contextmanager
def _session(db: str | None) -> Iterator[StationControl]:
    from inspector.access.control import StationControl
    from inspector.storage.db import StorageError, default_db_url, migrate, open_database
    from inspector.access.users import PermissionDenied, UserError

    try:
        engine = open_database(db or default_db_url())
    except StorageError as exc:
        _fail(str(exc))
    try:
        migrate(engine)
        control = StationControl.offline(engine)
        try:
            yield control
        finally:
            control.logout()
    except (StorageError, UserError, PermissionDenied) as exc:
        _fail(str(exc))
    finally:
        engine.dispose()


@contextlib.contextmanager
def authenticated(db: str | None, name: str | None, action: str) -> Iterator[StationControl]:
    """A session of the database ``db`` with ``name`` logged in and allowed ``action``.

    Any refusal (no such user, wrong password, locked, role too low) is one line and exit 2.
    """
    with _session(db) as control:
        if control.first_start_needed():
            _fail(f"--as {name}: the database has no users yet: inspector users add NAME --role admin")
        _login(control, name)
        control.require(action)
        yield control


def _login(control: StationControl, name: str | None) -> None:
    if name is None:
        _fail("--as ADMIN: users exist already, so an admin must log in to do this")
    password = read_password(ENV_PASSWORD, f"Password of {name}: ")
    if control.login(name, password) is None:  # LoginRefused (locked, too early) is a one-line PermissionDenied
        _fail(f"--as {name}: wrong user name or password")


def _new_password(name: str) -> str:
    return read_password(ENV_NEW_PASSWORD, f"New password of {name}: ", confirm=True)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., help="operator | engineer | admin"),
    acting: str | None = _AS,
    db: str | None = _DB,
) -> None:
    """Add a user. The first user of an empty database must be an admin and needs no --as."""
    from inspector.access.users import Role

    with _session(db) as control:
        r = Role.parse(role)
        if control.first_start_needed():
            if r is not Role.ADMIN:
                _fail("the first user must be an admin: --role admin")
            user = control.create_admin(_new_password(name), name=name)
            typer.echo(f"added {user}: the station's first user")
            return
        _login(control, acting)
        control.require("users.manage")  # refuse before asking for the new password
        user = control.add_user(name, _new_password(name), r)
        typer.echo(f"added {user}")


@users_app.command("list")
def users_list(
    acting: str | None = _AS,
    db: str | None = _DB,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List users and their roles (an admin logs in)."""
    with _session(db) as control:
        if control.first_start_needed():
            users = []
        else:
            _login(control, acting)
            users = control.list_users()
    if as_json:
        typer.echo(json.dumps([{"name": u.name, "role": u.role.label} for u in users], indent=2))
        return
    if not users:
        typer.echo("no users yet: inspector users add NAME --role admin")
    for u in users:
        typer.echo(f"{u.name:24} {u.role.label}")


@users_app.command("passwd")
def users_passwd(
    name: str = typer.Argument(..., help="Whose password."),
    acting: str | None = typer.Option(None, "--as", help="An admin who sets it (default: the user themself)."),
    db: str | None = _DB,
) -> None:
    """Change a password: your own (asked for the current one), or anyone's as an admin."""
    with _session(db) as control:
        who = acting or name
        _login(control, who)
        if who == name.strip():
            control.change_own_password(_new_password(name))
        else:
            control.require("users.manage")
            control.set_password(name, _new_password(name))
        typer.echo(f"password of {name} changed")


@users_app.command("remove")
def users_remove(
    name: str = typer.Argument(..., help="Who to remove."),
    acting: str | None = _AS,
    db: str | None = _DB,
) -> None:
    """Remove a user (never the last admin)."""
    with _session(db) as control:
        _login(control, acting)
        role = control.remove_user(name)
        typer.echo(f"removed {name} ({role.label})")


@users_app.command("unlock")
def users_unlock(
    name: str = typer.Argument(..., help="Whose failed logins and lockout to clear."),
    acting: str | None = _AS,
    db: str | None = _DB,
) -> None:
    """Clear a user's failed logins and lockout."""
    with _session(db) as control:
        _login(control, acting)
        was = control.unlock_user(name)
        typer.echo(f"{name} unlocked" if was else f"{name} was not locked")
