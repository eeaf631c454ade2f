"""``inspector service``: the station headless from boot, with the control link the GUI attaches to."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from inspector.cli.common import fail, load_station_config, setup_logging, user_errors

app = typer.Typer()


@app.command()
def service(
    station: str | None = typer.Option(None, help="Built-in station (default line-demo)."),
    config: Path | None = typer.Option(None, help="Station config TOML."),
    db: str | None = typer.Option(None, help="Database URL (default: the config's; 'none' is refused)."),
    socket_path: Path | None = typer.Option(
        None, "--socket", help="The control link's Unix socket (default: $INSPECTOR_SOCKET, else "
        "/run/inspector/NAME.sock, $XDG_RUNTIME_DIR/inspector/NAME.sock or /tmp/inspector-UID/NAME.sock)."),
    image_fps: float = typer.Option(5.0, "--image-fps", min=0.0, max=10.0,
                                    help="Live images per camera and second for attached GUIs (0: none)."),
    no_archive: bool = typer.Option(False, "--no-archive", help="Do not save NG images."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                            help="Serve Prometheus metrics on this port (127.0.0.1)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the station as a service: inspect from start, serve the GUI's control link (SIGTERM stops)."""
    setup_logging(verbose)
    from inspector.service.protocol import default_socket
    from inspector.service.runner import serve_station
    from inspector.service.server import ServiceError

    try:
        cfg = load_station_config(station, config)
    except user_errors() as exc:
        fail(str(exc))
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    path = socket_path if socket_path is not None else default_socket(cfg.name)
    try:
        serve_station(cfg, path, stop, db_url=db, image_fps=image_fps, archive=not no_archive,
                      metrics_port=metrics_port,
                      on_ready=lambda _s: typer.echo(f"station {cfg.name} inspecting; control link {path}", err=True))
    except (ServiceError, *user_errors()) as exc:  # type: ignore[misc]  # a tuple built at run time
        fail(str(exc))
