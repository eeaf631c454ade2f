"""What every ``inspector`` command shares: one-line user errors, loading a station, logging.

The bottom of the CLI package: command modules import it, it imports none of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

import typer

if TYPE_CHECKING:  # the engine is imported when a command runs, not with the CLI
    from inspector.config import StationConfig

#: The built-in station the app and `inspector run` start when none is named: the triggered line.
DEFAULT_STATION = "line-demo"


class OpenGui(Protocol):
    """Opens the desktop app (``inspector gui``); lent by the outer layer, since the engine never imports gui."""

    def __call__(self, *, station: str | None, config: Path | None, db: str | None, admin_password: bool) -> None:
        ...


@dataclass(frozen=True)
class CliContext:
    """What the outer layer lends the engine's commands, carried as the root ``typer.Context.obj``.

    Attributes:
        open_gui: Opens the desktop app for ``inspector run`` without ``--headless``; None where the GUI
            is not installed (``python -m inspector.cli``).
    """

    open_gui: OpenGui | None = None


def cli_context(ctx: typer.Context) -> CliContext:
    """The `CliContext` the root app was built with (an empty one for a command invoked on its own)."""
    found = ctx.find_object(CliContext)
    return found if found is not None else CliContext()


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print one line and exit (never a traceback for user errors)."""
    typer.echo(f"inspector: {msg}", err=True)
    raise typer.Exit(code)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user can cause (a bad config, model, database or file): `fail` prints them as one line."""
    from camera.features import FeatureError
    from inspector.config import ConfigError
    from inspector.pipeline.backends.base import BackendUnavailable
    from inspector.pipeline.model_repo import ModelError
    from inspector.station import StationError

    errs: list[type[BaseException]] = [ConfigError, ModelError, BackendUnavailable, StationError, FeatureError,
                                       FileNotFoundError]
    try:
        from inspector.storage.db import StorageError

        errs.append(StorageError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def load_station_config(station: str | None, config: Path | None) -> StationConfig:
    """The config of ``--station`` (a built-in name) or ``--config`` (a TOML file); `DEFAULT_STATION` without either.

    Raises:
        ConfigError: The station or file does not exist or is not valid.
    """
    from inspector.config import load_config, load_station

    if station and config:
        fail("give --station or --config, not both")
    return load_config(config) if config else load_station(station or DEFAULT_STATION)


def setup_logging(verbose: bool) -> None:
    """Log warnings (everything with ``verbose``) to stderr, one line each."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
