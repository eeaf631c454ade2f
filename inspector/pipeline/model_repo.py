"""The model repository: one folder per model with its ONNX file and a model card.

``models/<name>/model.onnx`` + ``models/<name>/card.toml``. The card names the classes,
the input size and pad value the model was trained with, its training data and its
measured metrics, and the sha256 of the ONNX file, which is checked before a station
starts: a corrupt or swapped file is refused.

A model quantized by ``inspector quantize`` also has ``model_int8.xml/.bin`` (an OpenVINO IR)
and an ``[int8]`` table in its card with both files' sha256, the calibration seeds and the
held-out gate; the IR is checked whenever a station or an evaluation uses it (`int8_model_path`).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the shipped models live (the repository's models/ folder).
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL = "defect-yolo11p-320"


def model_search_path() -> list[Path]:
    """Folders searched for a model by name: ``INSPECTOR_MODELS_DIR`` (os.pathsep-separated),
    the repository's ``models/`` (source checkouts, editable installs), then
    ``<prefix>/share/inspector/models`` (wheels install the shipped model there)."""
    env = [Path(p) for p in os.environ.get("INSPECTOR_MODELS_DIR", "").split(os.pathsep) if p]
    return [*env, MODELS_DIR, Path(sys.prefix) / "share" / "inspector" / "models"]


class ModelError(ValueError):
    """A model folder, card or file that cannot be used."""


@dataclass(frozen=True)
class ModelCard:
    """What the runtime needs to know about a model, read from ``card.toml``."""

    name: str
    folder: Path
    file: str
    sha256: str
    classes: tuple[str, ...]
    input_width: int
    input_height: int
    pad_value: int = 114
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    #: sha256 of the card file itself (goes into every result's provenance)
    card_sha256: str = ""

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def threshold(self) -> float | None:
        """The verdict threshold the model was calibrated for (card: metrics.threshold), if any."""
        value = self.extra.get("metrics", {}).get("threshold")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def class_thresholds(self) -> dict[str, float]:
        """Per-class verdict thresholds calibrated for this model (card: metrics.class_thresholds), else empty.

        They travel with the model: a station camera without its own ``default_threshold`` judges with the
        card's threshold and these (`inspector model calibrate` chooses and writes them).
        """
        table = self.extra.get("metrics", {}).get("class_thresholds", {})
        return {str(k): float(v) for k, v in table.items()} if isinstance(table, dict) else {}

    @property
    def int8(self) -> dict[str, Any] | None:
        """The card's ``[int8]`` table (the NNCF-quantized OpenVINO IR), or None."""
        table = self.extra.get("int8")
        return table if isinstance(table, dict) else None

    @property
    def int8_gate_passed(self) -> bool:
        """Whether the INT8 model passed its held-out gate (card: int8.gate.passed)."""
        gate = (self.int8 or {}).get("gate", {})
        return isinstance(gate, dict) and gate.get("passed") is True

    @property
    def audit_text(self) -> str:
        """How the audit trail names this version of the card (its digest, threshold and class thresholds)."""
        per_class = "".join(f" {k} {v:g}" for k, v in sorted(self.class_thresholds.items()))
        return f"card sha256 {self.card_sha256} threshold {self.threshold}" + (
            f" class_thresholds{per_class}" if per_class else "")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_dir(spec: str | Path) -> Path:
    """A model name from the repository or a path to a model folder."""
    p = Path(spec)
    if p.is_dir():
        return p
    for base in model_search_path():
        if (base / str(spec)).is_dir():
            return base / str(spec)
    raise ModelError(
        f"model: {spec!s} is neither a model folder nor a model in {os.pathsep.join(map(str, model_search_path()))}"
    )


def load_card(spec: str | Path, *, verify: bool = True, int8: bool = False) -> ModelCard:
    """Read and check a model card.

    Args:
        spec: Model name in ``models/`` or a folder path.
        verify: Check the file's sha256 against the card (refuses corrupt files).
        int8: The INT8 model will be used: it must exist, and with ``verify`` its files'
            sha256 must match the card's ``[int8]`` table.

    Raises:
        ModelError: Missing/invalid card, missing file, a pickled ``.pt`` file, or a
            checksum mismatch (of the ONNX file, or of the INT8 IR when ``int8``).
    """
    folder = resolve_model_dir(spec)
    card_path = folder / "card.toml"
    if not card_path.is_file():
        raise ModelError(f"model: {card_path} is missing (every model folder needs a card.toml)")
    try:
        card_bytes = card_path.read_bytes()
        raw = tomllib.loads(card_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model: {card_path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ModelError(f"model: {card_path} is not valid TOML: nested too deeply") from None
    except OSError as exc:
        raise ModelError(f"model: cannot read {card_path}: {exc.strerror or exc}") from None
    try:
        file = str(raw["file"])
        if file.endswith((".pt", ".pth", ".pkl")):
            raise ModelError(f"model: {folder / file} is a pickled file; the runtime loads only ONNX/engine files")
        card = ModelCard(
            name=str(raw["name"]),
            folder=folder,
            file=file,
            sha256=str(raw["sha256"]),
            classes=tuple(str(c) for c in raw["classes"]),
            input_width=_strict_int(raw["input_width"]),
            input_height=_strict_int(raw["input_height"]),
            pad_value=_strict_int(raw.get("pad_value", 114)),
            extra={k: v for k, v in raw.items() if isinstance(v, dict)},
            card_sha256=hashlib.sha256(card_bytes).hexdigest(),
        )
    except KeyError as exc:
        raise ModelError(f"model: {card_path} lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"model: {card_path} has a field of the wrong type: {exc}") from None
    problem = card_problem(card, raw)
    if problem:
        raise ModelError(f"model: {card_path}: {problem}")
    if not card.path.is_file():
        raise ModelError(f"model: {card.path} not found")
    if verify:
        actual = sha256_file(card.path)
        if actual != card.sha256:
            raise ModelError(
                f"model: {card.path} does not match its card (sha256 {actual[:12]}..., card says {card.sha256[:12]}...)"
            )
    if int8:
        int8_model_path(card, verify=verify)
    return card


#: The INT8 IR's file names in a model folder (``inspector quantize`` writes them).
INT8_XML = "model_int8.xml"


def int8_model_path(card: ModelCard, *, verify: bool = True) -> Path:
    """The INT8 IR's ``.xml`` of ``card``, its ``.xml`` and ``.bin`` checked against the card's sha256s.

    Raises:
        ModelError: The card has no ``[int8]`` table, a file is missing, or a checksum does not match.
    """
    table = card.int8
    if table is None:
        raise ModelError(
            f"model: {card.folder} has no INT8 model (no [int8] in its card.toml): "
            f"run inspector quantize --model {card.name}, or choose another precision"
        )
    xml = card.folder / str(table["file"])
    for path, key in ((xml, "sha256"), (xml.with_suffix(".bin"), "bin_sha256")):
        if not path.is_file():
            raise ModelError(f"model: {path} not found (named by the [int8] table of {card.folder / 'card.toml'})")
        if verify:
            actual = sha256_file(path)
            if actual != table[key]:
                raise ModelError(
                    f"model: {path} does not match its card (sha256 {actual[:12]}..., "
                    f"card int8.{key} says {str(table[key])[:12]}...)"
                )
    return xml


#: Channels of a YOLO detection head's output per anchor before the class scores (cx, cy, w, h).
BOX_CHANNELS = 4


def check_model_io(card: ModelCard, model_file: Path, input_hw: tuple[int | None, int | None],
                   output_channels: int | None) -> None:
    """Refuse a model whose input size or class count contradicts its card.

    Called by each runtime with the shapes it reads from the compiled graph. A YOLO head's output has
    ``4 + nc`` channels per anchor (a box, then one score per class): a card listing other classes would
    name detections wrongly or miss classes (a defect of an unlisted class passes as OK).

    Args:
        card: The model's card.
        model_file: The file the runtime loaded (the ONNX file, or the INT8 IR).
        input_hw: The model's input height and width; None where the graph leaves the size open.
        output_channels: Channels per anchor of the model's output; None where unknown.

    Raises:
        ModelError: One line naming the card and both numbers.
    """
    card_path = card.folder / "card.toml"
    h, w = input_hw
    if (h is not None and h != card.input_height) or (w is not None and w != card.input_width):
        raise ModelError(
            f"model: {card_path}: input_width x input_height = {card.input_width} x {card.input_height}, but "
            f"{model_file.name} takes {w if w is not None else 'any'} x {h if h is not None else 'any'}"
        )
    nc = len(card.classes)
    if output_channels is not None and output_channels != BOX_CHANNELS + nc:
        has = (f"detects {output_channels - BOX_CHANNELS}" if output_channels > BOX_CHANNELS
               else "is no detection head")
        raise ModelError(
            f"model: {card_path}: classes lists {nc}, but {model_file.name} {has} (its output has "
            f"{output_channels} channels per box, {BOX_CHANNELS} + one per class)"
        )


#: Largest model input side the runtime accepts (a bigger one is a typo or a forged card).
MAX_INPUT_SIDE = 8192
#: Card metrics that are rates or scores, so must lie in [0, 1].
UNIT_METRICS = ("threshold", "mAP50", "mAP50_95", "escape_rate", "false_reject_rate", "iou_threshold")


def _strict_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise TypeError(f"expected an integer, got {v!r}")
    return int(v)


def _unit(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0


def card_problem(card: ModelCard, raw: dict[str, Any]) -> str:
    """The first out-of-range value of a card, as ``field: what is wrong``; empty when all are sane."""
    for side in ("input_width", "input_height"):
        v = getattr(card, side)
        if not 32 <= v <= MAX_INPUT_SIDE or v % 32:
            return f"{side} = {v}: must be a multiple of 32 in 32..{MAX_INPUT_SIDE}"
    if not 0 <= card.pad_value <= 255:
        return f"pad_value = {card.pad_value}: must lie in 0..255"
    if len(card.sha256) != 64 or any(c not in "0123456789abcdef" for c in card.sha256):
        return "sha256: must be 64 lowercase hex digits"
    if not card.name.strip():
        return "name: must not be empty"
    if not isinstance(raw["classes"], list) or not card.classes:
        return "classes: must be a non-empty list of names"
    if any(not c.strip() for c in card.classes) or len(set(card.classes)) != len(card.classes):
        return "classes: names must be non-empty and unique"
    metrics = card.extra.get("metrics", {})
    for key in UNIT_METRICS:
        if key in metrics and not _unit(metrics[key]):
            return f"metrics.{key} = {metrics[key]!r}: must be a number in 0..1"
    per_class = metrics.get("per_class_AP50", {})
    if isinstance(per_class, dict):
        for name, v in per_class.items():
            if not _unit(v):
                return f"metrics.per_class_AP50.{name} = {v!r}: must be a number in 0..1"
    return _class_thresholds_problem(metrics, card.classes) or _int8_problem(raw.get("int8"))


def _class_thresholds_problem(metrics: dict[str, Any], classes: tuple[str, ...]) -> str:
    """What is wrong with ``metrics.class_thresholds`` and its ``class_threshold_calibration`` (absent: nothing)."""
    table = metrics.get("class_thresholds", {})
    if not isinstance(table, dict):
        return f"metrics.class_thresholds = {table!r}: must be a table of CLASS = SCORE"
    for name, v in table.items():
        if name not in classes:
            return f"metrics.class_thresholds.{name}: not a class of this model ({', '.join(classes)})"
        if not _unit(v):
            return f"metrics.class_thresholds.{name} = {v!r}: must be a number in 0..1"
    note = metrics.get("class_threshold_calibration", "")
    if not isinstance(note, str):
        return f"metrics.class_threshold_calibration = {note!r}: must be text (the rule and the data)"
    return ""


def _is_hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _int8_problem(table: Any) -> str:
    """What is wrong with a card's ``[int8]`` table (absent: nothing)."""
    if table is None:
        return ""
    if not isinstance(table, dict):
        return "int8: must be a table"
    file = table.get("file")
    if not isinstance(file, str) or not file.endswith(".xml") or Path(file).name != file:
        return f"int8.file = {file!r}: must be an .xml file name in the model folder"
    for key in ("sha256", "bin_sha256"):
        if not _is_hex64(table.get(key)):
            return f"int8.{key}: must be 64 lowercase hex digits"
    metrics = table.get("metrics", {})
    if isinstance(metrics, dict):
        for key in (*UNIT_METRICS, "box_recall_iou90"):
            if key in metrics and not _unit(metrics[key]):
                return f"int8.metrics.{key} = {metrics[key]!r}: must be a number in 0..1"
    return ""


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer: top-level keys, then tables (one level of nesting, plus sub-tables)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")

    def emit(prefix: str, table: dict[str, Any]) -> None:
        lines.append("")
        lines.append(f"[{prefix}]")
        subs = []
        for k, v in table.items():
            if isinstance(v, dict):
                subs.append((k, v))
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in subs:
            emit(f"{prefix}.{k}", v)

    for k, v in tables:
        emit(k, v)
    return "\n".join(lines) + "\n"
