"""INT8 post-training quantization of a model's OpenVINO graph with NNCF (the ``quantize`` extra).

``inspector quantize --model NAME`` calibrates the graph the runtime compiles (the card's ONNX
with the u8 BGR NHWC preprocessing fused in, `openvino_backend.runtime_model`) on letterboxed
frames of *training* seeds only (0..N-1; held-out seeds start at 1,000,000), keeps the Detect
head's box branch, DFL and box decoding, the first two convolutions and the sigmoids in f32
(`ignored_scope_for`), and writes ``model_int8.xml/.bin`` into the model
folder. It then evaluates INT8 and FP32 side by side on held-out seeds and records the IR's
sha256s, the calibration, the held-out metrics and the gate in the card's ``[int8]`` table:

- held-out escape rate <= 0.5% and false-reject rate <= 1% at the card's threshold, and
- >= 98% of the FP32 model's boxes (score >= threshold) found again by INT8, same class, IoU >= 0.9.

The runtime never imports NNCF: it only reads the IR (``precision = "int8"``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from camera.renderer import render_part
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import (
    INT8_XML,
    ModelCard,
    ModelError,
    dump_toml,
    load_card,
    sha256_file,
)
from inspector.pipeline.preprocess import Letterbox, letterbox_into
from inspector.quality.dataset import HELD_OUT_SEED_BASE
from inspector.quality.evaluation import detect_frames, evaluate

log = logging.getLogger(__name__)

PRESETS = ("mixed", "performance")
#: How activation ranges are calibrated: ``minmax``, the whole range seen on the calibration frames,
#: or NNCF's default estimator, which clips outliers. Side by side on 400 held-out frames (same
#: scope, no accuracy control): 97.7% of FP32's boxes found again at IoU 0.9 with minmax, 80.6% with
#: the default; clipped activations move box edges, the same speed.
RANGES = ("minmax", "nncf-default")
#: The gate a card's INT8 model must pass before ``auto`` may choose it.
GATE_ESCAPE_MAX = 0.005
GATE_FALSE_REJECT_MAX = 0.01
GATE_BOX_RECALL_MIN = 0.98
GATE_IOU = 0.9


class QuantizeUnavailable(RuntimeError):
    """NNCF is not installed (one-line reason)."""


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_model` wrote and measured."""

    xml: Path
    int8: dict[str, Any]
    f32: dict[str, Any]
    box_recall: float
    gate_passed: bool


def calibration_seeds(count: int, first: int = 0) -> range:
    """Training seeds ``first .. first+count-1``; refuses any held-out seed.

    Raises:
        ValueError: The range reaches into the held-out seeds.
    """
    if count < 1 or first < 0 or first + count > HELD_OUT_SEED_BASE:
        raise ValueError(
            f"calibration: seeds {first}..{first + count - 1} must be training seeds (0..{HELD_OUT_SEED_BASE - 1})"
        )
    return range(first, first + count)


def calibration_batches(card: ModelCard, seeds: range, width: int = 320, height: int = 320) -> Iterator[np.ndarray]:
    """Letterboxed ``(1, H, W, 3)`` BGR u8 inputs of rendered training frames, every fourth Mono8 (as in
    evaluation), through the runtime's own letterbox."""
    box = Letterbox.fit(width, height, card.input_width, card.input_height)
    for i, seed in enumerate(seeds):
        frame = render_part(seed, width, height, mono=(i % 4 == 3))
        batch = np.empty((1, card.input_height, card.input_width, 3), np.uint8)
        letterbox_into(batch[0], frame.image, "Mono8" if frame.image.ndim == 2 else "BGR8", box)
        yield batch


def head_prefix(model: Any) -> str:
    """The Detect head's node-name prefix (``/model.23``), found from its DFL softmax; empty if none."""
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() == "Softmax" and "/dfl/" in name:
            return name.split("/dfl/")[0]
    return ""


def ignored_scope_for(model: Any) -> Any:
    """What stays in f32: the Detect head's box branch (``cv2``: its logits feed the DFL, and a one-bin
    shift moves a box edge by a stride), the DFL, the box decoding (anchors, strides, dist2bbox), the first
    two convolutions (they see the raw pixels) and every Sigmoid; the class branch and the rest are INT8.

    Measured on 240 held-out frames against FP32 (box found again, same class, IoU >= 0.9): the head's
    decoding alone kept 61%, plus the box branch 76% (80% with full bias correction), plus the first two
    convolutions 83%; the whole neck and head in f32 also 83%, for much less speed.

    Narrower scopes side by side (800 frames of training seeds 5000-5799 against FP32 at IoU 0.9, no
    accuracy control; INT8/f32 throughput with AVX2 kernels, ``ONEDNN_MAX_CPU_ISA=AVX2`` on a Xeon, batch 8,
    one stream / two): this scope 97.7%, 1.31x/1.35x; only the box branch's last convolutions
    (``cv2.*.2``) instead of all of it 97.9%, 1.51x/1.55x; the DFL and decoding alone 95.4%, 1.59x/1.69x;
    nothing but the sigmoids 49.9%, 1.59x/1.65x. Held out (2,000 frames, float parts at bf16 on AMX) the
    ``cv2.*.2`` scope found 96.5% again, 97.9% after ``--accuracy-control 600 --accuracy-target 0.99``
    (39 operations back, 1.26x): both short of the gate's 98%, so the shipped IR keeps this scope."""
    import re

    import nncf

    prefix = head_prefix(model)
    patterns = ["^/model\\.[01]/.*"]
    if prefix:
        p = re.escape(prefix)
        patterns += [f"^{p}/dfl/.*", f"^{p}/(Add|Sub|Mul|Div)(_\\d+)?$", f"^{p}/cv2\\..*"]
    return nncf.IgnoredScope(patterns=patterns, types=["Sigmoid"], validate=False)


def box_recall(
    card: ModelCard, *, count: int, seed_base: int, threshold: float, width: int = 320, height: int = 320,
    batch: int = 8, iou: float = GATE_IOU,
) -> tuple[float, int]:
    """Share of the FP32 model's boxes (score >= threshold) that INT8 finds again: a box of the same class,
    score >= threshold, IoU >= ``iou``. Returns ``(share, fp32 boxes)``."""
    f32 = create_backend("openvino", card, max_batch=batch, precision="f32")
    i8 = create_backend("openvino", card, max_batch=batch, precision="int8")
    found = total = 0
    for start in range(0, count, batch):
        frames = [render_part(seed_base + i, width, height, mono=(i % 4 == 3))
                  for i in range(start, min(count, start + batch))]
        for a, b in zip(detect_frames(f32, card, frames, width, height), detect_frames(i8, card, frames, width, height)):
            a = a[a[:, 4] >= threshold]
            b = b[b[:, 4] >= threshold]
            total += len(a)
            found += found_again(a, b, iou)
    f32.close()
    i8.close()
    return (found / total if total else 1.0), total


class BoxRecall:
    """NNCF's validation function for accuracy control: the share of the FP32 model's boxes (score >=
    ``threshold``, on ``frames``) that a candidate model finds again (same class, IoU >= 0.9), in
    input pixels (the frames are letterboxed inputs)."""

    def __init__(self, f32_model: Any, frames: list[np.ndarray], threshold: float) -> None:
        self.threshold = threshold
        self._ref = {id(b): self._boxes(f32_model(b)[0][0]) for b in frames}
        self.total = sum(len(v) for v in self._ref.values())

    def _boxes(self, raw: np.ndarray) -> np.ndarray:
        from inspector.pipeline.postprocess import decode_yolo, nms

        d = nms(decode_yolo(raw, 0.05), 0.5)
        return d[d[:, 4] >= self.threshold]

    def __call__(self, model: Any, frames: Any) -> float:
        found = total = 0
        for b in frames:
            want = self._ref[id(b)]
            total += len(want)
            found += found_again(want, self._boxes(model(b)[0][0]))
        return found / total if total else 1.0


def found_again(want: np.ndarray, got: np.ndarray, iou: float = GATE_IOU) -> int:
    """How many of the ``(N, 6)`` boxes ``want`` have a box of the same class in ``got`` at IoU >= ``iou``."""
    found = 0
    for row in want:
        same = got[got[:, 5] == row[5]]
        found += int(len(same) > 0 and float(_iou(row[:4], same[:, :4]).max()) >= iou)
    return found


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def quantize_model(
    model: str | Path,
    *,
    calibration: int = 300,
    preset: str = "mixed",
    ranges: str = "minmax",
    eval_frames: int = 2000,
    threshold: float | None = None,
    accuracy_control: int = 0,
    accuracy_target: float = GATE_BOX_RECALL_MIN,
    progress: Callable[[str], None] = lambda _msg: None,
) -> QuantizeReport:
    """Quantize a model folder's OpenVINO graph to INT8, evaluate it beside FP32, record it in the card.

    Args:
        model: Model name or folder.
        calibration: Calibration frames (training seeds 0..calibration-1).
        preset: NNCF preset: ``mixed`` (asymmetric activations) or ``performance`` (symmetric).
        ranges: Activation ranges: ``minmax`` (all that calibration saw) or ``nncf-default``
            (NNCF's estimator, which clips outliers), see `RANGES`.
        eval_frames: Held-out frames (seeds 1,000,000..) for the metrics and the gate.
        threshold: Verdict threshold (default: the card's metrics.threshold, else 0.25).
        accuracy_control: With N > 0, NNCF's accuracy control: the quantized operations whose
            INT8 costs most of the FP32 model's boxes (found again at IoU >= 0.9, `BoxRecall`) on N
            training frames after the calibration seeds go back to f32, until the gate's share
            is reached or its search ends (minutes on a 2-core CPU).
        accuracy_target: The share of FP32 boxes accuracy control aims for on its frames (the
            gate's 98% by default; above it, to leave room for the held-out frames).
        progress: Called with one line per step (the CLI echoes it).

    Raises:
        QuantizeUnavailable: NNCF is not installed.
        ModelError: The model cannot be read or written.
        ValueError: A bad preset or calibration size.
    """
    nncf, ov = _nncf_and_openvino()
    from inspector.pipeline.backends.openvino_backend import runtime_model

    _check_options(preset, ranges, accuracy_target)
    seeds = calibration_seeds(calibration)
    card = load_card(model)
    thr = threshold if threshold is not None else (card.threshold if card.threshold is not None else 0.25)
    core = ov.Core()
    graph = runtime_model(core, card, fused=True)
    scope = ignored_scope_for(graph)
    progress(f"quantizing {card.name}: NNCF {nncf.__version__}, preset {preset}, {calibration} calibration frames "
             f"(training seeds {seeds.start}..{seeds.stop - 1}), f32 kept for {', '.join(scope.patterns) or '-'} "
             f"and {', '.join(scope.types)}, activation ranges {ranges}")
    quantized = _quantize(graph, card, core, seeds, scope, preset=preset, ranges=ranges, threshold=thr,
                          accuracy_control=accuracy_control, accuracy_target=accuracy_target, progress=progress)
    xml = _save_int8_ir(quantized, card)
    table = _int8_table(xml, seeds, scope, preset=preset, ranges=ranges, accuracy_control=accuracy_control,
                        accuracy_target=accuracy_target)
    # the card names the files before the evaluation loads them through the checked path
    _write_int8_table(card, table)
    progress(f"wrote {xml} (+ .bin); evaluating INT8 and FP32 on {eval_frames} held-out frames ...")
    report, held_out = _evaluate_held_out(card, xml, eval_frames, thr)
    _write_int8_table(card, table | held_out)
    return report


def _nncf_and_openvino() -> tuple[ModuleType, ModuleType]:
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise QuantizeUnavailable("quantize needs NNCF: pip install -e '.[quantize]'") from None
    return nncf, ov


def _check_options(preset: str, ranges: str, accuracy_target: float) -> None:
    if preset not in PRESETS:
        raise ValueError(f"preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if not 0.0 < accuracy_target <= 1.0:
        raise ValueError(f"accuracy_target: {accuracy_target!r} is not a share in (0, 1]")
    if ranges not in RANGES:
        raise ValueError(f"ranges: {ranges!r} is not one of {', '.join(RANGES)}")


def _quantize(
    graph: Any, card: ModelCard, core: Any, seeds: range, scope: Any, *, preset: str, ranges: str, threshold: float,
    accuracy_control: int, accuracy_target: float, progress: Callable[[str], None],
) -> Any:
    """NNCF's INT8 graph of ``graph`` calibrated on ``seeds``; with ``accuracy_control`` frames after them, the
    operations that cost most FP32 boxes go back to f32."""
    import nncf

    dataset = nncf.Dataset(list(calibration_batches(card, seeds)))
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        "subset_size": len(seeds),
        "ignored_scope": scope,
        "fast_bias_correction": False,  # full bias correction: +4 points of boxes found again at IoU 0.9
    }
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced = AdvancedQuantizationParameters(
        **({"activations_range_estimator_params": RangeEstimatorParametersSet.MINMAX} if ranges == "minmax" else {}))
    if not accuracy_control:
        return nncf.quantize(graph, dataset, advanced_parameters=advanced, **common)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from inspector.pipeline.backends.openvino_backend import runtime_model

    val_seeds = calibration_seeds(accuracy_control, first=seeds.stop)
    val = list(calibration_batches(card, val_seeds))
    recall = BoxRecall(core.compile_model(runtime_model(core, card), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}),
                       val, threshold)
    progress(f"accuracy control: f32 again for what costs most FP32 boxes at IoU >= {GATE_IOU} on training seeds "
             f"{val_seeds.start}..{val_seeds.stop - 1} ({recall.total} boxes), until {accuracy_target:.1%} "
             f"or 30 steps ...")
    return nncf.quantize_with_accuracy_control(
        graph, dataset, nncf.Dataset(val), validation_fn=recall, max_drop=1.0 - accuracy_target,
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            ranking_subset_size=min(100, len(val)), max_num_iterations=30),
        advanced_quantization_parameters=advanced,
        **common,
    )


def _save_int8_ir(quantized: Any, card: ModelCard) -> Path:
    import openvino as ov

    xml = card.folder / INT8_XML
    try:
        # no fp16 weight compression: what stays unquantized keeps its trained f32 weights
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"model: cannot write {xml}: {exc}") from None
    return xml


def _int8_table(
    xml: Path, seeds: range, scope: Any, *, preset: str, ranges: str, accuracy_control: int, accuracy_target: float,
) -> dict[str, Any]:
    """The card's ``[int8]`` table for the IR at ``xml``: its files, sha256s, tool and calibration."""
    import nncf
    import openvino as ov

    return {
        "file": INT8_XML,
        "sha256": sha256_file(xml),
        "bin_sha256": sha256_file(xml.with_suffix(".bin")),
        "created": _dt.date.today().isoformat(),
        "tool": f"nncf {nncf.__version__}, openvino {ov.__version__}",
        "preset": preset,
        "activation_ranges": ranges,
        "calibration_frames": len(seeds),
        "calibration_seeds": [seeds.start, seeds.stop - 1],
        "not_quantized": ", ".join([*scope.patterns, *scope.types]),
        **({"accuracy_control": f"box recall vs FP32 at IoU {GATE_IOU} on training seeds "
                                f"{seeds.stop}..{seeds.stop + accuracy_control - 1}, max drop "
                                f"{1.0 - accuracy_target:.3g}, 30 steps"} if accuracy_control else {}),
    }


def _evaluate_held_out(
    card: ModelCard, xml: Path, eval_frames: int, thr: float,
) -> tuple[QuantizeReport, dict[str, Any]]:
    """INT8 and FP32 side by side on ``eval_frames`` held-out frames, and the gate: the report, and the card's
    ``metrics``, ``metrics_f32`` and ``gate`` tables."""
    m8 = evaluate(card.folder, count=eval_frames, threshold=thr, precision="int8", seed_base=HELD_OUT_SEED_BASE)
    m32 = evaluate(card.folder, count=eval_frames, threshold=thr, precision="f32", seed_base=HELD_OUT_SEED_BASE)
    recall, boxes = box_recall(load_card(card.folder, int8=True), count=eval_frames, seed_base=HELD_OUT_SEED_BASE,
                               threshold=thr)
    passed = (m8["escape_rate"] <= GATE_ESCAPE_MAX and m8["false_reject_rate"] <= GATE_FALSE_REJECT_MAX
              and recall >= GATE_BOX_RECALL_MIN)
    tables = {
        "metrics": {
            "mAP50": round(m8["mAP50"], 4),
            "mAP50_95": round(m8["mAP50_95"], 4),
            "escape_rate": round(m8["escape_rate"], 5),
            "false_reject_rate": round(m8["false_reject_rate"], 5),
            "threshold": thr,
            "box_recall_iou90": round(recall, 5),
            "fp32_boxes": boxes,
            "latency_ms_per_image": round(m8["latency_ms_per_image"], 3),
            "eval_frames": eval_frames,
            "eval_seeds": m8["seeds"],
            "per_class_AP50": {k: round(v, 4) for k, v in m8["per_class_AP50"].items()},
        },
        "metrics_f32": {
            "mAP50": round(m32["mAP50"], 4),
            "mAP50_95": round(m32["mAP50_95"], 4),
            "escape_rate": round(m32["escape_rate"], 5),
            "false_reject_rate": round(m32["false_reject_rate"], 5),
            "latency_ms_per_image": round(m32["latency_ms_per_image"], 3),
        },
        "gate": _gate_table(m8, passed),
    }
    return QuantizeReport(xml, m8, m32, recall, passed), tables


def _gate_table(m8: dict[str, Any], passed: bool) -> dict[str, Any]:
    return {
        "passed": passed,
        "escape_max": GATE_ESCAPE_MAX,
        "false_reject_max": GATE_FALSE_REJECT_MAX,
        "box_recall_min": GATE_BOX_RECALL_MIN,
        "iou": GATE_IOU,
        "escapes": m8["escapes"],
        "defective_parts": m8["defective_parts"],
        "false_rejects": m8["false_rejects"],
        "ok_parts": m8["ok_parts"],
    }


def _write_int8_table(card: ModelCard, table: dict[str, Any]) -> None:
    path = card.folder / "card.toml"
    data = tomllib.loads(path.read_text())
    data["int8"] = table
    path.write_text(dump_toml(data))
