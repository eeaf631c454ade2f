"""The promotion gate: a candidate model replaces the current one only if it is no worse on held-out images.

``inspector model gate`` evaluates both models on the same split of one dataset (each at its
own card's rules: its threshold and class thresholds, `dataset_eval.evaluate_dataset`), compares escapes, false rejects (per
image, and per part where the data names parts) and mAP50 within the allowed margins, and
writes the verdict into the candidate's card as a ``[gate]`` table::

    [gate]
    passed = true
    against = "defect-yolo11p-320"          # the model it replaces
    against_sha256 = "..."                  # that model's file
    candidate_sha256 = "..."                # this model's file: a retrained file needs a new gate
    data = "/data/line7/data.yaml"
    split = "test"
    data_sha256 = "..."                     # the split's images and labels (`dataset_sha256`)
    images = 412
    date = "2026-12-06T03:20:00+00:00"
    reasons = []                            # each failed criterion, one line
    [gate.limits]  [gate.candidate]  [gate.current]      # each side's figures and the rules they were taken at

Only the ``[gate]`` table changes; the model file is checked against the card's sha256 before
the card is written and again after, so a gate is never written for a swapped file.

`require_gate` is the check a product recipe calls before it selects a detector.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspector.pipeline.model_repo import ModelCard, ModelError, dump_toml, load_card
from inspector.quality.data_yaml import label_path, read_data_yaml

#: The figures a gate compares and keeps of each model (the rates per image, per part where present).
GATE_FIGURES = ("threshold", "class_thresholds", "mAP50", "mAP50_95", "escape_rate", "false_reject_rate", "escapes", "false_rejects",
                "part_escape_rate", "part_false_reject_rate", "part_escapes", "part_false_rejects")


#: What a refusal adds where the switch did not override the gate (`GateRefused.overridable`).
OVERRIDE_HINT = "an admin may override it with a reason (audited)"


class GateRefused(RuntimeError):
    """A detector that may not replace the one it would: no passing promotion gate against it, and no override.

    The one refusal from the gate up to the GUI, the CLI and the PLC: `require_gate` raises it (for a
    recipe, naming it), a recipe switch adds the recipe still in force, the control API that an admin
    may override it; it crosses the control link as its `fields`. The user reads one line,
    ``recipe RECIPE: model MODEL: REASON`` (``model MODEL: REASON`` where no recipe is named), with
    ``; an admin may override it ...`` where ``overridable``. A refusal, like the recipe switch's and
    the control API's other errors (a `RuntimeError`), not a broken model.

    Attributes:
        model: The detector refused.
        reason: Why, with the command that runs the gate.
        recipe: The recipe that selects it (``housing-b v2``; its name where a version is saved), or "".
        in_force: The recipe still in force after a refused switch (None: the station's own settings, or no switch).
        overridable: The line says that an admin may override it (the switch asked for no override).
    """

    def __init__(self, model: str, reason: str, *, recipe: str = "", in_force: str | None = None,
                 overridable: bool = False) -> None:
        super().__init__(model, reason)
        self.model, self.reason, self.recipe, self.in_force = model, reason, recipe, in_force
        self.overridable = overridable

    def __str__(self) -> str:
        line = f"model {self.model}: {self.reason}"
        line = f"recipe {self.recipe}: {line}" if self.recipe else line
        return f"{line}; {OVERRIDE_HINT}" if self.overridable else line

    def fields(self) -> dict[str, str | bool | None]:
        """What the control link carries besides the line (`GateRefused(**fields)` is the same refusal)."""
        return {"model": self.model, "reason": self.reason, "recipe": self.recipe, "in_force": self.in_force,
                "overridable": self.overridable}


@dataclass(frozen=True)
class ModelRef:
    """A model as a gate names it: its name and its model file's sha256 (a card, or a recipe's history line)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class GateLimits:
    """How much worse than the current model a candidate may be (absolute rates; 0: no worse at all)."""

    max_escape_increase: float = 0.0
    max_false_reject_increase: float = 0.0
    max_map50_drop: float = 0.0


def dataset_sha256(data_yaml: Path, split: str) -> str:
    """A digest of a split: the class names and every image and label file (path relative to the data.yaml, bytes)."""
    data = read_data_yaml(data_yaml)
    h = hashlib.sha256("\n".join(data.names).encode())
    base = data.file.parent.resolve()
    for img in data.images(split):
        for f in (img, label_path(img)):
            p = f.resolve()
            h.update(str(p.relative_to(base) if p.is_relative_to(base) else p).encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest() if p.is_file() else b"-")
    return h.hexdigest()


def compare(candidate: Mapping[str, Any], current: Mapping[str, Any], limits: GateLimits) -> list[str]:
    """Every criterion the candidate fails against the current model's figures (empty: it passes)."""
    reasons = []
    checks = [("escape_rate", "escape rate", limits.max_escape_increase),
              ("false_reject_rate", "false-reject rate", limits.max_false_reject_increase)]
    if "part_escape_rate" in candidate and "part_escape_rate" in current:
        checks += [("part_escape_rate", "part escape rate", limits.max_escape_increase),
                   ("part_false_reject_rate", "part false-reject rate", limits.max_false_reject_increase)]
    for key, label, margin in checks:
        if candidate[key] > current[key] + margin + 1e-12:
            reasons.append(f"{label} {candidate[key]:.2%} > current {current[key]:.2%} + {margin:.2%}")
    if candidate["mAP50"] < current["mAP50"] - limits.max_map50_drop - 1e-12:
        reasons.append(f"mAP50 {candidate['mAP50']:.4f} < current {current['mAP50']:.4f} - {limits.max_map50_drop:g}")
    return reasons


def gate_table(candidate: ModelCard, current: ModelCard, cand_m: Mapping[str, Any], cur_m: Mapping[str, Any],
               limits: GateLimits, data_yaml: Path, split: str, data_sha256: str) -> dict[str, Any]:
    """The ``[gate]`` table for the candidate's card."""
    reasons = compare(cand_m, cur_m, limits)
    return {
        "passed": not reasons,
        "against": current.name,
        "against_sha256": current.sha256,
        "candidate_sha256": candidate.sha256,
        "candidate_input": _fed(candidate),
        "against_input": _fed(current),
        "data": str(Path(data_yaml).resolve()),
        "split": split,
        "data_sha256": data_sha256,
        "images": int(cand_m["images"]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reasons": reasons,
        "limits": asdict(limits),
        "candidate": _figures(cand_m),
        "current": _figures(cur_m),
    }


def _figures(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (round(m[k], 6) if isinstance(m[k], float) else m[k]) for k in GATE_FIGURES if k in m}


def write_gate(model: str | Path, table: Mapping[str, Any]) -> Path:
    """Put ``table`` into the model's card as ``[gate]`` (replacing an older one); returns the card's path.

    Raises:
        ModelError: The model file does not match its card (no gate is written for it).
    """
    card = load_card(model)
    path = card.folder / "card.toml"
    data = tomllib.loads(path.read_text())
    if table["candidate_sha256"] != card.sha256:
        raise ModelError(f"model: {path}: the gate was run on another file (sha256 {table['candidate_sha256'][:12]}...)")
    data["gate"] = dict(table)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_toml(data))
    tmp.replace(path)
    load_card(model)  # still a valid card whose file matches it
    return path


def run_gate(
    candidate: str | Path,
    current: str | Path,
    data_yaml: Path,
    *,
    split: str = "test",
    limits: GateLimits | None = None,
    evaluate: Callable[..., dict[str, Any]] | None = None,
    **eval_options: Any,
) -> tuple[dict[str, Any], Path]:
    """Evaluate both models on ``split`` at each one's card rules (its threshold and class thresholds) and write
    the verdict into the candidate's card.

    Args:
        candidate: The model that would replace ``current``.
        current: The model in use.
        data_yaml: Held-out labelled images (a data.yaml).
        split: Its split to compare on.
        limits: The margins the candidate may be worse by (default: none).
        evaluate: ``evaluate(model, data_yaml, split=, threshold=, class_thresholds=, **eval_options)``; default
            `dataset_eval.evaluate_dataset`.
        eval_options: Passed to ``evaluate`` (backend, precision, batch).

    Returns:
        The ``[gate]`` table and the card's path.
    """
    from inspector.quality.dataset_eval import evaluate_dataset
    from inspector.quality.evaluation import card_rules

    run = evaluate or evaluate_dataset
    cand_card, cur_card = load_card(candidate), load_card(current)
    digest = dataset_sha256(data_yaml, split)
    figures = []
    for card, spec in ((cand_card, candidate), (cur_card, current)):
        rules = card_rules(card)
        figures.append(run(spec, data_yaml, split=split, threshold=rules.default_threshold,
                           class_thresholds=rules.class_thresholds, **eval_options))
    if dataset_sha256(data_yaml, split) != digest:
        raise ModelError(f"gate: {data_yaml} changed while the models were evaluated; run the gate again")
    table = gate_table(cand_card, cur_card, figures[0], figures[1], limits or GateLimits(), data_yaml, split, digest)
    return table, write_gate(candidate, table)


def _fed(card: ModelCard) -> str:
    """How a card feeds its model file: the input size (a gate's ``candidate_input`` / ``against_input``)."""
    return f"{card.input_width}x{card.input_height}"


def same_detector(candidate: ModelCard, replaced: ModelCard | ModelRef) -> bool:
    """Whether ``replaced`` is ``candidate``'s detector: the same model file, fed and read the same way.

    One ONNX file behind cards with another input size, letterbox padding or classes detects differently
    (a 384 input sees a 320 frame's 5-12 px defects on 1.44x the cells), so the file's sha256 alone is not
    enough. A recipe's history names a model by name and file sha256: its card is read where the name still
    resolves to that file; where it does not, the file is all that is known.
    """
    if replaced.sha256 != candidate.sha256:
        return False
    card = replaced if isinstance(replaced, ModelCard) else None
    if card is None:
        try:
            card = load_card(replaced.name, verify=False)
        except ModelError:
            return True
        if card.sha256 != replaced.sha256:
            return True
    return ((card.input_width, card.input_height, card.pad_value, card.classes)
            == (candidate.input_width, candidate.input_height, candidate.pad_value, candidate.classes))


def gate_problem(candidate: ModelCard, replaced: ModelCard | ModelRef | None) -> str:
    """Why ``candidate`` may not replace ``replaced`` (empty: it may).

    It may when nothing is replaced, when both are the same detector (`same_detector`), or when the
    candidate's card holds a passing ``[gate]`` run on this very file, at its input size, against this very
    ``replaced`` file.
    """
    if replaced is None or same_detector(candidate, replaced):
        return ""
    gate = candidate.extra.get("gate")
    how = (f"run inspector model gate --candidate {candidate.name} --current {replaced.name} "
           "--data HELD_OUT/data.yaml")
    if not isinstance(gate, dict):
        return f"model {candidate.name}: its card holds no promotion gate ([gate]) against {replaced.name}; {how}"
    if gate.get("candidate_sha256") != candidate.sha256:
        return f"model {candidate.name}: its gate was run on another model file (retrained?); {how}"
    if gate.get("candidate_input", _fed(candidate)) != _fed(candidate):
        return f"model {candidate.name}: its gate was run at input {gate.get('candidate_input')!s}, not {_fed(candidate)}; {how}"
    if gate.get("against_sha256") != replaced.sha256:
        return (f"model {candidate.name}: its gate was against {gate.get('against')!s} "
                f"(sha256 {str(gate.get('against_sha256'))[:12]}...), not the {replaced.name} it would replace; {how}")
    if gate.get("passed") is not True:
        reasons = "; ".join(str(r) for r in gate.get("reasons", [])) or "failed"
        return f"model {candidate.name}: failed its gate against {replaced.name} ({reasons})"
    return ""


def require_gate(candidate: ModelCard, replaced: ModelCard | ModelRef | None, *, override_by: str | None = None,
                 recipe: str = "") -> str:
    """Refuse a detector without a passing gate against the model it replaces, unless an admin overrides.

    The caller (product recipe selection) checks that ``override_by`` is an admin and records the
    returned text in the audit trail.

    Args:
        candidate: The card of the detector the recipe selects.
        replaced: The detector it replaces: a card, or the name and sha256 a recipe's history kept
            (None where none is).
        override_by: The admin who selects it despite the gate.
        recipe: The recipe that selects it, named in a refusal.

    Returns:
        Empty when the gate allows it, else the audit text of the override.

    Raises:
        GateRefused: No passing gate and no override (one line, with the command that runs the gate).
    """
    problem = gate_problem(candidate, replaced)
    if not problem:
        return ""
    if override_by:
        return f"gate overridden by {override_by}: {problem.split('; run inspector model gate')[0]}"
    raise GateRefused(candidate.name, problem.removeprefix(f"model {candidate.name}: "), recipe=recipe)
