"""``inspector anomaly teach|score|eval|synth``: good-only (anomaly) models from the command line.

Progress goes to stderr; the last line on stdout is a summary. Bad input (a folder without images, an
unreadable or truncated image, a model whose sha256 fails, too few good images) is one line naming the
file, exit 2. The work itself is `inspector.anomaly.teach`'s.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from inspector.cli.common import fail, user_errors

app = typer.Typer(name="anomaly", no_args_is_help=True,
                  help="Anomaly models taught from good images only (PatchCore on EfficientNet-Lite0).")


class _Progress:
    """``stage done/total`` on one stderr line, rewritten in place on a terminal, a line per stage otherwise."""

    def __init__(self) -> None:
        self._stage = ""
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == self._stage and done < total and now - self._last < 0.5:
            return
        self._last = now
        if self._tty:
            sys.stderr.write(f"\r{stage} {done}/{total}   " + ("\n" if done >= total else ""))
        elif done >= total or stage != self._stage:
            sys.stderr.write(f"{stage} {done}/{total}\n")
        sys.stderr.flush()
        self._stage = stage


def _errors() -> tuple[type[BaseException], ...]:
    from inspector.anomaly.images import ImageError
    from inspector.anomaly.torch_legacy import WeightsError

    return (*user_errors(), ImageError, WeightsError, ValueError, OSError)


@app.command("teach")
def teach_cmd(
    good: list[Path] = typer.Option(..., "--good", help="Folder (searched recursively) or file of good parts; repeatable."),
    out: Path = typer.Option(..., "--out", help="The model folder to write."),
    bad: Path | None = typer.Option(None, "--bad", help="A folder of NG images: places the threshold between."),
    roi: str | None = typer.Option(None, "--roi", help="X0,Y0,X1,Y1: the inspected rectangle of each image."),
    name: str | None = typer.Option(None, help="The model's name (default: the folder's)."),
    size: int = typer.Option(320, min=64, max=1024, help="Letterboxed input side (a multiple of 32)."),
    seed: int = typer.Option(0, min=0, help="Seeds the coreset."),
    align: bool = typer.Option(True, "--align/--no-align",
                               help="A part's frames warped to the good parts' pose before scoring (not a texture's); "
                                    "--no-align: about 1.3x faster to score, less exact."),
) -> None:
    """Teach an anomaly model from good images (each scored cross-validated, against a bank chosen without it, to set
    the threshold)."""
    from inspector.anomaly.images import Roi
    from inspector.anomaly.teach import teach

    if size % 32:
        fail(f"--size {size}: must be a multiple of 32")
    try:
        r = teach(good, out, bad=bad, roi=Roi.parse(roi) if roi else None, name=name, width=size, height=size,
                  seed=seed, align=align, progress=_Progress())
    except _errors() as exc:
        fail(str(exc))
    bad_part = f", {r.bad_images} NG images: lowest NG score {r.bad_scores.min():.2f}" if r.bad_images else ""
    white = "".join(f"; level {i} whitened (a texture: position share {r.position_shares[i]:.3f}, blocks "
                    f"{', '.join(map(str, r.levels[i].taps))} in {r.levels[i].width} dims)" for i in r.whitened)
    white += "".join(f"; the spec's level {i} left out (not a texture: position share {share:.3f})"
                     for i, share in r.left_out)
    if r.tone is not None:
        white += (f"; a tone level ({'grey' if r.tone.channels == 1 else 'colour'} mean and spread over "
                  f"{' and '.join(str(k * r.tone.stride) for k in r.tone.windows)} px windows, "
                  f"{'one Gaussian per cell' if r.tone.per_position else 'one Gaussian for the texture'})")
    if r.alignment is not None:
        white += (f"; aligned to the good parts' pose (they lay up to {r.alignment['largest_shift_px']} px and "
                  f"{r.alignment['largest_turn_deg']} degrees off it)")
        lost = r.good_without_pose
        if lost:  # scored where they lay, they set the threshold too: worth a look
            white += (f"; {lost} good image{'s' if lost > 1 else ''} without a part pose (scored where "
                      f"{'they' if lost > 1 else 'it'} lay: check {'they are' if lost > 1 else 'it is'} the part)")
    if r.appearance is not None:
        white += (f"; its whole look ({len(r.appearance.basis)} principal components of its "
                  f"{r.appearance.stride} px block means)")
    typer.echo(f"taught {out} from {r.bank_images} good images (cross-validated: highest good score "
               f"{r.good_scores.max():.2f}{bad_part}); bank {r.bank_rows} patches, threshold 1.0 = raw "
               f"{r.raw_threshold:.3f}{white}, {r.seconds:.1f} s")


@app.command("score")
def score_cmd(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    model: str = typer.Option(..., "--model", help="Model folder or name."),
    json_file: Path = typer.Option(..., "--json", help="Where to write the results."),
    heatmaps: Path | None = typer.Option(None, "--heatmaps", help="Folder for heat map overlays."),
) -> None:
    """Score images: JSON {"model", "threshold", "results": [{"file", "score", "verdict"}]}; NG at score >= 1.0."""
    from inspector.anomaly.teach import score_paths

    try:
        m, results = score_paths(model, paths, heatmaps=heatmaps, progress=_Progress())
        doc = {"model": m.name, "model_sha256": m.sha256, "threshold": 1.0,
               "results": [{"file": r.file, "score": round(r.score, 4), "verdict": r.verdict}
                           | ({} if r.posed is None else {"posed": r.posed}) for r in results]}
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except _errors() as exc:
        fail(str(exc))
    ng = sum(r.verdict == "NG" for r in results)
    lost = sum(r.posed is False for r in results)
    lost_part = f"; {lost} without a part pose (scored where it lay)" if lost else ""
    typer.echo(f"scored {len(results)} images with {m.name}: {ng} NG, {len(results) - ng} OK{lost_part} -> {json_file}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., "--model", help="Model folder or name."),
    good: Path = typer.Option(..., "--good", help="Folder of good images."),
    bad: Path = typer.Option(..., "--bad", help="Folder of anomalous images."),
    masks: Path | None = typer.Option(None, "--masks", help="Folder of the bad images' masks (same file names)."),
    json_file: Path | None = typer.Option(None, "--json", help="Where to write the metrics."),
    record: bool = typer.Option(False, "--record", help="Write the metrics into the model's card (\\[metrics.eval])."),
) -> None:
    """Image AUROC, pixel AUROC (with masks), false reject and escape at the threshold."""
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.teach import evaluate, record_metrics

    try:
        r = evaluate(model, good, bad, masks=masks, progress=_Progress())
        if record:
            record_metrics(load_anomaly_model(model).folder, r, good, bad)
        if json_file is not None:
            doc = {"model": r.model, "good": r.good, "bad": r.bad, "image_auroc": r.image_auroc,
                   "pixel_auroc": r.pixel_auroc, "masks": r.masks, "threshold": 1.0,
                   "false_reject": r.false_reject, "escape": r.escape,
                   "good_scores": [round(float(s), 4) for s in r.good_scores],
                   "bad_scores": [round(float(s), 4) for s in r.bad_scores]}
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except _errors() as exc:
        fail(str(exc))
    pixel = f", pixel AUROC {r.pixel_auroc:.4f} ({r.masks} masks)" if r.pixel_auroc is not None else ""
    typer.echo(f"{r.model}: image AUROC {r.image_auroc:.4f}{pixel}; at threshold 1.0: false reject "
               f"{r.false_reject:.2%} of {r.good} good, escape {r.escape:.2%} of {r.bad} bad")


@app.command("synth")
def synth_cmd(
    family: str = typer.Option(..., "--family", help="fabric | plate | label | wood"),
    out: Path = typer.Option(..., "--out", help="Output folder (good/, bad/, masks/)."),
    good: int = typer.Option(200, "--good", min=0, help="Good parts."),
    bad: int = typer.Option(0, "--bad", min=0, help="Anomalous parts (each with its mask)."),
    seed: int = typer.Option(0, min=0, help="First seed (good parts, then bad ones)."),
    width: int = typer.Option(320, min=32, max=8192),
    height: int = typer.Option(320, min=32, max=8192),
    mono: bool = typer.Option(False, "--mono", help="Mono8 images instead of colour."),
) -> None:
    """Render a product family's good and anomalous parts (with pixel masks) into folders."""
    from camera.products import FAMILIES, write_family

    if family not in FAMILIES:
        fail(f"--family {family!r}: choose one of {', '.join(FAMILIES)}")
    try:
        n = write_family(family, out, good, bad, seed=seed, width=width, height=height, mono=mono,
                         progress=lambda d, t: _Progress()("render", d, t) if d == t else None)
    except OSError as exc:
        fail(str(exc))
    typer.echo(f"{family}: {n['good']} good and {n['bad']} anomalous parts (seeds {seed}..{seed + good + bad - 1}) "
               f"-> {out}")
