"""Per-class verdict thresholds calibrated on validation line parts, written into the model's card.

``inspector model calibrate`` renders line parts (`part_eval.score_parts`, the path ``inspector eval
--faces 8`` takes), keeps each part's best score per class and chooses, on a grid of thresholds
(0.15..0.80 in steps of 0.05), the per-class thresholds that minimise::

    max(part escape rate / 0.5 %, part false-reject rate / 1 %)

(the line's targets: a ratio of 1 meets both). Ties go to the fewest classes moved from the card's
threshold, then to the smallest total move, then to the lowest thresholds in class order. A part is NG
when any class's best score over its faces reaches that class's threshold, which is the station's
verdict where no area or ROI rule applies.

The search is exact and vectorised: each part's per-class grid index (the first grid threshold above
its score) goes into a histogram over every combination, whose cumulative sums along each class count
the parts judged OK at each combination (14^4 combinations over 3000 parts in well under a second).

The thresholds travel with the model: ``[metrics] class_thresholds`` and ``class_threshold_calibration``
(the rule, seeds, precision, counts and date) in its card.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.pipeline.model_repo import ModelCard, ModelError, dump_toml, load_card
from inspector.quality.part_eval import PartScores

#: The line's per-part targets the rule weighs escapes and false rejects by.
PART_ESCAPE_TARGET = 0.005
PART_FALSE_REJECT_TARGET = 0.01
#: The grid's first and last threshold (below 0.15 clean faces light up; above 0.80 defects go unseen).
GRID_LOW = 0.15
GRID_HIGH = 0.80
DEFAULT_STEP = 0.05
#: The most threshold combinations searched (the histogram holds (grid + 1) ** classes counts).
MAX_COMBINATIONS = 5_000_000
#: The line's held-out part sets (`inspector eval --faces 8 --seed-base S`): never calibrated on.
HELD_OUT_PART_SETS = (3_500_000, 3_700_000, 3_800_000)
HELD_OUT_SET_SEEDS = 100_000
#: Seeds calibration uses by default: validation parts, apart from training, held-out frames and parts.
VALIDATION_SEED_BASE = 3_900_000


class CalibrationError(ValueError):
    """Input a calibration cannot use (a grid too fine, seeds of a held-out set, no parts)."""


@dataclass(frozen=True)
class Calibration:
    """The chosen per-class thresholds and what they give on the calibration parts."""

    class_thresholds: dict[str, float]
    #: max(escape rate / target, false-reject rate / target) at ``class_thresholds``
    ratio: float
    escapes: int
    defective: int
    false_rejects: int
    ok: int
    #: combinations with the same (lowest) ratio, before the tie-break
    tied: int

    def summary(self) -> str:
        """One line: the thresholds and the counts."""
        per_class = ", ".join(f"{k} {v:.2f}" for k, v in self.class_thresholds.items())
        return (f"class thresholds {per_class}: escapes {self.escapes} of {self.defective}, false rejects "
                f"{self.false_rejects} of {self.ok} (max ratio to the targets {self.ratio:.3f}, "
                f"{self.tied} tied optima)")


def threshold_grid(step: float = DEFAULT_STEP, low: float = GRID_LOW, high: float = GRID_HIGH) -> np.ndarray:
    """The thresholds tried for each class: ``low`` to ``high`` in ``step`` (rounded to 4 decimals).

    Raises:
        CalibrationError: ``step`` not in (0, high - low].
    """
    if not (math.isfinite(step) and 0.0 < step <= high - low + 1e-9):
        raise CalibrationError(f"--step {step:g}: must lie in (0, {high - low:.2f}]")
    return np.round(np.arange(low, high + step / 2, step), 4)


def choose_class_thresholds(scores: np.ndarray, defective: np.ndarray, classes: Sequence[str], default: float,
                            grid: np.ndarray, *, escape_target: float = PART_ESCAPE_TARGET,
                            false_reject_target: float = PART_FALSE_REJECT_TARGET) -> Calibration:
    """The per-class thresholds on ``grid`` that minimise max(escape / target, false reject / target) per part.

    Args:
        scores: ``(parts, classes)`` each class's best score over a part's faces (0 where none).
        defective: ``(parts,)`` whether the part truly has a defect.
        classes: The class names, in the order of ``scores``' columns.
        default: The card's threshold: ties go to the fewest classes moved from it, then the least total move.
        grid: The thresholds tried for each class (ascending).

    Raises:
        CalibrationError: No parts, or more than `MAX_COMBINATIONS` combinations.
    """
    scores = np.asarray(scores, float)
    truth = np.asarray(defective, bool)
    parts, nc = scores.shape
    g = len(grid)
    if parts == 0 or nc != len(classes) or len(truth) != parts:
        raise CalibrationError(f"calibration: {parts} parts of {nc} classes and {len(truth)} truths; "
                               f"need at least one part, one column per class of {len(classes)}")
    check_grid(grid, nc)
    # a part is OK at combination i when every class's grid threshold lies above its score: i_c >= k_c,
    # k_c = how many grid thresholds its score reaches; OK counts are cumulative sums of k's histogram
    k = np.searchsorted(grid, scores, side="right")
    ok_counts = []
    for mask in (truth, ~truth):
        hist = np.zeros((g + 1,) * nc, np.int64)
        np.add.at(hist, tuple(k[mask].T), 1)
        for axis in range(nc):
            hist = np.cumsum(hist, axis=axis)
        ok_counts.append(hist[(slice(0, g),) * nc].ravel())
    n_def, n_ok = int(truth.sum()), int((~truth).sum())
    escapes = ok_counts[0]
    false_rejects = n_ok - ok_counts[1]
    ratio = np.maximum(escapes / max(1, n_def) / escape_target, false_rejects / max(1, n_ok) / false_reject_target)
    best = float(ratio.min())
    tied = np.flatnonzero(np.abs(ratio - best) < 1e-12)
    values = grid[np.stack(np.unravel_index(tied, (g,) * nc), axis=1)]  # (tied, classes)
    moved = (np.abs(values - default) > 1e-9).sum(axis=1)
    move = np.round(np.abs(values - default).sum(axis=1), 9)
    pick = tied[np.lexsort((tied, move, moved))[0]]  # lexsort: the last key sorts first
    chosen = grid[np.array(np.unravel_index(pick, (g,) * nc))]
    return Calibration({c: round(float(v), 4) for c, v in zip(classes, chosen)}, float(ratio[pick]),
                       int(escapes[pick]), n_def, int(false_rejects[pick]), n_ok, len(tied))


def check_grid(grid: np.ndarray, classes: int) -> None:
    """Refuse a grid whose combinations over ``classes`` classes the search cannot hold.

    Raises:
        CalibrationError: One line with the count and the limit.
    """
    g = len(grid)
    if (g + 1) ** classes > MAX_COMBINATIONS:
        raise CalibrationError(f"--step: {g} thresholds for each of {classes} classes is {g ** classes} "
                               f"combinations; at most {MAX_COMBINATIONS} (choose a larger step)")


def check_seeds(seed_base: int, count: int) -> None:
    """Refuse calibration parts that overlap a held-out part set (the targets are measured there).

    Raises:
        CalibrationError: One line naming the overlap and a validation seed base.
    """
    last = seed_base + count - 1
    for base in HELD_OUT_PART_SETS:
        end = base + HELD_OUT_SET_SEEDS - 1
        if seed_base <= end and last >= base:
            raise CalibrationError(
                f"--seed-base {seed_base}: parts {seed_base}..{last} overlap the held-out parts {base}..{end}; "
                f"calibrate on validation parts (e.g. --seed-base {VALIDATION_SEED_BASE})")


def scores_document(s: PartScores, card: ModelCard, precision: str) -> dict[str, Any]:
    """What ``--scores`` saves: per part its seed, truth and each class's best score (a sweep redone from it by
    ``--from-scores``), with the detector they came from (model file, input size) and the precision."""
    return {
        "model": card.name,
        "model_sha256": card.sha256,
        "input": [card.input_width, card.input_height],
        "card_sha256": card.card_sha256,
        "precision": precision,
        "precision_run": s.precision,
        "classes": list(s.classes),
        "faces": int(s.face_scores.shape[1]),
        "seeds": [s.seed_base, s.seed_base + len(s.defective) - 1],
        "parts": [{"seed": s.seed_base + p, "defective": bool(d), "scores": [float(x) for x in row]}
                  for p, (d, row) in enumerate(zip(s.defective, s.scores))],
    }


def read_scores(path: Path, card: ModelCard) -> tuple[PartScores, int]:
    """The per-part scores `write_scores` saved and the faces a part had, checked against ``card`` (the same
    model file, input size and classes): a sweep redone without the model.

    Raises:
        CalibrationError: One line naming the file and what is wrong.
    """
    where = f"--from-scores {path}"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise CalibrationError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{where}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("parts"), list) or not doc["parts"]:
        raise CalibrationError(f"{where}: no parts (a file inspector model calibrate --scores wrote)")
    detector = (doc.get("model_sha256"), doc.get("input"), doc.get("classes"))
    if detector != (card.sha256, [card.input_width, card.input_height], list(card.classes)):
        raise CalibrationError(f"{where}: scored by {doc.get('model')!s} (model sha256 "
                               f"{str(doc.get('model_sha256'))[:12]}..., input {doc.get('input')}, classes "
                               f"{doc.get('classes')}), not {card.name}'s detector")
    nc = len(card.classes)
    rows, truth, seeds = [], [], []
    for i, part in enumerate(doc["parts"]):
        row = part.get("scores") if isinstance(part, dict) else None
        if (not isinstance(row, list) or len(row) != nc or not isinstance(part.get("defective"), bool)
                or not isinstance(part.get("seed"), int)
                or not all(isinstance(x, (int, float)) and 0.0 <= x <= 1.0 for x in row)):
            raise CalibrationError(f"{where}: parts[{i}] needs a seed, defective (true/false) and {nc} scores in 0..1")
        rows.append(row)
        truth.append(part["defective"])
        seeds.append(part["seed"])
    faces = doc.get("faces")
    # each part's best over its faces is all a sweep needs: one "face" per part here
    scores = PartScores(card.classes, seeds[0], np.array(rows, float)[:, None, :], np.array(truth, bool)[:, None],
                        0.0, str(doc.get("precision_run", doc.get("precision", ""))))
    return scores, faces if isinstance(faces, int) else 0


def write_scores(path: Path, document: Mapping[str, Any]) -> None:
    """Write `scores_document`'s table as JSON.

    Raises:
        CalibrationError: The file cannot be written.
    """
    try:
        path.write_text(json.dumps(document))
    except OSError as exc:
        raise CalibrationError(f"--scores: cannot write {path}: {exc.strerror or exc}") from None


def calibration_note(c: Calibration, *, seeds: tuple[int, int], faces: int, precision: str, grid: np.ndarray,
                     default: float) -> str:
    """The card's ``class_threshold_calibration``: the rule, the data, the counts and the date."""
    return (f"inspector model calibrate: per-class thresholds on {grid[0]:g}..{grid[-1]:g} step "
            f"{(grid[1] - grid[0]) if len(grid) > 1 else 0:.2f} minimising max(part escape rate / "
            f"{PART_ESCAPE_TARGET:.1%}, part false-reject rate / {PART_FALSE_REJECT_TARGET:.0%}), ties to the fewest "
            f"classes moved from {default:g}, then the least total move; {c.defective + c.ok} validation parts of "
            f"{faces} faces, seeds {seeds[0]}..{seeds[1]}, precision {precision}: escapes {c.escapes} of "
            f"{c.defective}, false rejects {c.false_rejects} of {c.ok} (ratio {c.ratio:.3f}, {c.tied} tied optima); "
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")


def write_class_thresholds(model: str | Path, class_thresholds: Mapping[str, float], note: str) -> Path:
    """Put ``class_thresholds`` and ``note`` into the card's ``[metrics]`` (the model file checked before and
    after; the other fields kept); returns the card's path.

    Raises:
        ModelError: The model file does not match its card, or the result is not a valid card.
    """
    card = load_card(model)
    path = card.folder / "card.toml"
    data = tomllib.loads(path.read_text())
    metrics = data.setdefault("metrics", {})
    if not isinstance(metrics, dict):
        raise ModelError(f"model: {path}: metrics must be a table")
    metrics["class_thresholds"] = {k: float(v) for k, v in class_thresholds.items()}
    metrics["class_threshold_calibration"] = note
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_toml(data))
    tmp.replace(path)
    load_card(model)  # still a valid card whose file matches it
    return path
