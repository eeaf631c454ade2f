"""The ``inspector`` command line. User errors: one line on stderr, exit status 2.

``inspector run`` exits 3 (one line) when inspected results were lost because they could
not be stored (see `inspector.storage.writer.DbWriter.lost`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, get_args

import typer

from inspector.cli_audit import audit_app
from inspector.cli_users import authenticated, users_app

#: The built-in station the app and `inspector run` start when none is named: the triggered line.
DEFAULT_STATION = "line-demo"

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-camera inspection station.")
plc_app = typer.Typer(no_args_is_help=True, help="PLC links: the Modbus register map.")
cameras_app = typer.Typer(no_args_is_help=True, help="Cameras: discovery.")
dataset_app = typer.Typer(no_args_is_help=True, help="Datasets from the synthetic line.")
app.add_typer(cameras_app, name="cameras")
app.add_typer(dataset_app, name="dataset")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(plc_app, name="plc")

log = logging.getLogger("inspector")

#: `inspector eval`'s threshold for a card without metrics.threshold.
DEFAULT_EVAL_THRESHOLD = 0.25
#: `inspector eval`'s frames per inference call (printed with the results).
EVAL_BATCH = 8

#: Set by the outer layer (gui.launcher) to open the desktop app; the engine never imports gui.
open_gui: Optional[Callable[..., None]] = None


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print one line and exit (never a traceback for user errors)."""
    typer.echo(f"inspector: {msg}", err=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from camera.features import FeatureError
    from inspector.pipeline.backends.base import BackendUnavailable
    from inspector.config import ConfigError
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


def _load(station: Optional[str], config: Optional[Path]) -> Any:
    from inspector.config import load_config, load_station

    if station and config:
        fail("give --station or --config, not both")
    return load_config(config) if config else load_station(station or DEFAULT_STATION)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# ---------------------------------------------------------------------------- run
@app.command()
def run(
    headless: bool = typer.Option(False, "--headless", help="No GUI: print a status line."),
    station: Optional[str] = typer.Option(None, help="Built-in station (line-demo: the default, demo, viky-demo)."),
    config: Optional[Path] = typer.Option(None, help="Station config TOML."),
    duration: Optional[float] = typer.Option(None, min=0.1, help="Stop after this many seconds."),
    db: Optional[str] = typer.Option(None, help="Database URL (sqlite:///..., postgresql+psycopg://...; 'none')."),
    report: Optional[Path] = typer.Option(None, help="Write a JSON report here at the end."),
    backend: Optional[str] = typer.Option(None, help="openvino | onnxruntime | tensorrt"),
    no_archive: bool = typer.Option(False, "--no-archive", help="Do not save NG images."),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port (127.0.0.1)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No live status line."),
    inject: Optional[list[str]] = typer.Option(
        None, "--inject", help="CAMERA:FAULT[:VALUE]\\[@S] (repeatable): missed_trigger:0.05, stall:5, "
        "disconnect, corrupt, wrong_size, hang (VALUE: rate or seconds; @S: when, seconds after the start)."
    ),
    trigger: Optional[str] = typer.Option(None, "--trigger", help="conveyor | plc: who triggers the parts of a "
                                          "triggered line (plc: only the PLC links and commands)."),
    plc: Optional[list[str]] = typer.Option(None, "--plc", help="modbus://HOST:PORT or opcua://HOST:PORT, "
                                            "repeatable: serve the PLC links there."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Product recipe to start with (number or name; "
                                         "needs [recipes] dir)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a station: cameras -> batched inference -> verdicts -> database."""
    _setup_logging(verbose)
    if not headless:
        if open_gui is None:
            fail("the GUI is not available here (install the gui extra); use --headless")
        return open_gui(station=station, config=config, db=db, admin_password=None)
    if backend is not None and backend not in ("openvino", "onnxruntime", "tensorrt"):
        fail(f"--backend: unknown {backend!r} (openvino, onnxruntime, tensorrt)")
    from camera.faults import parse_injection
    from inspector.station import Station

    try:
        injections = [parse_injection(s) for s in inject or []]
    except ValueError as exc:
        fail(str(exc))
    try:
        cfg = _load(station, config)
        cfg = _with_plc(cfg, trigger, plc or [])
        if recipe is not None:
            if not cfg.recipes.dir:
                fail(f"--recipe: station {cfg.name} has no recipes ([recipes] dir)")
            cfg = cfg.model_copy(update={"recipes": cfg.recipes.model_copy(
                update={"select": int(recipe) if recipe.isdigit() else recipe})})
        unknown = [i.camera for i in injections if i.camera not in {c.id for c in cfg.cameras}]
        if unknown:
            fail(f"--inject: no camera {unknown[0]!r} in station {cfg.name} ({', '.join(c.id for c in cfg.cameras)})")
        started = time.monotonic()

        def say(stage: str) -> None:  # what the start is doing, at once, on one line that ends as it ends
            sys.stderr.write(f"\r\x1b[2K[start {time.monotonic() - started:4.1f}s] {cfg.name}: {stage}"[:200])
            sys.stderr.flush()

        # on a terminal only: in a log (or a script's capture) a refused start stays one line
        live = not quiet and sys.stderr.isatty()
        try:
            st = Station(cfg, db_url=db, backend=backend, archive=not no_archive, metrics_port=metrics_port,
                         progress=say if live else None)
        finally:
            if live:
                sys.stderr.write("\r\x1b[2K")
    except _user_errors() as exc:
        fail(str(exc))
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        st.start()
    except _user_errors() as exc:
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
                except _user_errors() as exc:
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
    rep = st.report()
    from inspector.ops.health import health_text

    if not quiet:
        t = rep["totals"]
        a = rep["accuracy"]
        typer.echo(
            f"{rep['duration_s']:.1f} s: {t['inspected']} inspected ({t['fps']:.1f} fps), {t['dropped']} dropped, "
            f"{t['ng']} NG, {rep['db']['rows_written']} rows written; escape rate {a['escape_rate']:.2%}, "
            f"false-reject rate {a['false_reject_rate']:.2%} over {a['parts']} parts with ground truth; "
            f"health: {health_text(rep['health'])}",
            err=True,
        )
        if "parts" in rep:
            p = rep["parts"]
            lat = p["trigger_to_verdict_ms"]
            typer.echo(
                f"parts: {p['triggered']} triggered, {p['verdicts']} verdicts ({p['ok']} OK, {p['ng']} NG, "
                f"{p['incomplete']} incomplete), {p['late_frames']} late frames, {p['missed_triggers']} missed "
                f"triggers; trigger->verdict p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms (budget "
                f"{p['budget_ms']:g} ms); part escape rate {p['escape_rate']:.2%}, false-reject rate "
                f"{p['false_reject_rate']:.2%}",
                err=True,
            )
    if report is not None:
        try:
            report.write_text(json.dumps(rep, indent=2))
        except OSError as exc:
            fail(f"--report: cannot write {report}: {exc.strerror}")
    if rep.get("lost"):  # accepted results that never reached the database or the spool: exit 3
        where = st.db_writer.spool.path.parent if st.db_writer is not None else "the database"
        fail(f"{rep['lost']} results were inspected but LOST (no room to store them on the disk of {where}); "
             "free space there", code=3)


def _with_plc(cfg: Any, trigger: Optional[str], plc: list[str]) -> Any:
    """The config with ``--trigger`` and ``--plc`` applied (validated like the file's own keys)."""
    from inspector.config import StationConfig, format_errors
    from pydantic import ValidationError

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


@plc_app.command("modbus-map")
def plc_modbus_map(as_json: bool = typer.Option(False, "--json")) -> None:
    """The Modbus TCP register map: every register, the command, error and state codes."""
    from inspector.plc.modbus_map import codes, map_rows

    rows, c = map_rows(), codes()
    if as_json:
        typer.echo(json.dumps({"registers": rows, **c}, indent=2))
        return
    typer.echo("Holding registers, 0-based; u32 = two registers, high word first.")
    typer.echo(f"{'ADDR':>4} {'WORDS':>5} {'TYPE':4} {'ACC':3} {'NAME':18} MEANING")
    for r in rows:
        typer.echo(f"{r['address']:>4} {r['words']:>5} {r['type']:4} {r['access']:3} {r['name']:18} {r['meaning']}")
    for title, key in (("Commands (write command_arg, then command)", "commands"), ("Error codes", "error_codes"),
                       ("result_state", "result_state"), ("state", "state")):
        typer.echo(f"\n{title}: " + ", ".join(f"{v} {k}" for k, v in c[key].items()))


# ---------------------------------------------------------------------------- cameras
@cameras_app.command("list")
def cameras_list(
    station: Optional[str] = typer.Option(None, help="Also list this station's simulated/replay cameras."),
    config: Optional[Path] = typer.Option(None, help="Station config TOML."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every GenTL device found, and the simulated cameras of the chosen station."""
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
    try:
        cfg = _load(station, config)
    except _user_errors() as exc:
        fail(str(exc))
    for c in cfg.cameras:
        if c.kind != "gentl":
            # the names the camera itself reports (CameraInfo), as the GUI shows them
            model_name = {"simulated": "SimulatedLineCamera", "replay": "ReplayCamera"}.get(c.kind, c.kind)
            serial = f"SIM-{c.seed}" if c.kind == "simulated" else c.source.name if c.kind == "replay" else ""
            rows.append({"id": c.id, "kind": c.kind, "vendor": "inspector", "model": model_name, "serial": serial,
                         "producer": "", "station": cfg.name})
    if as_json:
        typer.echo(json.dumps({"producers": producers, "cameras": rows}, indent=2))
        return
    typer.echo(f"GenTL producers: {', '.join(producers) or 'none found'}")
    cols = ("id", "kind", "vendor", "model")  # as wide as their longest value: nothing is cut
    width = {k: max([len(k), *(len(str(r[k])) for r in rows)]) for k in cols}
    typer.echo(" ".join(f"{k.upper():{width[k]}}" for k in cols) + " SERIAL")
    for r in rows:
        typer.echo(" ".join(f"{r[k]!s:{width[k]}}" for k in cols) + f" {r['serial']}")


# ---------------------------------------------------------------------------- history
@app.command()
def history(
    camera: Optional[str] = typer.Option(None, help="Camera id."),
    verdict: Optional[str] = typer.Option(None, help="OK or NG."),
    since: Optional[str] = typer.Option(None, help="ISO time (2026-11-21T08:00) or age like 30m, 2h, 7d."),
    until: Optional[str] = typer.Option(None, help="ISO time or age."),
    defect: Optional[str] = typer.Option(None, "--class", help="Only inspections with this defect class."),
    limit: int = typer.Option(20, min=1, max=100_000),
    db: Optional[str] = typer.Option(None, help="Database URL."),
    as_json: bool = typer.Option(False, "--json"),
    parts: bool = typer.Option(False, "--parts", help="Parts of a triggered line instead of single inspections."),
    part: Optional[str] = typer.Option(None, "--part", help="One part: its verdict and each camera's frame."),
    incomplete: bool = typer.Option(False, "--incomplete", help="With --parts: only parts failed safe for a missing image."),
) -> None:
    """Recent inspections (or parts) from the database, newest first."""
    from inspector.storage.db import default_db_url, migrate, open_database
    from inspector.storage.history import HistoryFilter, query_history

    if verdict is not None and verdict.upper() not in ("OK", "NG"):
        fail(f"--verdict: must be OK or NG, not {verdict!r}")
    try:
        t_since = _parse_time(since, "--since")
        t_until = _parse_time(until, "--until")
        engine = open_database(db or default_db_url())
        migrate(engine)
        if parts or part is not None or incomplete:
            return _history_parts(engine, part, verdict, t_since, t_until, incomplete, limit, as_json)
        rows = query_history(
            engine,
            HistoryFilter(camera_id=camera, verdict=verdict.upper() if verdict else None, since=t_since, until=t_until,
                          class_name=defect),
            limit=limit,
        )
    except _user_errors() as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        return
    typer.echo(f"{'TIME':19} {'CAMERA':14} {'SEQ':>7} {'VERDICT':7} {'RULE':22} DEFECTS")
    for r in rows:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.acquired_at))
        typer.echo(f"{ts:19} {r.camera_id[:14]:14} {r.sequence:7d} {r.verdict:7} {r.rule[:22]:22} {r.classes}")


def _history_parts(engine: Any, part: Optional[str], verdict: Optional[str], since: Optional[float],
                   until: Optional[float], incomplete: bool, limit: int, as_json: bool) -> None:
    """``history --parts`` (a table of parts) and ``history --part ID`` (one part, frame by frame)."""
    from inspector.storage.history import get_part, query_parts

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    if part is not None:
        detail = get_part(engine, part)
        if detail is None:
            fail(f"--part: no part {part!r} in the database")
        p = detail.part
        if as_json:
            typer.echo(json.dumps({"part": p.__dict__, "frames": [f.__dict__ for f in detail.frames]}, indent=2,
                                  default=str))
            return
        typer.echo(f"part {p.part_id} ({p.line}) {when(p.triggered_at)}: {p.verdict} {p.reason}; "
                   f"verdict {p.verdict_ms:.0f} ms after the trigger (budget {p.budget_ms:g} ms)")
        for f in detail.frames:
            late = " LATE" if f.late else ""
            typer.echo(f"  {f.camera_id[:14]:14} {f.verdict:3} {f.rule[:28]:28} {f.classes}{late}")
        for cam in p.missing:
            typer.echo(f"  {cam[:14]:14} --  no image")
        return
    rows = query_parts(engine, verdict=verdict.upper() if verdict else None, since=since, until=until,
                       incomplete=True if incomplete else None, limit=limit)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        return
    typer.echo(f"{'TIME':19} {'PART':22} {'VERDICT':7} {'MS':>5} REASON")
    for r in rows:
        typer.echo(f"{when(r.triggered_at):19} {r.part_id[:22]:22} {r.verdict:7} {r.verdict_ms:5.0f} {r.reason}")


def _parse_time(value: Optional[str], field: str) -> Optional[float]:
    if value is None:
        return None
    import datetime as dt

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    v = value.strip()
    if v and v[-1] in units and v[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(v[:-1]) * units[v[-1]]
    try:
        return dt.datetime.fromisoformat(v).timestamp()
    except ValueError:
        raise ValueError(f"{field}: {value!r} is neither an ISO time nor an age like 30m/2h/7d") from None


# ---------------------------------------------------------------------------- dataset / train / export / eval
@dataset_app.command("synth")
def dataset_synth(
    out: Path = typer.Option(..., help="Output folder."),
    count: int = typer.Option(2000, min=1, help="Number of images."),
    seed: int = typer.Option(0, min=0, help="First seed (training seeds stay below 1,000,000)."),
    width: int = typer.Option(320, min=32, max=8192),
    height: int = typer.Option(320, min=32, max=8192),
    val_fraction: float = typer.Option(0.1, min=0.0, max=0.9),
    ok_share: float = typer.Option(0.35, min=0.0, max=1.0, help="Share of defect-free images."),
) -> None:
    """Render a labelled dataset (Ultralytics YOLO format) from the synthetic line."""
    from inspector.quality.dataset import export_dataset

    try:
        s = export_dataset(out, count, seed, width=width, height=height, val_fraction=val_fraction, ok_share=ok_share)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"{s.train_images} train + {s.val_images} val images, {s.boxes} boxes, seeds {s.seed_range[0]}..{s.seed_range[1]} -> {out / 'data.yaml'}")


@dataset_app.command("mine")
def dataset_mine(
    out: Path = typer.Option(..., help="Output folder."),
    model: str = typer.Option("defect-yolo11p-320", help="The model to improve (name or folder)."),
    count: int = typer.Option(20000, min=1, help="Frames to scan."),
    seed: int = typer.Option(100_000, min=0, help="First seed to scan (training seeds stay below 1,000,000)."),
    base: Optional[Path] = typer.Option(None, help="A dataset's data.yaml whose training images come first."),
    ok_share: float = typer.Option(0.6, min=0.0, max=1.0, help="Share of OK parts among the scanned frames."),
    negative_score: float = typer.Option(0.1, help="A detection off every defect from this score is a false call."),
    positive_score: float = typer.Option(0.35, help="A defect counts as found from this score."),
    backend: str = typer.Option("openvino", help="openvino | onnxruntime"),
) -> None:
    """Keep the frames the model gets wrong or nearly wrong (hard negatives and positives) as a dataset."""
    from inspector.quality.mining import mine_hard_examples

    errors: tuple[type[BaseException], ...] = (*_user_errors(), ValueError, OSError)
    try:
        s = mine_hard_examples(model, out, seed=seed, count=count, base_data=base, ok_share=ok_share,
                               negative_score=negative_score, positive_score=positive_score, backend=backend)
    except errors as exc:
        fail(str(exc))
    typer.echo(f"scanned {s.scanned} frames: kept {len(s.kept_seeds)} ({s.hard_negatives} with a false call, "
               f"{s.hard_positives} with a missed defect) -> {out / 'data.yaml'}")


@app.command()
def train(
    data: Path = typer.Option(..., help="Dataset data.yaml (YOLO format)."),
    model: str = typer.Option("", help="Architecture yaml or .pt to fine-tune (default: the shipped architecture)."),
    imgsz: int = typer.Option(320, min=32, max=4096),
    epochs: int = typer.Option(60, min=1),
    hours: Optional[float] = typer.Option(None, min=0.01, help="Wall-clock budget (overrides epochs)."),
    batch: int = typer.Option(32, min=1),
    device: Optional[str] = typer.Option(None, help="cpu, 0, 0,1 (default: GPU if present)."),
    project: Path = typer.Option(Path("runs"), help="Where runs are written."),
    name: str = typer.Option("defect"),
    seed: int = typer.Option(0),
    lr0: Optional[float] = typer.Option(None, min=1e-6, max=1.0, help="Initial learning rate (fine-tunes: ~5e-4)."),
    close_mosaic: Optional[int] = typer.Option(None, min=0, help="Last epochs without mosaic augmentation."),
) -> None:
    """Train a detector (needs the train extra: pip install -e '.\\[train]')."""  # \[: not rich markup
    from inspector.quality.training.train import DEFAULT_MODEL_CFG, TrainingUnavailable
    from inspector.quality.training.train import train as do_train

    try:
        r = do_train(data, model_cfg=model or DEFAULT_MODEL_CFG, imgsz=imgsz, epochs=epochs, hours=hours, batch=batch,
                     device=device, project=project, name=name, seed=seed,
                     overrides={k: v for k, v in {"lr0": lr0, "optimizer": "AdamW" if lr0 else None,
                                                  "close_mosaic": close_mosaic}.items() if v is not None})
    except (TrainingUnavailable, FileNotFoundError) as exc:
        fail(str(exc))
    typer.echo(f"best weights: {r.best}")


@app.command()
def export(
    weights: Path = typer.Option(..., help="Trained .pt (from inspector train)."),
    out: Path = typer.Option(..., help="Model folder to write (e.g. models/my-model)."),
    name: str = typer.Option("", help="Model name (default: the folder name)."),
    imgsz: int = typer.Option(320, min=32, max=4096),
    data: Optional[Path] = typer.Option(None, help="The dataset it was trained on (recorded in the card)."),
    tensorrt: bool = typer.Option(True, help="Also build a TensorRT engine where TensorRT is installed."),
) -> None:
    """Export ONNX + model card (and a TensorRT engine where TensorRT is installed)."""
    from inspector.quality.training.export import export_onnx, export_tensorrt

    training: dict[str, Any] = {"weights": str(weights)}
    if data is not None and (data.parent / "dataset.json").is_file():
        ds = json.loads((data.parent / "dataset.json").read_text())
        training.update({"dataset": str(data), "seed_first": ds["seed_first"], "seed_last": ds["seed_last"]})
    try:
        onnx_path = export_onnx(weights, out, name=name or out.name, imgsz=imgsz, training=training)
    except ImportError:
        fail("export needs the train extra: pip install -e '.[train]'")
    except FileNotFoundError as exc:
        fail(str(exc))
    typer.echo(f"ONNX: {onnx_path}")
    if tensorrt:
        eng = export_tensorrt(onnx_path)
        typer.echo(f"TensorRT engine: {eng}" if eng else "TensorRT engine: not built (TensorRT/CUDA not available here)")


@app.command()
def quantize(
    model: str = typer.Option("defect-yolo11p-320", help="Model name or folder."),
    calibration: int = typer.Option(300, min=1, max=999_999, help="Calibration frames (training seeds 0..N-1)."),
    preset: str = typer.Option("mixed", help="NNCF preset: mixed (asymmetric activations) or performance."),
    ranges: str = typer.Option("minmax", help="Activation ranges: minmax (all calibration saw) or nncf-default "
                                              "(NNCF's estimator, which clips outliers)."),
    eval_frames: int = typer.Option(2000, min=8, help="Held-out frames for the INT8 metrics and the gate."),
    accuracy_control: int = typer.Option(
        0, "--accuracy-control", min=0, max=100_000,
        help="With N > 0: put back in f32 what costs most FP32 boxes on N training frames after the "
             "calibration ones, until the gate's share (minutes)."),
    accuracy_target: float = typer.Option(
        0.98, "--accuracy-target", min=0.5, max=1.0,
        help="The share of FP32 boxes accuracy control aims for (above the gate's 0.98 leaves room for held-out frames)."),
) -> None:
    """INT8 OpenVINO IR by NNCF post-training quantization, its sha256s and held-out gate in the card
    (needs the quantize extra: pip install -e '.\\[quantize]')."""  # \[: not rich markup
    from inspector.quality.quantize import QuantizeUnavailable, quantize_model

    errors: tuple[type[BaseException], ...] = (*_user_errors(), QuantizeUnavailable, ValueError)
    try:
        r = quantize_model(model, calibration=calibration, preset=preset, ranges=ranges, eval_frames=eval_frames,
                           accuracy_control=accuracy_control, accuracy_target=accuracy_target, progress=typer.echo)
    except errors as exc:
        fail(str(exc))
    for name, m in (("int8", r.int8), ("f32", r.f32)):
        typer.echo(f"{name}: mAP50 {m['mAP50']:.4f}  mAP50-95 {m['mAP50_95']:.4f}  escape {m['escape_rate']:.2%}  "
                   f"false reject {m['false_reject_rate']:.2%}  {m['latency_ms_per_image']:.2f} ms/image")
    typer.echo(f"FP32 boxes found again by INT8 at IoU >= 0.9: {r.box_recall:.1%}; gate "
               f"{'passed' if r.gate_passed else 'NOT passed (auto will not choose int8)'}; card: {r.xml.parent / 'card.toml'}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Option("defect-yolo11p-320", help="Model name or folder."),
    count: int = typer.Option(2000, min=1, help="Held-out frames to render."),
    backend: str = typer.Option("openvino", help="openvino | onnxruntime"),
    width: int = typer.Option(320, min=32),
    height: int = typer.Option(320, min=32),
    threshold: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                              help="Verdict score threshold (default: the card's metrics.threshold)."),
    precision: str = typer.Option("auto", help="OpenVINO precision: auto, f32, bf16, f16, int8 (the INT8 model of the card)."),
    seed_base: Optional[int] = typer.Option(None, min=1_000_000, help="First held-out seed (default 1000000 for frames, "
                                            "3500000 for parts; e.g. 1500000 for a calibration set)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics here."),
    update_card: bool = typer.Option(False, help="Write the metrics and threshold into the model card "
                                                 "(an engineer logs in with --as; audited in --db)."),
    acting: Optional[str] = typer.Option(None, "--as", help="With --update-card: the engineer or admin who changes the card."),
    db: Optional[str] = typer.Option(None, help="With --update-card: the database whose audit trail records it."),
    faces: int = typer.Option(0, min=0, max=64, help="Evaluate COUNT parts of this many faces (a line's cameras, "
                                                      "one verdict per part) instead of COUNT frames."),
    class_threshold: Optional[list[str]] = typer.Option(
        None, "--class-threshold", help="With --faces: CLASS=SCORE, repeatable (a line's per-class thresholds)."),
) -> None:
    """Evaluate on held-out seeds through the runtime pipeline (not Ultralytics)."""
    if faces:
        if update_card:
            fail("--update-card: the card holds frame metrics; evaluate without --faces to update it")
        return _eval_parts(model, count, faces, backend, width, height, threshold, precision, seed_base, json_out,
                           _class_thresholds(class_threshold or []))
    if class_threshold:
        fail("--class-threshold: only with --faces (frame evaluation uses one threshold)")
    if update_card and not acting:
        fail("--update-card: a deployed card decides what every station passes; log in with --as ENGINEER")
    # log in before the long evaluation, not after it
    session = authenticated(db, acting, "model.update_card") if update_card else contextlib.nullcontext()
    with session as control:
        _eval_and_report(model, count, backend, width, height, threshold, precision, seed_base or 1_000_000, json_out,
                         control)


def _class_thresholds(specs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in specs:
        name, _, value = s.partition("=")
        try:
            score = float(value)
        except ValueError:
            fail(f"--class-threshold {s!r}: expected CLASS=SCORE")
        if not name or not 0.0 <= score <= 1.0:
            fail(f"--class-threshold {s!r}: expected CLASS=SCORE with SCORE in 0..1")
        out[name] = score
    return out


def _eval_parts(model: str, parts: int, faces: int, backend: str, width: int, height: int,
                threshold: Optional[float], precision: str, seed_base: Optional[int], json_out: Optional[Path],
                class_thresholds: dict[str, float]) -> None:
    """Part-level evaluation (`inspector.quality.part_eval`): print per-part and per-frame rates."""
    from inspector.pipeline.model_repo import load_card
    from inspector.quality.part_eval import LINE_EVAL_SEED_BASE, evaluate_parts

    try:
        if threshold is None:
            card_threshold = load_card(model, verify=False).threshold
            threshold = card_threshold if card_threshold is not None else DEFAULT_EVAL_THRESHOLD
        seed = seed_base or LINE_EVAL_SEED_BASE
        unknown = sorted(set(class_thresholds) - set(load_card(model, verify=False).classes))
        if unknown:
            fail(f"--class-threshold: {', '.join(unknown)} is not a class of {model}")
        per_class = "".join(f", {k} {v:g}" for k, v in class_thresholds.items())
        typer.echo(f"evaluating {model}: threshold {threshold:g}{per_class}, {parts} held-out parts of {faces} "
                   f"faces from seed {seed} ...")
        m = evaluate_parts(model, parts=parts, faces=faces, threshold=threshold, class_thresholds=class_thresholds,
                           backend=backend, width=width, height=height, precision=precision, seed_base=seed)
    except _user_errors() as exc:
        fail(str(exc))
    typer.echo(
        f"parts: escape rate {m['part_escape_rate']:.2%} ({m['part_escapes']} of {m['defective_parts']}), "
        f"false-reject rate {m['part_false_reject_rate']:.2%} ({m['part_false_rejects']} of {m['ok_parts']}); "
        f"frames: escape rate {m['frame_escape_rate']:.2%}, false-reject rate {m['frame_false_reject_rate']:.2%} "
        f"over {parts * faces} frames"
    )
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(m, indent=2))
        except OSError as exc:
            fail(f"--json: cannot write {json_out}: {exc.strerror}")


def _eval_and_report(model: str, count: int, backend: str, width: int, height: int, threshold: Optional[float],
                     precision: str, seed_base: int, json_out: Optional[Path], control: Any) -> None:
    """Evaluate, print the metrics and, with a logged-in ``control``, write them into the card."""
    from inspector.quality.evaluation import evaluate
    from inspector.pipeline.model_repo import load_card

    try:
        if precision not in ("auto", "f32", "bf16", "f16", "int8"):
            fail(f"--precision: {precision!r} is not one of auto, f32, bf16, f16, int8")
        if threshold is None:
            card_threshold = load_card(model, verify=False).threshold
            threshold = card_threshold if card_threshold is not None else DEFAULT_EVAL_THRESHOLD
        typer.echo(f"evaluating {model}: threshold {threshold:g}, {count} held-out frames from seed {seed_base} "
                   f"(seeds {seed_base}..{seed_base + count - 1}), batch {EVAL_BATCH} ...")
        m = evaluate(model, count=count, backend=backend, width=width, height=height, threshold=threshold,
                     precision=precision, seed_base=seed_base, batch=EVAL_BATCH)
    except _user_errors() as exc:
        fail(str(exc))
    typer.echo(
        f"mAP50 {m['mAP50']:.4f}  mAP50-95 {m['mAP50_95']:.4f}  "
        f"escape rate {m['escape_rate']:.2%} ({m['escapes']} of {m['defective_parts']} defective)  "
        f"false-reject rate {m['false_reject_rate']:.2%} ({m['false_rejects']} of {m['ok_parts']} OK)  latency {m['latency_ms_per_image']:.2f} ms/image ({m['backend']})"
    )
    for c, ap in m["per_class_AP50"].items():
        typer.echo(f"  {c:14} AP50 {ap:.4f}")
    if json_out is not None:
        json_out.write_text(json.dumps(m, indent=2))
    if control is not None:
        try:
            path = control.update_model_card(model, m)
        except _user_errors() as exc:
            fail(str(exc))
        typer.echo(f"card updated: {path} (threshold {m['threshold']:g}; audited)")


@app.command()
def bench(
    station: Optional[str] = typer.Option(None, help="Take model and backend from this station (default line-demo)."),
    config: Optional[Path] = typer.Option(None, help="Station config TOML."),
    backend: Optional[str] = typer.Option(None, help="openvino | onnxruntime (default: the station's)."),
    cameras: str = typer.Option("1,4,8", help="Camera counts for the pipeline runs."),
    seconds: float = typer.Option(12.0, min=1.0, help="Measured seconds per point."),
    threads: int = typer.Option(0, min=0, help="Inference threads (0: runtime default)."),
    in_flight: Optional[int] = typer.Option(None, "--in-flight", min=1, max=8,
                                            help="Batches in flight per worker (default: the station's)."),
    streams: Optional[str] = typer.Option(None, help="OpenVINO streams: auto or 0..64 (default: the station's)."),
    precision: Optional[str] = typer.Option(None, help="auto | f32 | bf16 | f16 | int8 (default: the station's)."),
    db: bool = typer.Option(True, help="Also run the database benchmark."),
    ultralytics: bool = typer.Option(True, help="Also run Ultralytics predict where installed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all numbers here."),
    max_isa: Optional[str] = typer.Option(
        None, "--max-isa", help="Run OpenVINO with a lesser CPU's kernels (avx2, avx2-vnni, avx512, avx512-vnni): "
                                "ONEDNN_MAX_CPU_ISA; the figures go to a table of their own."),
) -> None:
    """Pure backend vs pipeline vs Ultralytics, latency, database: side by side, one run."""
    from inspector.bench import format_table, run_bench

    if max_isa is not None:
        _limit_isa(max_isa)

    try:
        counts = sorted({int(c) for c in cameras.split(",") if c.strip()})
    except ValueError:
        fail(f"--cameras: expected numbers like 1,4,8, got {cameras!r}")
    if not counts or min(counts) < 1 or max(counts) > 64:
        fail("--cameras: counts must lie in 1..64")
    if backend is not None and backend not in ("openvino", "onnxruntime"):
        fail(f"--backend: {backend!r} cannot be benchmarked here (openvino, onnxruntime)")
    from inspector.config import ModelConfig

    precisions = get_args(ModelConfig.model_fields["precision"].annotation)  # the config's own choices
    if precision is not None and precision not in precisions:
        fail(f"--precision: {precision!r} is not one of {', '.join(precisions)}")
    from inspector.config import parse_streams

    try:
        streams_arg = None if streams is None else parse_streams(streams)
    except ValueError as exc:
        fail(f"--streams: {exc}, got {streams!r}")
    try:
        cfg = _load(station, config)
        res = run_bench(model=cfg.model.name, backend=backend or cfg.model.backend, cameras=counts, threads=threads,
                        seconds=seconds, db=db, ultralytics=ultralytics,
                        in_flight=in_flight or cfg.scheduler.in_flight,
                        streams=cfg.model.streams if streams_arg is None else streams_arg,
                        precision=precision or cfg.model.precision)
    except _user_errors() as exc:
        fail(str(exc))
    typer.echo(format_table(res))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2))


def _limit_isa(name: str) -> None:
    """Set ``ONEDNN_MAX_CPU_ISA`` for ``--max-isa NAME`` before OpenVINO loads (it reads it once)."""
    from inspector.pipeline.backends import isa

    if name not in isa.LIMITS:
        fail(f"--max-isa: {name!r} is not one of {', '.join(isa.LIMITS)}")
    want = isa.LIMITS[name][0]
    if "openvino" in sys.modules and isa.active_limit() != want:
        fail(f"--max-isa: OpenVINO is already loaded in this process; set {isa.ENV}={want} in the environment instead")
    os.environ[isa.ENV] = want


def run_cli(argv: Optional[list[str]] = None) -> NoReturn:
    """Run the command line and exit; a bad option or argument is one line and exit 2.

    Typer would draw a five-line box for a usage error; a station's log (and an
    integrator's script) wants the one line that names the option.
    """
    try:  # typer >= 0.20 carries its own copy of click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions as click  # type: ignore[no-redef]

    try:
        rc = app(args=argv, prog_name="inspector", standalone_mode=False)
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


if __name__ == "__main__":  # pragma: no cover
    main()
