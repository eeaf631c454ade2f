"""Teach an anomaly model from good images, score images against it, and evaluate it.

What the command line (``inspector anomaly teach|score|eval``) runs; each takes a progress callback
``(stage, done, total)`` and returns a typed report.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.anomaly import threshold as thresholds
from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.images import ImageError, Roi, crop, find_images, letterboxed, load_batch, read_image
from inspector.anomaly.metrics import auroc, rate_above
from inspector.anomaly.model import AnomalyModel, load_anomaly_model, write_model
from inspector.anomaly.patchcore import greedy_coreset, image_coreset
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor, ScoreBatch

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

#: Fewest good images a model is taught from (a bank and a held-out set to set the threshold).
MIN_GOOD = 10
#: Share of the good images held out to set the threshold (never fewer than `MIN_HELD_OUT`).
HELD_OUT_SHARE = 0.2
MIN_HELD_OUT = 5
#: Memory bank size: this share of all patches, within [BANK_MIN, BANK_MAX] rows.
BANK_SHARE = 0.01
BANK_MIN, BANK_MAX = 1000, 4096
#: Features chosen by measurement on the three product families (the commit message has the table): the
#: stride-8 and stride-16 blocks, as PatchCore's layer2 + layer3.
DEFAULT_SPEC = FeatureSpec((4, 10), 8, 3)
#: Grid cells along each side left out of the image score (`runtime.AnomalyScorer`): 2 cells, 16 px at 320.
EDGE_CELLS = 2
BATCH = 8


def _quiet(_stage: str, _done: int, _total: int) -> None:
    pass


@dataclass(frozen=True)
class TeachReport:
    """What `teach` did."""

    folder: Path
    good_images: int
    bank_images: int
    held_out: int
    bad_images: int
    bank_rows: int
    raw_threshold: float
    good_scores: np.ndarray
    bad_scores: np.ndarray
    seconds: float


def teach(good: Sequence[Path], out: Path, *, bad: Path | None = None, roi: Roi | None = None,
          name: str | None = None, spec: FeatureSpec = DEFAULT_SPEC, width: int = 320, height: int = 320,
          seed: int = 0, progress: Progress = _quiet) -> TeachReport:
    """Teach a PatchCore model from the good images in ``good`` and write it to ``out``.

    Args:
        good: Folders (searched recursively) or files of good parts.
        out: The model folder to write.
        bad: A folder of NG images that refines the threshold (`threshold.with_bad`).
        roi: The rectangle of each image to inspect.
        name: The model's name (default: the folder's).
        spec: Backbone features.
        width: Letterboxed input width.
        height: Letterboxed input height.
        seed: Decides the held-out split and the coreset.
        progress: ``(stage, done, total)``.

    Raises:
        ImageError: A folder without images, an unreadable image, or fewer than `MIN_GOOD` good images.
    """
    t0 = time.perf_counter()
    files = find_images(good)
    if len(files) < MIN_GOOD:
        raise ImageError(f"{', '.join(map(str, good))}: {len(files)} good images, at least {MIN_GOOD} are needed "
                         "(a memory bank and a held-out set for the threshold)")
    bad_files = find_images([bad]) if bad is not None else []
    order = np.random.default_rng(seed).permutation(len(files))
    n_held = max(MIN_HELD_OUT, round(HELD_OUT_SHARE * len(files)))
    held = [files[i] for i in sorted(order[:n_held])]
    bank_files = [files[i] for i in sorted(order[n_held:])]
    extractor = FeatureExtractor(spec, width, height)
    per_image: list[np.ndarray] = []
    total_patches = 0
    for start in range(0, len(bank_files), BATCH):
        feats = extractor(load_batch(bank_files[start:start + BATCH], width, height, roi))
        for f in feats.reshape(len(feats), -1, feats.shape[-1]):
            total_patches += len(f)
            # the first coreset stage per image as it comes, so the features of every patch are never all held
            per_image.append(image_coreset(f, 0.1, seed=seed + len(per_image)))
        progress("features", min(start + BATCH, len(bank_files)), len(bank_files))
    size = int(np.clip(BANK_SHARE * total_patches, BANK_MIN, BANK_MAX))
    candidates = np.concatenate(per_image)
    bank = np.ascontiguousarray(candidates[greedy_coreset(candidates, size, seed=seed, proj_dim=64,
                                                          progress=lambda k, n: progress("coreset", k, n))])
    progress("coreset", len(bank), len(bank))
    edge = min(EDGE_CELLS, max(0, min(width, height) // spec.grid_stride // 2 - 1))
    scorer = AnomalyScorer(spec, width, height, bank, 1.0, edge=edge)
    good_raw = _score_files(scorer, held, roi, lambda d, n: progress("threshold", d, n)).scores
    bad_raw = _score_files(scorer, bad_files, roi, lambda d, n: progress("NG images", d, n)).scores \
        if bad_files else np.empty(0, np.float32)
    th = thresholds.with_bad(good_raw, bad_raw) if len(bad_raw) else thresholds.good_only(good_raw)
    seconds = time.perf_counter() - t0
    taught = {
        "good_images": len(files), "bank_images": len(bank_files), "held_out_images": len(held),
        "bad_images": len(bad_files), "sources": [str(p) for p in good] + ([str(bad)] if bad else []),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "seed": seed,
        "patches": total_patches, "bank_rows": len(bank), "teach_seconds": round(seconds, 2),
        "cpu": _cpu_text(),
        "coreset": f"greedy k-center, two stages: 10% of each image's patches, then {len(bank)} rows over all "
                   f"(Gaussian projection to 64 dims for the distances)",
    }
    table: dict[str, object] = {"rule": th.rule, "good_quantile": th.good_quantile,
                                "held_out_good_max": round(float(good_raw.max()), 6),
                                # the scores the threshold was set from (a histogram for the teach dialog)
                                "held_out_good_raw": [round(float(v), 4) for v in good_raw],
                                "bad_raw": [round(float(v), 4) for v in bad_raw]}
    if th.lowest_bad is not None:
        table["lowest_bad"] = th.lowest_bad
    metrics: dict[str, object] = {"held_out_false_reject": rate_above(good_raw, th.raw)}
    if len(bad_raw):
        metrics["taught_bad_escape"] = 1.0 - rate_above(bad_raw, th.raw)
    write_model(out, name or out.name, bank, spec, width, height, th.raw, roi,
                {"threshold": table, "taught": taught, "metrics": metrics},
                notes="PatchCore on EfficientNet-Lite0 (ImageNet) features, taught from good images only",
                edge_cells=edge)
    return TeachReport(out, len(files), len(bank_files), len(held), len(bad_files), len(bank), th.raw,
                       good_raw / th.raw, bad_raw / th.raw, seconds)


def _cpu_text() -> str:
    from inspector.bench import cpu_description

    cpu = cpu_description()
    return f"{cpu['model']}, {cpu['cores']} cores, {' '.join(cpu['isa']) or 'no avx2'}"


def record_metrics(folder: Path, report: EvalReport, good: Path, bad: Path) -> None:
    """Write an evaluation into the model's card as ``[metrics.eval]`` (the bank, and so its sha256, unchanged)."""
    import tomllib

    from inspector.pipeline.model_repo import dump_toml

    path = folder / "card.toml"
    card = tomllib.loads(path.read_text(encoding="utf-8"))
    metrics = card.setdefault("metrics", {})
    metrics["eval"] = {
        "image_auroc": round(report.image_auroc, 4),
        "pixel_auroc": round(report.pixel_auroc, 4) if report.pixel_auroc is not None else "none (no masks)",
        "false_reject": report.false_reject, "escape": report.escape, "threshold": 1.0,
        "good_images": report.good, "bad_images": report.bad, "masks": report.masks,
        "good": str(good), "bad": str(bad),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    path.write_text(dump_toml(card), encoding="utf-8")


def _score_files(scorer: AnomalyScorer, files: Sequence[Path], roi: Roi | None,
                 progress: Callable[[int, int], None]) -> ScoreBatch:
    scores, maps = [], []
    for start in range(0, len(files), BATCH):
        batch = load_batch(files[start:start + BATCH], scorer.width, scorer.height, roi)
        out = scorer.score(batch)
        scores.append(out.scores)
        maps.append(out.maps)
        progress(min(start + BATCH, len(files)), len(files))
    if not scores:
        return ScoreBatch(np.empty(0, np.float32), np.empty((0, 1, 1), np.float32))
    return ScoreBatch(np.concatenate(scores), np.concatenate(maps))


def scorer_for(model: AnomalyModel) -> AnomalyScorer:
    """The compiled scorer of a loaded model (scores normalised: threshold 1.0)."""
    return AnomalyScorer(model.spec, model.input_width, model.input_height, model.bank, model.raw_threshold,
                         edge=model.edge_cells)


@dataclass(frozen=True)
class FileScore:
    """One scored file."""

    file: str
    score: float
    verdict: str


def score_paths(spec: str | Path, paths: Sequence[Path], *, heatmaps: Path | None = None,
                progress: Progress = _quiet) -> tuple[AnomalyModel, list[FileScore]]:
    """Score image files (folders searched recursively); write heat map overlays to ``heatmaps``."""
    model = load_anomaly_model(spec)
    files = find_images(paths)
    scorer = scorer_for(model)
    results: list[FileScore] = []
    if heatmaps is not None:
        heatmaps.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(files), BATCH):
        chunk = files[start:start + BATCH]
        images = [crop(read_image(p), model.roi, str(p)) for p in chunk]
        out = scorer.score(letterboxed(images, model.input_width, model.input_height))
        for p, img, s, m in zip(chunk, images, out.scores, out.maps):
            results.append(FileScore(str(p), float(s), "NG" if s >= 1.0 else "OK"))
            if heatmaps is not None:
                _write_overlay(heatmaps / f"{len(results) - 1:05d}_{p.stem}.png", img, m, model)
        progress("score", min(start + BATCH, len(files)), len(files))
    return model, results


def heat_map(patch_map: np.ndarray, model: AnomalyModel, shape: tuple[int, int]) -> np.ndarray:
    """Patch scores as a float32 map over an image of ``shape`` (h, w): upsampled to the letterboxed input,
    blurred (sigma 4 px, as PatchCore), the letterbox's padding cut away and resized to the image."""
    from inspector.pipeline.preprocess import Letterbox

    up = cv2.resize(patch_map.astype(np.float32), (model.input_width, model.input_height),
                    interpolation=cv2.INTER_LINEAR)
    up = cv2.GaussianBlur(up, (0, 0), 4.0)
    box = Letterbox.fit(shape[1], shape[0], model.input_width, model.input_height)
    inner = up[box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w]
    return cv2.resize(inner, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _write_overlay(path: Path, image: np.ndarray, patch_map: np.ndarray, model: AnomalyModel) -> None:
    heat = heat_map(patch_map, model, image.shape[:2])
    # colour scale: 0 .. 2x the threshold, so the threshold sits mid-scale
    colour = cv2.applyColorMap(np.clip(heat * 127.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    base = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if not cv2.imwrite(str(path), cv2.addWeighted(base, 0.55, colour, 0.45, 0.0)):
        raise ImageError(f"{path}: cannot write the heat map")


@dataclass(frozen=True)
class EvalReport:
    """Image and pixel metrics of a model on labelled folders."""

    model: str
    good: int
    bad: int
    image_auroc: float
    false_reject: float
    escape: float
    pixel_auroc: float | None
    masks: int
    good_scores: np.ndarray = field(repr=False)
    bad_scores: np.ndarray = field(repr=False)


def evaluate(spec: str | Path, good: Path, bad: Path, *, masks: Path | None = None,
             progress: Progress = _quiet) -> EvalReport:
    """Image AUROC, false reject and escape at the threshold, pixel AUROC where ``masks`` has the bad
    images' masks (same file name, non-zero = anomalous)."""
    model = load_anomaly_model(spec)
    scorer = scorer_for(model)
    good_files, bad_files = find_images([good]), find_images([bad])
    g = _score_files(scorer, good_files, model.roi, lambda d, n: progress("good", d, n))
    b = _score_files(scorer, bad_files, model.roi, lambda d, n: progress("bad", d, n))
    pixel = None
    used = 0
    if masks is not None:
        neg, pos = [], []
        for files, out, with_mask in ((good_files, g, False), (bad_files, b, True)):
            for p, m in zip(files, out.maps):
                mask_path = masks / p.name
                if with_mask and not mask_path.is_file():
                    continue
                img_shape = crop(read_image(p), model.roi, str(p)).shape[:2]
                # pixels at 1/4 of the image side: the metric, at a sixteenth of the pixels
                small = (max(8, img_shape[0] // 4), max(8, img_shape[1] // 4))
                heat = cv2.resize(heat_map(m, model, img_shape), (small[1], small[0]), interpolation=cv2.INTER_AREA)
                if with_mask:
                    mk = crop(read_image(mask_path), model.roi, str(mask_path))
                    mk = cv2.resize((mk if mk.ndim == 2 else mk.max(axis=2)), (small[1], small[0]),
                                    interpolation=cv2.INTER_NEAREST) > 0
                    used += 1
                    pos.append(heat[mk])
                    neg.append(heat[~mk])
                else:
                    neg.append(heat.ravel())
        if used:
            pixel = auroc(np.concatenate(neg), np.concatenate(pos))
    return EvalReport(model.name, len(good_files), len(bad_files), auroc(g.scores, b.scores),
                      rate_above(g.scores, 1.0), 1.0 - rate_above(b.scores, 1.0), pixel, used, g.scores, b.scores)
