"""``inspector users add|list|passwd|remove|unlock``: user management for headless stations.

The first user of an empty database must be an admin and needs no login; after that an
admin logs in with ``--as`` (`inspector.cli.login`), throttled and audited like a GUI login.
"""

from __future__ import annotations

import json

import typer

from inspector.cli.common import fail
from inspector.cli.login import login, new_password, session

app = typer.Typer(name="users", no_args_is_help=True,
                  help="Station users (operator, engineer, admin); every change audited.")

_DB = typer.Option(None, help="Database URL (default: the station's SQLite database).")
_AS = typer.Option(None, "--as", help="The admin who does this (asked for their password).")


@app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., help="operator | engineer | admin"),
    acting: str | None = _AS,
    db: str | None = _DB,
) -> None:
    """Add a user. The first user of an empty database must be an admin and needs no --as."""
    from inspector.access.users import Role

    with session(db) as control:
        r = Role.parse(role)
        if control.first_start_needed():
            if r is not Role.ADMIN:
                fail("the first user must be an admin: --role admin")
            user = control.create_admin(new_password(name), name=name)
            typer.echo(f"added {user}: the station's first user")
            return
        login(control, acting)
        control.require("users.manage")  # refuse before asking for the new password
        user = control.add_user(name, new_password(name), r)
        typer.echo(f"added {user}")


@app.command("list")
def users_list(
    acting: str | None = _AS,
    db: str | None = _DB,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List users and their roles (an admin logs in)."""
    with session(db) as control:
        if control.first_start_needed():
            users = []
        else:
            login(control, acting)
            users = control.list_users()
    if as_json:
        typer.echo(json.dumps([{"name": u.name, "role": u.role.label} for u in users], indent=2))
        return
    if not users:
        typer.echo("no users yet: inspector users add NAME --role admin")
    for u in users:
        typer.echo(f"{u.name:24} {u.role.label}")


@app.command("passwd")
def users_passwd(
    name: str = typer.Argument(..., help="Whose password."),
    acting: str | None = typer.Option(None, "--as", help="An admin who sets it (default: the user themself)."),
    db: str | None = _DB,
) -> None:
    """Change a password: your own (asked for the current one), or anyone's as an admin."""
    with session(db) as control:
        who = acting or name
        login(control, who)
        if who == name.strip():
            control.change_own_password(new_password(name))
        else:
            control.require("users.manage")
            control.set_password(name, new_password(name))
        typer.echo(f"password of {name} changed")


@app.command("remove")
def users_remove(
    name: str = typer.Argument(..., help="Who to remove."),
    acting: str | None = _AS,
    db: str | None = _DB,
) -> None:
    """Remove a user (never the last admin)."""
    with session(db) as control:
        login(control, acting)
        role = control.remove_user(name)
        typer.echo(f"removed {name} ({role.label})")


@app.command("unlock")
def users_unlock(
    name: str = typer.Argument(..., help="Whose failed logins and lockout to clear."),
    acting: str | None = _AS,
    db: str | None = _DB,
) -> None:
    """Clear a user's failed logins and lockout."""
    with session(db) as control:
        login(control, acting)
        was = control.unlock_user(name)
        typer.echo(f"{name} unlocked" if was else f"{name} was not locked")
