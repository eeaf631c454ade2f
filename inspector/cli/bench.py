"""``inspector bench``: pure backend, pipeline, Ultralytics and database figures side by side."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import get_args

import typer

from inspector.cli.common import fail, load_station_config, user_errors

app = typer.Typer()


@app.command()
def bench(
    station: str | None = typer.Option(None, help="Take model and backend from this station (default line-demo)."),
    config: Path | None = typer.Option(None, help="Station config TOML."),
    backend: str | None = typer.Option(None, help="openvino | onnxruntime (default: the station's)."),
    cameras: str = typer.Option("1,4,8", help="Camera counts for the pipeline runs."),
    seconds: float = typer.Option(12.0, min=1.0, help="Measured seconds per point."),
    threads: int = typer.Option(0, min=0, help="Inference threads (0: runtime default)."),
    in_flight: int | None = typer.Option(None, "--in-flight", min=1, max=8,
                                            help="Batches in flight per worker (default: the station's)."),
    streams: str | None = typer.Option(None, help="OpenVINO streams: auto or 0..64 (default: the station's)."),
    precision: str | None = typer.Option(None, help="auto | f32 | bf16 | f16 | int8 (default: the station's)."),
    db: bool = typer.Option(True, help="Also run the database benchmark."),
    ultralytics: bool = typer.Option(True, help="Also run Ultralytics predict where installed."),
    anomaly: str = typer.Option("none", help="Also bench this anomaly model beside the detector (ms per frame at "
                                "batch 8, the demo station with both, teach time), e.g. anomaly-plate-320."),
    anomaly_teach: int = typer.Option(200, "--anomaly-teach", min=0, help="Good images the teach time is taken "
                                      "on (0: not timed)."),
    anomaly_images: Path | None = typer.Option(None, "--anomaly-images", help="Time the anomaly model on this "
                                               "folder of the product's own images (the first 8) instead of the "
                                               "detector's bench frames: an aligned part's model on its own parts."),
    json_out: Path | None = typer.Option(None, "--json", help="Write all numbers here."),
    max_isa: str | None = typer.Option(
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
    if anomaly_images is not None and anomaly == "none":
        fail("--anomaly-images: the anomaly model's figures need --anomaly MODEL")
    if anomaly_images is not None:  # a folder without images, or one the bench cannot read: one line now, not
        from inspector.anomaly.images import ImageError, find_images, read_image  # after the detector's runs

        try:
            for path in find_images([anomaly_images])[:8]:  # the batch the bench reads (`ms_per_frame`)
                read_image(path)
        except ImageError as exc:
            fail(f"--anomaly-images: {exc}")
    try:
        cfg = load_station_config(station, config)
        if anomaly != "none":  # a wrong name or a corrupt model: one line now, not after the detector's runs
            from inspector.anomaly.model import load_anomaly_model

            load_anomaly_model(anomaly)
        res = run_bench(model=cfg.model.name, backend=backend or cfg.model.backend, cameras=counts, threads=threads,
                        seconds=seconds, db=db, ultralytics=ultralytics,
                        in_flight=in_flight or cfg.scheduler.in_flight,
                        streams=cfg.model.streams if streams_arg is None else streams_arg,
                        precision=precision or cfg.model.precision,
                        anomaly=None if anomaly == "none" else anomaly, anomaly_teach=anomaly_teach,
                        anomaly_images=anomaly_images)
    except user_errors() as exc:
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
