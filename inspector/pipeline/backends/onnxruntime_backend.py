"""ONNX Runtime backend: the reference arithmetic on the host, then the plain ONNX graph."""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.pipeline.backends.base import BackendClosed, BackendUnavailable, CpuBatchBackend
from inspector.pipeline.model_repo import ModelCard, ModelError
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
        self._session: Any = session  # None once closed

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
