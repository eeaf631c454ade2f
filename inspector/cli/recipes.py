"""``inspector recipe save|versions|rollback|select``: product recipe versions, kept and rolled back, with the
model gate; ``select`` switches a running ``inspector service`` to a recipe (over its control link).

Saving and rolling back change what a station runs: an engineer logs in (``--as``) and the
database's audit trail records it, besides the recipe's own history. A detector without a
passing promotion gate against the recipe's previous one is refused, unless an admin
overrides (``--override-gate --reason``), which both record with the two models.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from inspector.cli.common import fail, load_station_config, user_errors
from inspector.cli.login import authenticated, service_session


def _errors() -> tuple[type[BaseException], ...]:
    """What a recipe command reports as one line: a refused version, the promotion gate's refusal and every user
    error."""
    from inspector.quality.gate import GateRefused
    from inspector.recipes.versions import RecipeVersionError

    return (RecipeVersionError, GateRefused, *user_errors())


app = typer.Typer(name="recipe", no_args_is_help=True,
                  help="Product recipes: save a new version (gated), list the kept versions, roll back, "
                       "select one on the running station service.")

DIR_HELP = "The recipes folder (default: the station's \\[recipes] dir)."


def _folder(folder: Path | None, station: str | None, config: Path | None) -> Path:
    """``--dir``, else the station's ``[recipes] dir``; one line and exit 2 where there is none."""
    if folder is not None:
        if not folder.is_dir():
            fail(f"--dir: {folder} is not a folder")
        return folder
    try:
        cfg = load_station_config(station, config)
    except user_errors() as exc:
        fail(str(exc))
    if not cfg.recipes.dir:
        fail(f"--dir: station {cfg.name} has no recipes ([recipes] dir); give --dir")
    return Path(cfg.recipes.dir).expanduser()


@app.command("save")
def save(
    file: Path = typer.Argument(..., help="The recipe TOML to save as the next version of its recipe."),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    station: str | None = typer.Option(None, help="Built-in station whose recipes folder to use."),
    config: Path | None = typer.Option(None, help="Station config TOML whose recipes folder to use."),
    acting: str | None = typer.Option(None, "--as", help="The engineer (or admin) who saves it."),
    db: str | None = typer.Option(None, help="The database whose users and audit trail to use."),
    reason: str = typer.Option("", help="Why (kept in the recipe's history and the audit trail)."),
    override_gate: bool = typer.Option(False, "--override-gate",
                                       help="Admin only: save although the detector has no passing gate against "
                                            "the recipe's previous one (needs --reason)."),
) -> None:
    """Save a recipe as its next version (the previous stays kept); its detector needs a passing gate."""
    from inspector.access.users import Role
    from inspector.recipes.versions import read_history, save_recipe_version

    where = _folder(folder, station, config)
    try:
        text = file.read_text()
    except OSError as exc:
        fail(f"{file}: cannot read: {exc.strerror}")
    if override_gate and not reason.strip():
        fail("--override-gate: give --reason (it goes into the audit trail)")
    with authenticated(db, acting, "recipe.save") as control:
        user = control.user
        assert user is not None  # authenticated logged someone in
        if override_gate and user.role is not Role.ADMIN:
            fail(f"--override-gate: needs the admin role (logged in as {user.name}, {user.role.label})")
        try:
            r = save_recipe_version(where, text, by=user.name, reason=reason,
                                    override_gate_by=user.name if override_gate else None, source=str(file))
        except _errors() as exc:
            fail(str(exc))
        entry = read_history(where, r.recipe.name)[-1]
        action = "recipe.gate_override" if entry.gate.startswith("gate overridden") else "recipe.save_version"
        control.audit.record(user.name, action, r.recipe.name, f"v{entry.from_version}" if entry.from_version else None,
                             f"{r.label}: {entry.model} ({entry.gate})" + (f"; reason: {reason}" if reason else ""))
    typer.echo(f"saved {r.label} ({r.model.name}; {entry.gate}) -> {r.path}; kept versions: {where / 'versions' / r.recipe.name}")


@app.command("versions")
def versions(
    name: str = typer.Argument(..., help="The recipe's name."),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    station: str | None = typer.Option(None, help="Built-in station whose recipes folder to use."),
    config: Path | None = typer.Option(None, help="Station config TOML whose recipes folder to use."),
    json_out: bool = typer.Option(False, "--json", help="Print the history as JSON lines instead."),
) -> None:
    """List a recipe's kept versions (* the active one) with who saved each, its detector and gate."""
    from inspector.recipes.versions import (
        entry_dict,
        format_versions,
        read_history,
        recipe_versions,
    )

    where = _folder(folder, station, config)
    try:
        if json_out:
            for e in read_history(where, name):
                typer.echo(json.dumps(entry_dict(e), sort_keys=True))
            return
        kept = recipe_versions(where, name)
    except _errors() as exc:
        fail(str(exc))
    if not kept:
        typer.echo(f"recipe {name}: no version kept yet (the first save or selection keeps it)")
    for line in format_versions(kept):
        typer.echo(line)


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="The recipe's name."),
    to: int | None = typer.Option(None, "--to", min=1, help="The version to bring back (default: the previous one)."),
    folder: Path | None = typer.Option(None, "--dir", help=DIR_HELP),
    station: str | None = typer.Option(None, help="Built-in station whose recipes folder to use."),
    config: Path | None = typer.Option(None, help="Station config TOML whose recipes folder to use."),
    acting: str | None = typer.Option(None, "--as", help="The engineer (or admin) who rolls back."),
    db: str | None = typer.Option(None, help="The database whose users and audit trail to use."),
    reason: str = typer.Option("", help="Why (kept in the recipe's history and the audit trail)."),
) -> None:
    """Make a kept earlier version active again; a station runs it from the recipe's next selection."""
    from inspector.recipes.versions import read_history, rollback_recipe

    where = _folder(folder, station, config)
    with authenticated(db, acting, "recipe.save") as control:
        user = control.user
        assert user is not None
        try:
            r = rollback_recipe(where, name, by=user.name, to=to, reason=reason)
        except _errors() as exc:
            fail(str(exc))
        entry = read_history(where, name)[-1]
        control.audit.record(user.name, "recipe.rollback", name, f"v{entry.from_version}",
                             r.label + (f"; reason: {reason}" if reason else ""))
    typer.echo(f"rolled back {name}: v{entry.from_version} -> {r.label} ({r.model.name}) in {r.path}; select the "
               "recipe again for a running station to use it")


@app.command("select")
def select(
    key: str = typer.Argument(..., help="The recipe: its number (what a PLC selects), name, product id or external id."),
    station: str | None = typer.Option(None, help="Built-in station whose service to reach (default line-demo)."),
    config: Path | None = typer.Option(None, help="Station config TOML whose service to reach."),
    socket_path: Path | None = typer.Option(
        None, "--socket", help="The service's control link (default: where `inspector service` binds it for the "
        "station: $INSPECTOR_SOCKET, /run/inspector, $XDG_RUNTIME_DIR/inspector or /tmp/inspector-UID)."),
    acting: str | None = typer.Option(None, "--as", help="The operator (or higher) who switches; audited."),
    override_gate: bool = typer.Option(False, "--override-gate",
                                       help="Admin only: select although the detector has no passing gate (needs "
                                            "--reason)."),
    reason: str = typer.Option("", help="Why the gate is overridden (the audit trail and the recipe's history)."),
) -> None:
    """Switch the running station service to a product recipe at its next part (as the GUI's selector, the PLC)."""
    from inspector.access.control import ControlError, switch_wording
    from inspector.access.users import PermissionDenied
    from inspector.quality.gate import GateRefused
    from inspector.service.client import SWITCH_TIMEOUT_S

    name = "station"  # with --socket, whichever station's service answers there
    if socket_path is None:  # the station names the socket
        try:
            name = load_station_config(station, config).name
        except user_errors() as exc:
            fail(str(exc))
    with service_session(name, socket_path, acting) as link:
        hello = link.request("hello")  # the station's name, its line and the recipe in force before
        options = {"override_gate": True, "reason": reason} if override_gate else {}
        try:
            label = link.request("select_recipe", timeout=SWITCH_TIMEOUT_S, key=int(key) if key.isdigit() else key,
                                 **options)
        except (PermissionDenied, ControlError, GateRefused, KeyError, ValueError) as exc:
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)  # KeyError's str() quotes
            fail((text.strip().splitlines() or [type(exc).__name__])[0])
    known = hello.get("recipes") or {}
    old = next((r["label"] for r in known.get("recipes", []) if r["number"] == known.get("current")),
               "the station settings")
    wording = switch_wording(triggered=bool(hello.get("triggered")))  # as the GUI's selector says it
    typer.echo(f"station {hello['station']}: {wording.switched(label, old)}")
