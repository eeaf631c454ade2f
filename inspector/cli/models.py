"""``inspector train|export|quantize|eval``: a detector from training to a gated, evaluated model folder."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from inspector.cli.common import fail, user_errors
from inspector.cli.login import authenticated

app = typer.Typer()
#: ``inspector model ...``: what is done to a model folder as a whole (the promotion gate, calibration).
model_app = typer.Typer(name="model", no_args_is_help=True, help="Model folders: the promotion gate, per-class threshold calibration.")
app.add_typer(model_app)

if TYPE_CHECKING:
    from inspector.pipeline.verdict import VerdictRules
#: `inspector eval`'s frames per inference call (printed with the results).
EVAL_BATCH = 8



@app.command()
def train(
    data: Path = typer.Option(..., help="Dataset data.yaml (YOLO format)."),
    model: str = typer.Option("", help="Architecture yaml, a .pt to fine-tune, or a model folder (e.g. "
                                       "models/defect-yolo11p-320) to fine-tune from its ONNX (default: the "
                                       "shipped architecture, from scratch)."),
    imgsz: int = typer.Option(320, min=32, max=4096),
    epochs: int = typer.Option(60, min=1),
    hours: float | None = typer.Option(None, min=0.01, help="Wall-clock budget (overrides epochs)."),
    batch: int = typer.Option(32, min=1),
    device: str | None = typer.Option(None, help="cpu, 0, 0,1 (default: GPU if present)."),
    project: Path = typer.Option(Path("runs"), help="Where runs are written."),
    name: str = typer.Option("defect"),
    seed: int = typer.Option(0),
    lr0: float | None = typer.Option(None, min=1e-6, max=1.0, help="Initial learning rate (fine-tunes: ~5e-4)."),
    close_mosaic: int | None = typer.Option(None, min=0, help="Last epochs without mosaic augmentation."),
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
    data: Path | None = typer.Option(None, help="The dataset it was trained on (recorded in the card)."),
    tensorrt: bool = typer.Option(True, help="Also build a TensorRT engine where TensorRT is installed."),
) -> None:
    """Export ONNX + model card (and a TensorRT engine where TensorRT is installed)."""
    from inspector.quality.training.export import export_onnx, export_tensorrt

    training: dict[str, Any] = {"weights": str(weights)}
    if data is not None and (data.parent / "dataset.json").is_file():
        ds = json.loads((data.parent / "dataset.json").read_text())
        training["dataset"] = str(data)
        # rendered datasets name their seeds; imported ones (inspector dataset import) their source
        training.update({k: ds[k] for k in ("seed_first", "seed_last", "source", "generator") if k in ds})
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

    errors: tuple[type[BaseException], ...] = (*user_errors(), QuantizeUnavailable, ValueError)
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
    threshold: float | None = typer.Option(None, min=0.0, max=1.0,
                                              help="Verdict score threshold (default: the card's metrics.threshold)."),
    precision: str = typer.Option("auto", help="OpenVINO precision: auto, f32, bf16, f16, int8 (the INT8 model of the card)."),
    seed_base: int | None = typer.Option(None, min=1_000_000, help="First held-out seed (default 1000000 for frames, "
                                            "3500000 for parts; e.g. 1500000 for a calibration set)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics here."),
    update_card: bool = typer.Option(False, help="Write the metrics and threshold into the model card "
                                                 "(an engineer logs in with --as; audited in --db)."),
    acting: str | None = typer.Option(None, "--as", help="With --update-card: the engineer or admin who changes the card."),
    db: str | None = typer.Option(None, help="With --update-card: the database whose audit trail records it."),
    faces: int = typer.Option(0, min=0, max=64, help="Evaluate COUNT parts of this many faces (a line's cameras, "
                                                      "one verdict per part) instead of COUNT frames."),
    class_threshold: list[str] | None = typer.Option(
        None, "--class-threshold", help="CLASS=SCORE, repeatable: replaces the card's class threshold of CLASS "
                                        "(default: the card's metrics.class_thresholds)."),
    data: Path | None = typer.Option(None, help="Evaluate on your own labelled images: a dataset's data.yaml "
                                                "(e.g. from inspector dataset import) instead of rendered frames."),
    split: str = typer.Option("test", help="With --data: the split to evaluate on."),
) -> None:
    """Evaluate on held-out seeds, or on your own images (--data), through the runtime pipeline (not Ultralytics),
    at the card's rules (its threshold and class thresholds) unless --threshold / --class-threshold replace them."""
    if data is not None:
        for given, option in ((faces, "--faces"), (update_card, "--update-card"), (seed_base is not None, "--seed-base")):
            if given:
                fail(f"{option}: not with --data (the dataset's images are evaluated)")
    elif faces and update_card:
        fail("--update-card: the card holds frame metrics; evaluate without --faces to update it")
    elif class_threshold and update_card:
        fail("--class-threshold: not with --update-card (the card's metrics are taken at its own class thresholds; "
             "inspector model calibrate --update-card chooses them)")
    rules = _eval_rules(model, threshold, _class_thresholds(class_threshold or []))
    if data is not None:
        return _eval_data(model, data, split, backend, rules, precision, json_out)
    if faces:
        return _eval_parts(model, count, faces, backend, width, height, rules, precision, seed_base, json_out)
    if update_card and not acting:
        fail("--update-card: a deployed card decides what every station passes; log in with --as ENGINEER")
    # log in before the long evaluation, not after it
    session = authenticated(db, acting, "model.update_card") if update_card else contextlib.nullcontext()
    with session as control:
        _eval_and_report(model, count, backend, width, height, rules, precision, seed_base or 1_000_000, json_out,
                         control)


def _eval_rules(model: str, threshold: float | None, class_thresholds: dict[str, float]) -> VerdictRules:
    """The card's rules (`evaluation.card_rules`), ``--threshold`` and ``--class-threshold`` replacing its own."""
    from inspector.pipeline.model_repo import load_card
    from inspector.quality.evaluation import card_rules

    try:
        card = load_card(model, verify=False)
    except user_errors() as exc:
        fail(str(exc))
    unknown = sorted(set(class_thresholds) - set(card.classes))
    if unknown:
        fail(f"--class-threshold: {', '.join(unknown)} is not a class of {model} ({', '.join(card.classes)})")
    return card_rules(card, threshold, class_thresholds)


def _rules_text(rules: VerdictRules) -> str:
    """``threshold 0.25, scratch 0.45, dent 0.45``: what an evaluation judges at."""
    return _thresholds_text(rules.default_threshold, rules.class_thresholds)


def _thresholds_text(threshold: float, class_thresholds: Mapping[str, float]) -> str:
    """``threshold 0.25, scratch 0.45, dent 0.45`` (the rules an evaluation or a gate side was judged at)."""
    return f"threshold {threshold:g}" + "".join(f", {k} {v:g}" for k, v in class_thresholds.items())


def _write_json(json_out: Path | None, metrics: dict[str, Any]) -> None:
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(metrics, indent=2))
        except OSError as exc:
            fail(f"--json: cannot write {json_out}: {exc.strerror}")


def _eval_data(model: str, data: Path, split: str, backend: str, rules: VerdictRules, precision: str,
               json_out: Path | None) -> None:
    """Evaluate on a dataset's split (`inspector.quality.dataset_eval`) and print image and part figures."""
    from inspector.quality.data_yaml import DatasetError
    from inspector.quality.dataset_eval import evaluate_dataset

    errors: tuple[type[BaseException], ...] = (*user_errors(), DatasetError)
    try:
        typer.echo(f"evaluating {model}: {_rules_text(rules)}, the {split} split of {data}, batch {EVAL_BATCH} ...")
        m = evaluate_dataset(model, data, split=split, threshold=rules.default_threshold,
                             class_thresholds=rules.class_thresholds, backend=backend, precision=precision,
                             batch=EVAL_BATCH)
    except errors as exc:
        fail(str(exc))
    typer.echo(f"mAP50 {m['mAP50']:.4f}  mAP50-95 {m['mAP50_95']:.4f}  over {m['images']} images")
    typer.echo(f"images: escape rate {m['escape_rate']:.2%} ({m['escapes']} of {m['defective_images']} defective), "
               f"false-reject rate {m['false_reject_rate']:.2%} ({m['false_rejects']} of {m['ok_images']} OK)")
    if "parts" in m:
        typer.echo(f"parts: escape rate {m['part_escape_rate']:.2%} ({m['part_escapes']} of {m['defective_parts']} "
                   f"defective), false-reject rate {m['part_false_reject_rate']:.2%} ({m['part_false_rejects']} of "
                   f"{m['ok_parts']} OK)")
    for c, ap in m["per_class_AP50"].items():
        typer.echo(f"  {c:14} AP50 {ap:.4f}  AP50-95 {m['per_class_AP50_95'][c]:.4f}  "
                   f"({m['per_class_instances'][c]} boxes)")
    for name in m["escaped_images"]:
        typer.echo(f"  escape: {name}")
    for name in m["false_rejected_images"]:
        typer.echo(f"  false reject: {name}")
    _write_json(json_out, m)


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
                rules: VerdictRules, precision: str, seed_base: int | None, json_out: Path | None) -> None:
    """Part-level evaluation (`inspector.quality.part_eval`): print per-part and per-frame rates."""
    from inspector.quality.part_eval import LINE_EVAL_SEED_BASE, evaluate_parts

    try:
        seed = seed_base or LINE_EVAL_SEED_BASE
        typer.echo(f"evaluating {model}: {_rules_text(rules)}, {parts} held-out parts of {faces} "
                   f"faces from seed {seed} ...")
        m = evaluate_parts(model, parts=parts, faces=faces, threshold=rules.default_threshold,
                           class_thresholds=rules.class_thresholds, backend=backend, width=width, height=height,
                           precision=precision, seed_base=seed)
    except user_errors() as exc:
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


def _eval_and_report(model: str, count: int, backend: str, width: int, height: int, rules: VerdictRules,
                     precision: str, seed_base: int, json_out: Path | None, control: Any) -> None:
    """Evaluate, print the metrics and, with a logged-in ``control``, write them into the card."""
    from inspector.quality.evaluation import evaluate

    try:
        if precision not in ("auto", "f32", "bf16", "f16", "int8"):
            fail(f"--precision: {precision!r} is not one of auto, f32, bf16, f16, int8")
        typer.echo(f"evaluating {model}: {_rules_text(rules)}, {count} held-out frames from seed {seed_base} "
                   f"(seeds {seed_base}..{seed_base + count - 1}), batch {EVAL_BATCH} ...")
        m = evaluate(model, count=count, backend=backend, width=width, height=height,
                     threshold=rules.default_threshold, class_thresholds=rules.class_thresholds,
                     precision=precision, seed_base=seed_base, batch=EVAL_BATCH)
    except user_errors() as exc:
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
        except user_errors() as exc:
            fail(str(exc))
        typer.echo(f"card updated: {path} (threshold {m['threshold']:g}; audited)")


@model_app.command("gate")
def gate(
    candidate: str = typer.Option(..., help="The model that would replace the current one (name or folder)."),
    current: str = typer.Option(..., help="The model in use (name or folder)."),
    data: Path = typer.Option(..., help="Held-out labelled images: a data.yaml (e.g. from inspector dataset import)."),
    split: str = typer.Option("test", help="The split both models are compared on."),
    max_escape_increase: float = typer.Option(0.0, min=0.0, max=1.0,
                                              help="How much higher the escape rate may be (0.002: 0.2 points)."),
    max_false_reject_increase: float = typer.Option(0.0, min=0.0, max=1.0,
                                                    help="How much higher the false-reject rate may be."),
    max_map_drop: float = typer.Option(0.0, min=0.0, max=1.0, help="How much lower mAP50 may be."),
    backend: str = typer.Option("openvino", help="openvino | onnxruntime"),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the gate's table here."),
) -> None:
    """Compare a candidate with the current model on the same held-out images and write the verdict into the
    candidate's card (\\[gate]); exit 1 when it fails. A recipe selects a detector only with a passing gate."""  # \[: not rich markup
    from inspector.quality.data_yaml import DatasetError
    from inspector.quality.gate import GateLimits, run_gate

    limits = GateLimits(max_escape_increase, max_false_reject_increase, max_map_drop)
    errors: tuple[type[BaseException], ...] = (*user_errors(), DatasetError)
    typer.echo(f"gate: {candidate} against {current} on the {split} split of {data} ...")
    try:
        table, card_path = run_gate(candidate, current, data, split=split, limits=limits, backend=backend,
                                    batch=EVAL_BATCH)
    except errors as exc:
        fail(str(exc))
    for who in ("candidate", "current"):
        f = table[who]
        part = (f", parts: escape {f['part_escape_rate']:.2%}, false reject {f['part_false_reject_rate']:.2%}"
                if "part_escape_rate" in f else "")
        rules = _thresholds_text(f["threshold"], f.get("class_thresholds", {}))
        typer.echo(f"  {who:9} {rules}: mAP50 {f['mAP50']:.4f}, escape {f['escape_rate']:.2%}, "
                   f"false reject {f['false_reject_rate']:.2%}{part}")
    for reason in table["reasons"]:
        typer.echo(f"  failed: {reason}")
    _write_json(json_out, table)
    typer.echo(f"gate {'passed' if table['passed'] else 'FAILED'} over {table['images']} images "
               f"(data sha256 {table['data_sha256'][:12]}...): {card_path}")
    if not table["passed"]:
        raise typer.Exit(1)


@model_app.command("calibrate")
def calibrate(
    model: str = typer.Option(..., help="Model name or folder."),
    faces: int = typer.Option(8, min=1, max=64, help="Faces (the line's cameras) of each part."),
    count: int = typer.Option(3000, min=1, max=1_000_000, help="Validation parts to render."),
    seed_base: int = typer.Option(3_900_000, min=1_000_000,
                                  help="First part's seed: validation parts, never a held-out set (3500000.., "
                                       "3700000.., 3800000..)."),
    precision: str = typer.Option("auto", help="OpenVINO precision: auto, f32, bf16, int8 (the card's INT8 model)."),
    step: float = typer.Option(0.05, help="Grid step of the thresholds tried (0.15..0.80)."),
    backend: str = typer.Option("openvino", help="openvino | onnxruntime"),
    scores: Path | None = typer.Option(None, help="Save each part's best score per class here (JSON), to redo a "
                                                  "sweep without running the model."),
    from_scores: Path | None = typer.Option(None, help="Choose from the parts a --scores file holds (scored by "
                                                       "this model's detector) instead of rendering parts."),
    update_card: bool = typer.Option(False, help="Write \\[metrics] class_thresholds and class_threshold_calibration "
                                                 "into the card (an engineer logs in with --as; audited in --db)."),
    acting: str | None = typer.Option(None, "--as", help="With --update-card: the engineer or admin who changes the card."),
    db: str | None = typer.Option(None, help="With --update-card: the database whose audit trail records it."),
) -> None:
    """Choose per-class thresholds on validation line parts that minimise max(part escape / 0.5%, part false
    reject / 1%), and with --update-card keep them in the model's card: they travel with the model."""
    from inspector.pipeline.model_repo import load_card
    from inspector.quality.calibrate import CalibrationError, check_grid, check_seeds, read_scores, threshold_grid
    from inspector.quality.evaluation import card_rules

    if precision not in ("auto", "f32", "bf16", "int8"):
        fail(f"--precision: {precision!r} is not one of auto, f32, bf16, int8")
    errors: tuple[type[BaseException], ...] = (*user_errors(), CalibrationError)
    saved = None
    try:
        grid = threshold_grid(step)
        card = load_card(model, verify=False)
        check_grid(grid, len(card.classes))
        if from_scores is not None:
            saved, faces = read_scores(from_scores, card)
            count, seed_base = len(saved.defective), saved.seed_base
        check_seeds(seed_base, count)
    except errors as exc:
        fail(str(exc))
    if scores is not None and from_scores is not None:
        fail("--scores: not with --from-scores (the parts are not scored again)")
    if scores is not None and not scores.parent.is_dir():
        fail(f"--scores: {scores.parent} is not a folder")
    if update_card and not acting:
        fail("--update-card: a deployed card decides what every station passes; log in with --as ENGINEER")
    default = card_rules(card).default_threshold  # the card's threshold, as eval and the gate judge at
    # log in before the long rendering, not after it
    session = authenticated(db, acting, "model.update_card") if update_card else contextlib.nullcontext()
    with session as control:
        _calibrate(model, faces, count, seed_base, precision, backend, grid, default, scores, saved, control)


def _calibrate(model: str, faces: int, count: int, seed_base: int, precision: str, backend: str, grid: Any,
               default: float, scores_out: Path | None, saved: Any, control: Any) -> None:
    """Render and score the parts (unless ``saved`` holds them), choose the thresholds, save and write what was
    asked; the summary last."""
    from inspector.pipeline.model_repo import load_card
    from inspector.quality.calibrate import (
        CalibrationError,
        calibration_note,
        choose_class_thresholds,
        scores_document,
        write_scores,
    )
    from inspector.quality.part_eval import score_parts

    errors: tuple[type[BaseException], ...] = (*user_errors(), CalibrationError)
    every = max(1, count // 20)

    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            typer.echo(f"  {done} of {total} parts", err=True)

    source = "from the saved scores" if saved is not None else f"precision {precision}"
    typer.echo(f"calibrating {model}: {count} parts of {faces} faces (seeds {seed_base}..{seed_base + count - 1}), "
               f"{source}, {len(grid)} thresholds {grid[0]:g}..{grid[-1]:g} for each class ...", err=True)
    try:
        card = load_card(model, int8=precision == "int8" and saved is None)
        s = saved or score_parts(model, parts=count, faces=faces, backend=backend, seed_base=seed_base,
                                 precision=precision, progress=progress)
        c = choose_class_thresholds(s.scores, s.defective, s.classes, default, grid)
        if scores_out is not None and saved is None:
            write_scores(scores_out, scores_document(s, card, precision))
            typer.echo(f"scores: {scores_out}", err=True)
        if control is not None:
            asked = "saved scores" if saved is not None else precision
            ran = s.precision if s.precision == asked else f"{s.precision} ({asked})"
            note = calibration_note(c, seeds=(seed_base, seed_base + count - 1), faces=faces, precision=ran,
                                    grid=grid, default=default)
            path = control.set_model_class_thresholds(model, c.class_thresholds, note)
            typer.echo(f"card updated: {path} (audited)", err=True)
    except errors as exc:
        fail(str(exc))
    typer.echo(c.summary())
