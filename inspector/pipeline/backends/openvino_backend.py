"""OpenVINO backend (CPU default): u8 BGR NHWC in, preprocessing inside the model.

PrePostProcessor adds u8->f32, BGR->RGB, /255 and NHWC->NCHW to the graph, so the
host only letterboxes u8 pixels into the batch buffer.
"""

from __future__ import annotations

import numpy as np

from inspector.pipeline.backends.base import BackendUnavailable, CpuBatchBackend
from inspector.pipeline.model_repo import ModelCard, ModelError


class OpenVinoBackend(CpuBatchBackend):
    """OpenVINO runtime with dynamic batch.

    Args:
        card: Model card (ONNX file, input size).
        max_batch: Largest batch the scheduler sends.
        device: OpenVINO device name (``CPU``, ``GPU``, ``NPU``).
        threads: Inference threads (0: OpenVINO decides).
        precision: ``auto`` (the device's default: bf16 on CPUs with AMX/AVX512-BF16), ``f32``,
            ``bf16`` or ``f16``.
    """

    name = "openvino"

    def __init__(
        self, card: ModelCard, max_batch: int = 8, device: str = "CPU", threads: int = 0, precision: str = "auto"
    ) -> None:
        super().__init__(card, max_batch, device)
        try:
            import openvino as ov
            from openvino.preprocess import ColorFormat, PrePostProcessor
        except ImportError as exc:  # pragma: no cover - a runtime dependency
            raise BackendUnavailable("openvino is not installed: pip install openvino") from exc
        core = ov.Core()
        try:
            model = core.read_model(str(card.path))
            name = model.input(0).get_any_name()
            model.reshape({name: ov.PartialShape([-1, 3, card.input_height, card.input_width])})
        except (RuntimeError, ValueError, IndexError) as exc:
            # a file that matches its card's sha256 but is no model (or not this card's model)
            raise ModelError(f"model: {card.path} cannot be loaded by openvino: {_first_line(exc)}") from None
        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.BGR
        )
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
        model = ppp.build()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = {"f32": "f32", "bf16": "bf16", "f16": "f16"}[precision]
        try:
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise BackendUnavailable(f"openvino: device {device!r} cannot run the model: {_first_line(exc)}") from exc
        self._request = self._compiled.create_infer_request()

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch_u8})
        return np.array(self._request.get_output_tensor(0).data, copy=True)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
