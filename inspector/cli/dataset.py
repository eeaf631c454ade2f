"""``inspector dataset synth|mine|import|collect``: labelled datasets rendered from the synthetic line, imported,
or collected from a running station's cameras."""

from __future__ import annotations

from pathlib import Path

import typer

from inspector.cli.common import fail, user_errors

app = typer.Typer(name="dataset", no_args_is_help=True, help="Datasets: rendered from the synthetic line, mined, "
                  "imported from YOLO or COCO labels, or collected from a station's cameras.")


@app.command("synth")
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


@app.command("mine")
def dataset_mine(
    out: Path = typer.Option(..., help="Output folder."),
    model: str = typer.Option("defect-yolo11p-320", help="The model to improve (name or folder)."),
    count: int = typer.Option(20000, min=1, help="Frames to scan."),
    seed: int = typer.Option(100_000, min=0, help="First seed to scan (training seeds stay below 1,000,000)."),
    base: Path | None = typer.Option(None, help="A dataset's data.yaml whose training images come first."),
    ok_share: float = typer.Option(0.6, min=0.0, max=1.0, help="Share of OK parts among the scanned frames."),
    negative_score: float = typer.Option(0.1, help="A detection off every defect from this score is a false call."),
    positive_score: float = typer.Option(0.35, help="A defect counts as found from this score."),
    backend: str = typer.Option("openvino", help="openvino | onnxruntime"),
    faces: int = typer.Option(0, min=0, max=64, help="Scan COUNT line parts of this many faces (as line-demo's "
                                                      "cameras see them; part seeds below 15625) instead of frames."),
    defective_faces_only: bool = typer.Option(False, "--defective-faces-only",
                                              help="With --faces: scan only the faces that carry a defect (finds "
                                                   "missed defects for a fraction of the time)."),
) -> None:
    """Keep the frames the model gets wrong or nearly wrong (hard negatives and positives) as a dataset."""
    from inspector.quality.mining import mine_hard_examples

    errors: tuple[type[BaseException], ...] = (*user_errors(), ValueError, OSError)
    try:
        s = mine_hard_examples(model, out, seed=seed, count=count, base_data=base, ok_share=ok_share,
                               negative_score=negative_score, positive_score=positive_score, backend=backend,
                               faces=faces, defective_faces_only=defective_faces_only)
    except errors as exc:
        fail(str(exc))
    typer.echo(f"scanned {s.scanned} {'parts' if faces else 'frames'}: kept {len(s.kept_seeds)} ({s.hard_negatives} with a false call, "
               f"{s.hard_positives} with a missed defect) -> {out / 'data.yaml'}")


@app.command("import")
def dataset_import(
    fmt: str = typer.Option(..., "--format", help="yolo (Ultralytics txt: data.yaml or images/ + labels/) or coco "
                                                  "(a COCO JSON, as CVAT and Label Studio export)."),
    src: Path = typer.Argument(..., help="The source: a data.yaml, a COCO .json, or a folder holding one."),
    out: Path = typer.Option(..., help="The dataset folder to write (new or empty)."),
    split: str = typer.Option("0.8,0.1,0.1", help="Train, val and test shares (a part's images stay together)."),
    seed: int = typer.Option(0, min=0, help="Draws the split: the same seed gives the same split."),
    model: str = typer.Option("defect-yolo11p-320", help="The model whose classes the labels map onto (by name)."),
    classes: str | None = typer.Option(None, help="The dataset's classes in order, comma-separated "
                                                  "(instead of the model's)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary here "
                                                              "(it is always in OUT/dataset.json)."),
) -> None:
    """Import YOLO or COCO labels into a dataset folder with a train/val/test split and a summary."""
    import json

    from inspector.pipeline.model_repo import load_card
    from inspector.quality.data_yaml import DatasetError
    from inspector.quality.dataset_import import import_dataset, parse_split

    errors: tuple[type[BaseException], ...] = (*user_errors(), DatasetError, OSError)
    try:
        target = (tuple(c.strip() for c in classes.split(",")) if classes is not None
                  else load_card(model, verify=False).classes)
        if not target or any(not c for c in target) or len(set(target)) != len(target):
            fail(f"--classes {classes!r}: expected unique, non-empty names separated by commas")
        s = import_dataset(fmt, src, out, target, split=parse_split(split), seed=seed)
        if json_out is not None:
            json_out.write_text(json.dumps(s.as_dict(), indent=2) + "\n")
    except errors as exc:
        fail(str(exc))
    typer.echo(f"imported {sum(s.images.values())} images ({', '.join(f'{n} {k}' for k, n in s.images.items())}; "
               f"{sum(s.parts.values())} parts) -> {out / 'data.yaml'}")
    typer.echo("boxes per class: " + ", ".join(f"{k} {n}" for k, n in s.boxes_per_class.items()))
    typer.echo("image sizes: " + ", ".join(f"{k} ({n})" for k, n in s.image_sizes.items()))


@app.command("collect")
def dataset_collect(
    out: Path = typer.Option(..., help="The dataset folder to write (new or empty)."),
    parts: int = typer.Option(..., min=1, help="How many parts to collect (free-running cameras: frames)."),
    station: str | None = typer.Option(None, help="Built-in station (line-demo: the default, demo, viky-demo)."),
    config: Path | None = typer.Option(None, help="Station config TOML."),
    cameras: str | None = typer.Option(None, help="Cameras whose images to keep, comma-separated (default: all)."),
    timeout: float = typer.Option(600.0, min=0.1, help="Stop after this many seconds even if fewer parts came."),
    image_format: str = typer.Option("png", "--image-format", help="png (lossless) or jpg."),
    db: str | None = typer.Option(None, help="Database URL for the inspections meanwhile ('none': keep none)."),
    backend: str | None = typer.Option(None, help="openvino | onnxruntime | tensorrt"),
    no_archive: bool = typer.Option(False, "--no-archive", help="Do not save NG images meanwhile."),
) -> None:
    """Run the station and save the next N parts' images of chosen cameras into a dataset folder to label.

    Inspection goes on as usual (verdicts, database, PLC); the images go to OUT/images with empty label
    files, classes.txt and parts.csv: label them, then bring them back with `inspector dataset import
    --format yolo OUT`.
    """
    from inspector.cli.common import load_station_config
    from inspector.pipeline.model_repo import load_card
    from inspector.quality.collect import DatasetCollector
    from inspector.station import Station

    errors: tuple[type[BaseException], ...] = (*user_errors(), ValueError, OSError)
    try:
        cfg = load_station_config(station, config)
        known = [c.id for c in cfg.cameras]
        chosen = [c.strip() for c in cameras.split(",") if c.strip()] if cameras is not None else known
        unknown = [c for c in chosen if c not in known]
        if unknown or not chosen:
            fail(f"--cameras: no camera {unknown[0] if unknown else cameras!r} in station {cfg.name} "
                 f"({', '.join(known)})")
        collector = DatasetCollector(out, chosen, parts, classes=load_card(cfg.model.name, verify=False).classes,
                                     image_format=image_format)
        st = Station(cfg, db_url=db, backend=backend, archive=not no_archive)
    except errors as exc:
        fail(str(exc))
    try:
        st.fan_out.add_frame_sink(collector)  # before start(): the fan-out's sinks start with it
        st.start()
        typer.echo(f"collecting {parts} parts of {', '.join(chosen)} from {cfg.name} into {out} ...", err=True)
        finished = collector.wait(timeout)
    except errors as exc:
        st.stop()
        fail(str(exc))
    except KeyboardInterrupt:
        finished = False
    st.stop()
    s = collector.summary()
    typer.echo(f"collected {s.images} images of {s.parts} parts -> {out} (parts.csv, classes.txt, empty labels)")
    if s.incomplete or s.skipped:
        typer.echo(f"{len(s.incomplete)} parts lack an image ({s.skipped} frames skipped: the queue was full)"
                   + ("" if finished else f"; stopped after {timeout:g} s"))
    if not finished or not s.parts:
        raise typer.Exit(1)
