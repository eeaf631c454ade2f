"""INT8 feature extractor without NNCF: FakeQuantize nodes inserted into the backbone's graph.

OpenVINO's CPU plugin runs a convolution in int8 when FakeQuantize nodes sit on its activation input
and on its weights (its low-precision transformations turn them into u8/i8 convolutions with the
scales folded into the output). The weights' ranges come from the weights (symmetric, per output
channel); the activations' ranges are measured on the teaching images (`calibrate`), recorded in the
model's card and applied at run time (`quantized`), so neither the station nor teaching needs NNCF.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The ops whose inputs are quantised (the backbone's 1x1, full and depthwise convolutions).
QUANTISED = ("Convolution", "GroupConvolution")


def activation_inputs(model: Any) -> list[Any]:
    """The activation input (an ``ov.Output``) of every convolution of ``model``, in topological order."""
    return [op.input_value(0) for op in model.get_ordered_ops() if op.get_type_name() in QUANTISED]


def with_range_outputs(model: Any) -> Any:
    """A copy of ``model``'s graph with two more outputs per convolution after its own: the lowest and the
    highest value of the convolution's activation input over the batch (`ranges_of` reads them)."""
    import openvino as ov
    import openvino.opset13 as ops

    outs = list(model.outputs)
    for value in activation_inputs(model):
        axes = ops.constant(np.arange(len(value.get_partial_shape()), dtype=np.int64))
        outs += [ops.reduce_min(value, axes, False).output(0), ops.reduce_max(value, axes, False).output(0)]
    return ov.Model(outs, list(model.get_parameters()), model.get_friendly_name())


class RangeTracker:
    """The running (low, high) of every convolution's activation input, from a `with_range_outputs` model's
    request after each batch (teaching: the same pass that extracts the features)."""

    def __init__(self, first: int, count: int) -> None:
        self._first = first
        self.low = np.full(count, np.inf)
        self.high = np.full(count, -np.inf)

    def update(self, request: Any) -> None:
        for i in range(len(self.low)):
            k = self._first + 2 * i
            self.low[i] = min(self.low[i], float(request.get_output_tensor(k).data))
            self.high[i] = max(self.high[i], float(request.get_output_tensor(k + 1).data))

    def ranges(self) -> list[tuple[float, float]]:
        """One (low, high) per convolution, rounded outwards to 4 decimals (they go into the card)."""
        if not np.all(np.isfinite(self.low)):
            raise ValueError("anomaly: no batch seen, no activation ranges")
        return [(float(np.floor(lo * 1e4) / 1e4), float(np.ceil(hi * 1e4) / 1e4)) for lo, hi in zip(self.low, self.high)]


def calibrate(model: Any, batches: Iterable[np.ndarray]) -> list[tuple[float, float]]:
    """(low, high) of every convolution's activation input over ``batches`` (u8 NHWC, as the model takes),
    the model run in f32."""
    import openvino as ov

    probe = with_range_outputs(model)
    request = ov.Core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    tracker = RangeTracker(len(model.outputs), len(activation_inputs(model)))
    for batch in batches:
        request.infer({0: batch})
        tracker.update(request)
    return tracker.ranges()


def quantized(model: Any, ranges: Sequence[Sequence[float]], keep_float: Collection[int] = ()) -> Any:
    """``model`` (changed in place and returned) with FakeQuantize on every convolution's activation
    input (``ranges``, from `calibrate`, 256 levels) and weights (symmetric per output channel, 255 levels),
    but those whose index (in `activation_inputs`' order) is in ``keep_float``.

    Raises:
        ValueError: ``ranges`` does not have one (low, high) per convolution.
    """
    import openvino.opset13 as ops

    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in QUANTISED]
    if len(convs) != len(ranges):
        raise ValueError(f"anomaly: {len(ranges)} activation ranges for {len(convs)} convolutions")
    for i, (conv, (lo, hi)) in enumerate(zip(convs, ranges)):
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)  # zero must be exact (padding)
        if hi - lo < 1e-6 or i in keep_float:
            continue
        low, high = ops.constant(np.float32(lo)), ops.constant(np.float32(hi))
        act = ops.fake_quantize(conv.input_value(0), low, high, low, high, 256)
        conv.input(0).replace_source_output(act.output(0))
        weights = conv.input_value(1).get_node()
        if weights.get_type_name() != "Constant":
            continue
        w = weights.get_data().astype(np.float32)
        axes = tuple(range(1, w.ndim))
        w_max = np.maximum(np.abs(w).max(axis=axes, keepdims=True), 1e-12).astype(np.float32)
        wq = ops.fake_quantize(weights.output(0), ops.constant(-w_max), ops.constant(w_max), ops.constant(-w_max),
                               ops.constant(w_max), 255)
        conv.input(1).replace_source_output(wq.output(0))
    model.validate_nodes_and_infer_types()
    return model
