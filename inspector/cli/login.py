"""Logging in from the command line: passwords from the terminal or the environment, audited sessions.

Passwords never travel on the command line (it is readable by every local user in
/proc): they come from the terminal, or for unattended installs from
``INSPECTOR_PASSWORD`` (the acting user's) and ``INSPECTOR_NEW_PASSWORD`` (the one being
set). A login is throttled and audited like a GUI login.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.cli.common import fail

if TYPE_CHECKING:  # the engine is imported when a command runs, not with the CLI
    from inspector.access.control import StationControl
    from inspector.service.client import RemoteLink

ENV_PASSWORD = "INSPECTOR_PASSWORD"
ENV_NEW_PASSWORD = "INSPECTOR_NEW_PASSWORD"


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


@contextlib.contextmanager
def session(db: str | None) -> Iterator[StationControl]:
    """An offline `StationControl` on the database ``db`` (default: the station's), migrated; nobody logged in.

    A database, user or permission error inside the block is one line and exit 2.
    """
    from inspector.access.control import StationControl
    from inspector.access.users import PermissionDenied, UserError
    from inspector.storage.db import StorageError, default_db_url, migrate, open_database

    try:
        engine = open_database(db or default_db_url())
    except StorageError as exc:
        fail(str(exc))
    try:
        migrate(engine)
        control = StationControl.offline(engine)
        try:
            yield control
        finally:
            control.logout()
    except (StorageError, UserError, PermissionDenied) as exc:
        fail(str(exc))
    finally:
        engine.dispose()


@contextlib.contextmanager
def authenticated(db: str | None, name: str | None, action: str) -> Iterator[StationControl]:
    """A session of the database ``db`` with ``name`` logged in and allowed ``action``.

    Any refusal (no such user, wrong password, locked, role too low) is one line and exit 2.
    """
    with session(db) as control:
        if control.first_start_needed():
            fail(f"--as {name}: the database has no users yet: inspector users add NAME --role admin")
        login(control, name)
        control.require(action)
        yield control


def login(control: StationControl, name: str | None) -> None:
    """Log ``name`` (``--as``) in with the password from `ENV_PASSWORD` or the terminal; a refusal is one line."""
    if name is None:
        fail("--as ADMIN: users exist already, so an admin must log in to do this")
    password = read_password(ENV_PASSWORD, f"Password of {name}: ")
    if control.login(name, password) is None:  # LoginRefused (locked, too early) is a one-line PermissionDenied
        fail(f"--as {name}: wrong user name or password")


def new_password(name: str) -> str:
    """The new password of ``name`` from `ENV_NEW_PASSWORD` or typed twice on the terminal."""
    return read_password(ENV_NEW_PASSWORD, f"New password of {name}: ", confirm=True)


@contextlib.contextmanager
def service_session(station_name: str, socket_path: Path | None, name: str | None) -> Iterator[RemoteLink]:
    """A session on the running ``inspector service`` of ``station_name`` (``socket_path``, else where the
    service binds it), with ``name`` (``--as``) logged in over the link; the link closes (and logs out) after.

    Roles and the audit trail are the service's: each request is one `StationControl` call of this session.
    No service, a wrong password or a locked user is one line and exit 2.
    """
    from inspector.access.control import ControlError
    from inspector.access.users import LoginRefused, PermissionDenied, UserError
    from inspector.service.client import attach
    from inspector.service.protocol import socket_candidates

    got = attach(station_name, socket_path)
    if got is None:
        where = str(socket_path) if socket_path is not None else ", ".join(map(str, socket_candidates(station_name)))
        fail(f"no station service of {station_name} answers (tried {where}); start it: inspector service, "
             "or give --socket")
    link, _hello = got
    try:
        if name is None:
            fail("--as NAME: a user must log in on the station service to do this")
        password = read_password(ENV_PASSWORD, f"Password of {name}: ")
        try:
            if link.request("login", name=name, password=password) is None:
                fail(f"--as {name}: wrong user name or password")
        except (LoginRefused, PermissionDenied, UserError, ControlError) as exc:
            fail(f"--as {name}: {exc}")
        yield link
    except UserError as exc:  # no password to read
        fail(str(exc))
    finally:
        link.close()
