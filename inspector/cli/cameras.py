"""``inspector cameras list``: every GenTL and Aravis device found, and a station's simulated and replay cameras."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from inspector.cli.common import fail, load_station_config, user_errors

app = typer.Typer(name="cameras", no_args_is_help=True, help="Cameras: discovery.")

log = logging.getLogger("inspector")


@app.command("list")
def cameras_list(
    station: str | None = typer.Option(None, help="Also list this station's simulated/replay cameras."),
    config: Path | None = typer.Option(None, help="Station config TOML."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every GenTL and Aravis (GigE Vision) device found, and the simulated cameras of the chosen station."""
    rows: list[dict[str, Any]] = []
    try:
        from camera.gentl_system import GenTLSystem, find_producers

        with GenTLSystem() as system:
            for info in system.devices():
                rows.append({"id": info.id, "kind": "gentl", "vendor": info.vendor, "model": info.model,
                             "serial": info.serial, "producer": str(info.producer)})
        producers = [str(p) for p in find_producers()]
    except ImportError as exc:
        producers = []
        log.warning("GenTL discovery unavailable: %s", exc)
    aravis_rows, aravis_note = _aravis_devices()
    rows += aravis_rows
    try:
        cfg = load_station_config(station, config)
    except user_errors() as exc:
        fail(str(exc))
    from camera.simulated import simulated_serial

    for c in cfg.cameras:
        if c.kind != "gentl":
            # the names the camera itself reports (CameraInfo), as the GUI shows them
            model_name = {"simulated": "SimulatedLineCamera", "replay": "ReplayCamera"}.get(c.kind, c.kind)
            serial = simulated_serial(c.id) if c.kind == "simulated" else c.source.name if c.kind == "replay" else ""
            rows.append({"id": c.id, "kind": c.kind, "vendor": "inspector", "model": model_name, "serial": serial,
                         "producer": "", "station": cfg.name})
    if as_json:
        typer.echo(json.dumps({"producers": producers, "aravis": aravis_note, "cameras": rows}, indent=2))
        return
    typer.echo(f"GenTL producers: {', '.join(producers) or 'none found'}")
    typer.echo(f"Aravis: {aravis_note}")
    cols = ("id", "kind", "vendor", "model")  # as wide as their longest value: nothing is cut
    width = {k: max([len(k), *(len(str(r[k])) for r in rows)]) for k in cols}
    typer.echo(" ".join(f"{k.upper():{width[k]}}" for k in cols) + " SERIAL")
    for r in rows:
        typer.echo(" ".join(f"{r[k]!s:{width[k]}}" for k in cols) + f" {r['serial']}")


def _aravis_devices() -> tuple[list[dict[str, Any]], str]:
    """The GigE Vision / USB3 Vision cameras Aravis finds (their ids go into a config's ``device_id``),
    and a note: how many, or why Aravis is not available."""
    from camera.aravis import discover

    try:
        found = discover()
    except RuntimeError as exc:  # PyGObject or gir1.2-aravis-0.8 missing: the message says what to install
        return [], f"not available ({exc})"
    rows = [{"id": d.device_id, "kind": "aravis", "vendor": d.vendor, "model": d.model, "serial": d.serial,
             "producer": f"aravis {d.protocol} {d.address}".rstrip()} for d in found]
    return rows, f"{len(rows)} camera{'' if len(rows) == 1 else 's'} found"
