"""ONNX Runtime backend: the reference arithmetic on the host, then the plain ONNX graph."""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.pipeline.backends.base import BackendClosed, BackendUnavailable, CpuBatchBackend
from inspector.pipeline.model_repo import ModelCard, ModelError, check_model_io
from inspector.pipeline.preprocess import batch_to_tensor


class OnnxRuntimeBackend(CpuBatchBackend):
    """ONNX Runtime (CPU execution provider unless another is named).

    Args:
        card: Model card.
        max_batch: Largest batch.
        device: ``CPU`` or ``CUDA`` (CUDA needs onnxruntime-gpu).
        threads: Intra-op threads (0: ONNX Runtime decides).
    """

    name = "onnxruntime"

    def __init__(
        self, card: ModelCard, max_batch: int = 8, device: str = "CPU", threads: int = 0, depth: int = 1
    ) -> None:
        # runs synchronously in `start`: with depth 2 a batch infers while the one before is decided
        super().__init__(card, max_batch, device, depth)
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a runtime dependency
            raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.upper() == "CUDA" else ["CPUExecutionProvider"]
        if device.upper() == "CUDA" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable("onnxruntime: CUDAExecutionProvider is not available (install onnxruntime-gpu)")
        try:
            session = ort.InferenceSession(str(card.path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ModelError(f"model: {card.path} cannot be loaded by onnxruntime: {text}") from None
        self._input = session.get_inputs()[0].name
        self._check_io(session)
        self._session: Any = session  # None once closed

    def _check_io(self, session: Any) -> None:
        """The input size and class count against the card (`check_model_io`). ONNX Runtime leaves the
        head's channel count symbolic in the file's shapes, so one blank input at the card's size says it."""
        card = self.card
        shape = session.get_inputs()[0].shape
        hw = [d if isinstance(d, int) else None for d in shape[2:4]] if len(shape) == 4 else [None, None]
        check_model_io(card, card.path, (hw[0], hw[1]), None)
        out_shape = list(session.get_outputs()[0].shape)
        if len(out_shape) == 3 and not isinstance(out_shape[1], int):
            blank = np.zeros((1, 3, card.input_height, card.input_width), np.float32)
            try:
                out_shape = list(session.run(None, {self._input: blank})[0].shape)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                raise ModelError(f"model: {card.path} cannot be run by onnxruntime: {text}") from None
        channels = out_shape[1] if len(out_shape) == 3 and isinstance(out_shape[1], int) else None
        check_model_io(card, card.path, (None, None), channels)

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:
        return self.run_tensor(batch_to_tensor(batch_u8))

    def run_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """Run on an already normalised ``(B, 3, H, W)`` float32 tensor."""
        if self._session is None:
            raise BackendClosed(f"onnxruntime: backend for {self.card.name} is closed (its recipe was retired)")
        return self._session.run(None, {self._input: tensor})[0]

    def close(self) -> None:
        """Let go of the session (its memory and thread pool) now, not when the last reference goes."""
        self._session = None
