"""The root ``inspector`` app: every command module registered, and `run_cli`, which runs it.

Each command module holds one typer app: ``COMMANDS`` merge theirs into the root
(``inspector run``), ``GROUPS`` are named sub-apps (``inspector users add``). A new command
group is its module's import below and one entry in ``GROUPS`` (and its name in the CLI layers
contract in pyproject.toml, which keeps command modules from importing each other).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import typer

from inspector.cli import anomaly, audit, bench, cameras, dataset, history, models, plc, recipes, run, service, users
from inspector.cli.common import CliContext, OpenGui

#: Modules whose commands sit at the top (``inspector run``), in the order ``--help`` lists them.
COMMANDS: tuple[typer.Typer, ...] = (run.app, service.app, history.app, models.app, bench.app)
#: Named command groups (``inspector users add``; the name is set in each module's app), listed after COMMANDS.
GROUPS: tuple[typer.Typer, ...] = (cameras.app, dataset.app, recipes.app, users.app, audit.app, plc.app,
                                   anomaly.app)


def make_app(open_gui: OpenGui | None = None, extra: Sequence[typer.Typer] = ()) -> typer.Typer:
    """The ``inspector`` app with every command of the engine.

    Args:
        open_gui: Opens the desktop app for ``inspector run`` without ``--headless`` (the outer layer's;
            without it that refuses in one line).
        extra: The outer layer's own command apps (``inspector gui``), listed after the engine's commands.
    """
    root = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-camera inspection station.",
                       context_settings={"obj": CliContext(open_gui=open_gui)})
    for sub in (*COMMANDS, *extra, *GROUPS):
        root.add_typer(sub)
    return root


#: The engine's command line (``python -m inspector.cli``): no ``gui`` command.
app = make_app()


def run_cli(argv: list[str] | None = None, *, cli: typer.Typer | None = None) -> NoReturn:
    """Run the command line ``cli`` (default: `app`) and exit; a bad option or argument is one line and exit 2.

    Typer would draw a five-line box for a usage error; a station's log (and an
    integrator's script) wants the one line that names the option.
    """
    try:  # typer >= 0.20 carries its own copy of click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions as click  # type: ignore[no-redef]

    try:
        rc = (cli or app)(args=argv, prog_name="inspector", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "inspector"
        typer.echo(f"{where}: {exc.format_message()} (see: {where} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        typer.echo(f"inspector: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("inspector: aborted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


def main() -> None:
    """Engine-only entry point (``python -m inspector.cli``); the console script is gui.launcher:main."""
    run_cli()
