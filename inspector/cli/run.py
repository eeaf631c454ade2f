"""``inspector run``: start a station and supervise it until stopped.

``inspector run`` exits 3 (one line) when inspected results were lost because they could
not be stored (see `inspector.storage.writer.DbWriter.lost`).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from inspector.cli.common import cli_context, fail, load_station_config, setup_logging, user_errors

if TYPE_CHECKING:  # the engine is imported when the command runs, not with the CLI
    from camera.faults import Injection
    from inspector.config import StationConfig
    from inspector.station import Station

app = typer.Typer()


@app.command()
def run(
    ctx: typer.Context,
    headless: bool = typer.Option(False, "--headless", help="No GUI: print a status line."),
    station: str | None = typer.Option(None, help="Built-in station (line-demo: the default, demo, viky-demo)."),
    config: Path | None = typer.Option(None, help="Station config TOML."),
    duration: float | None = typer.Option(None, min=0.1, help="Stop after this many seconds."),
    db: str | None = typer.Option(None, help="Database URL (sqlite:///..., postgresql+psycopg://...; 'none')."),
    report: Path | None = typer.Option(None, help="Write a JSON report here at the end."),
    backend: str | None = typer.Option(None, help="openvino | onnxruntime | tensorrt"),
    no_archive: bool = typer.Option(False, "--no-archive", help="Do not save NG images."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port (127.0.0.1)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No live status line (the final summary still prints)."),
    inject: list[str] | None = typer.Option(
        None, "--inject", help="CAMERA:FAULT[:VALUE]\\[@S] (repeatable): missed_trigger:0.05, stall:5, "
        "disconnect, corrupt, wrong_size, hang (VALUE: rate or seconds; @S: when, seconds after the start)."
    ),
    trigger: str | None = typer.Option(None, "--trigger", help="conveyor | plc: who triggers the parts of a "
                                          "triggered line (plc: only the PLC links and commands)."),
    plc: list[str] | None = typer.Option(None, "--plc", help="modbus://HOST:PORT or opcua://HOST:PORT, "
                                            "repeatable: serve the PLC links there."),
    mqtt: str | None = typer.Option(None, "--mqtt", help="HOST:PORT of an MQTT broker: publish every part's "
                                    "result there (\\[mqtt] broker; the rest of \\[mqtt] from the config)."),
    recipe: str | None = typer.Option(None, "--recipe", help="Product recipe to start with (number or name; "
                                         "needs \\[recipes] dir)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a station: cameras -> batched inference -> verdicts -> database."""
    setup_logging(verbose)
    if not headless:
        if inject:  # the app has no injection of its own: say so rather than run without the fault
            fail("--inject: only with --headless (in the app, set the camera's FaultMode and FaultDuration in "
                 "its settings)")
        open_gui = cli_context(ctx).open_gui
        if open_gui is None:
            fail("the GUI is not available here (install the gui extra); use --headless")
        return open_gui(station=station, config=config, db=db, admin_password=False)
    if backend is not None and backend not in ("openvino", "onnxruntime", "tensorrt"):
        fail(f"--backend: unknown {backend!r} (openvino, onnxruntime, tensorrt)")
    from camera.faults import parse_injection

    try:
        injections = [parse_injection(s) for s in inject or []]
    except ValueError as exc:
        fail(str(exc))
    try:
        cfg = _run_config(station, config, trigger, plc or [], recipe, injections)
        cfg = _with_mqtt(cfg, mqtt) if mqtt is not None else cfg
        st = _build_station(cfg, db=db, backend=backend, archive=not no_archive, metrics_port=metrics_port,
                            quiet=quiet)
    except user_errors() as exc:
        fail(str(exc))
    _supervise(st, duration, injections, quiet)
    rep = st.report()
    _print_summary(rep)  # --quiet hides the live status line, never the run's result
    if report is not None:
        try:
            report.write_text(json.dumps(rep, indent=2))
        except OSError as exc:
            fail(f"--report: cannot write {report}: {exc.strerror}")
    if rep.get("lost"):  # accepted results that never reached the database or the spool: exit 3
        where = st.db_writer.spool.path.parent if st.db_writer is not None else "the database"
        fail(f"{rep['lost']} results were inspected but LOST (no room to store them on the disk of {where}); "
             "free space there", code=3)


def _run_config(station: str | None, config: Path | None, trigger: str | None, plc: list[str], recipe: str | None,
                injections: list[Injection]) -> StationConfig:
    """The station's config with ``--trigger``, ``--plc`` and ``--recipe`` applied and ``--inject`` checked."""
    cfg = _with_plc(load_station_config(station, config), trigger, plc)
    if recipe is not None:
        if not cfg.recipes.dir:
            fail(f"--recipe: station {cfg.name} has no recipes ([recipes] dir)")
        cfg = cfg.model_copy(update={"recipes": cfg.recipes.model_copy(
            update={"select": int(recipe) if recipe.isdigit() else recipe})})
    unknown = [i.camera for i in injections if i.camera not in {c.id for c in cfg.cameras}]
    if unknown:
        fail(f"--inject: no camera {unknown[0]!r} in station {cfg.name} ({', '.join(c.id for c in cfg.cameras)})")
    return cfg


def _build_station(cfg: StationConfig, *, db: str | None, backend: str | None, archive: bool,
                   metrics_port: int | None, quiet: bool) -> Station:
    """The station, built; on a terminal its start stages show on one line that is gone when it is built."""
    from inspector.station import Station

    started = time.monotonic()

    def say(stage: str) -> None:  # what the start is doing, at once, on one line that ends as it ends
        sys.stderr.write(f"\r\x1b[2K[start {time.monotonic() - started:4.1f}s] {cfg.name}: {stage}"[:200])
        sys.stderr.flush()

    # on a terminal only: in a log (or a script's capture) a refused start stays one line
    live = not quiet and sys.stderr.isatty()
    try:
        return Station(cfg, db_url=db, backend=backend, archive=archive, metrics_port=metrics_port,
                       progress=say if live else None)
    finally:
        if live:
            sys.stderr.write("\r\x1b[2K")


def _supervise(st: Station, duration: float | None, injections: list[Injection], quiet: bool) -> None:
    """Start ``st`` and run it until SIGINT/SIGTERM or ``duration``, injecting faults on time; always stop it."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        st.start()
    except user_errors() as exc:
        fail(str(exc))
    tty = sys.stderr.isatty()
    t0 = time.monotonic()
    last_print = 0.0
    pending = sorted(injections, key=lambda i: i.at_s)
    try:
        while not stop.is_set():
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            while pending and time.monotonic() - t0 >= pending[0].at_s:
                i = pending.pop(0)
                try:
                    st.inject_fault(i.camera, i.fault, i.value)
                except user_errors() as exc:
                    fail(str(exc))
            stop.wait(0.2)
            now = time.monotonic()
            if not quiet and now - last_print >= (1.0 if tty else 5.0):
                last_print = now
                line = st.status_line()
                sys.stderr.write(("\r\x1b[2K" + line[:400]) if tty else line + "\n")
                sys.stderr.flush()
    finally:
        st.stop()
        if not quiet and tty:
            sys.stderr.write("\n")


def _print_summary(rep: dict[str, Any]) -> None:
    """The run's figures on stderr: frames, accuracy and health; on a triggered line its parts, latency,
    missed deadlines and the reject gate. Health comes last: it is the run's verdict."""
    from inspector.ops.health import health_text

    t = rep["totals"]
    a = rep["accuracy"]
    typer.echo(
        f"{rep['duration_s']:.1f} s: {t['inspected']} frames inspected ({t['fps']:.1f} fps), {t['dropped']} frames "
        f"dropped, {t['ng']} frames NG, {rep['db']['rows_written']} rows written; per frame: escape rate "
        f"{a['escape_rate']:.2%}, false-reject rate {a['false_reject_rate']:.2%} over {a['parts']} frames with "
        "ground truth",
        err=True,
    )
    if "parts" in rep:
        p = rep["parts"]
        lat = p["trigger_to_verdict_ms"]
        typer.echo(
            f"parts: {p['triggered']} triggered, {p['verdicts']} verdicts ({p['ok']} OK, {p['ng']} NG, "
            f"{p['incomplete']} incomplete), {p['late_frames']} late frames, {p['missed_triggers']} missed "
            f"triggers; trigger->verdict p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms (budget "
            f"{p['budget_ms']:g} ms); per part: escape rate {p['escape_rate']:.2%}, false-reject rate "
            f"{p['false_reject_rate']:.2%}",
            err=True,
        )
        gate = p.get("reject_gate")
        late = f", deadline lateness p99 {p['deadline_lateness_ms']['p99']:.1f} ms" if "deadline_lateness_ms" in p else ""
        line = f"deadline_missed {p['deadline_missed']}{late}"
        if gate is not None:
            line += (f"; reject gate: reject_late {gate['reject_late']}, reject_too_late {gate['reject_too_late']} "
                     f"({gate['rejected_in_time']} NG rejected in time, {gate['missed']} NG not rejected, "
                     f"{gate['passed_ok']} OK passed)")
        typer.echo(line, err=True)
    typer.echo(f"health: {health_text(rep['health'])}", err=True)


def _with_mqtt(cfg: StationConfig, broker: str) -> StationConfig:
    """The config with ``--mqtt HOST:PORT`` as its ``[mqtt] broker`` (validated like the file's own keys)."""
    from pydantic import ValidationError

    from inspector.config import StationConfig, format_errors

    raw = cfg.model_dump()
    raw["mqtt"]["broker"] = broker
    try:
        return StationConfig.model_validate(raw)
    except ValidationError as exc:
        fail(format_errors("--mqtt", exc))


def _with_plc(cfg: StationConfig, trigger: str | None, plc: list[str]) -> StationConfig:
    """The config with ``--trigger`` and ``--plc`` applied (validated like the file's own keys)."""
    from pydantic import ValidationError

    from inspector.config import StationConfig, format_errors

    if trigger is None and not plc:
        return cfg
    raw = cfg.model_dump()
    if trigger is not None:
        if trigger not in ("conveyor", "plc"):
            fail(f"--trigger: {trigger!r} is not conveyor or plc")
        if cfg.line.mode != "triggered":
            fail(f"--trigger: station {cfg.name} is free-running ([line] mode is not triggered)")
        raw["line"]["trigger"] = "conveyor" if trigger == "conveyor" else "external"
    for url in plc:
        scheme, _, rest = url.partition("://")
        if scheme == "modbus":
            raw["plc"]["modbus"] = rest
        elif scheme in ("opcua", "opc.tcp"):
            raw["plc"]["opcua"] = f"opc.tcp://{rest}"
        else:
            fail(f"--plc {url!r}: expected modbus://HOST:PORT or opcua://HOST:PORT")
    try:
        return StationConfig.model_validate(raw)
    except ValidationError as exc:
        fail(format_errors("--plc", exc))
