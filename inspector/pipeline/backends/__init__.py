"""Inference backends. Imported lazily so a station only loads the runtime it uses."""

from __future__ import annotations

from inspector.pipeline.backends.base import Backend, BackendUnavailable, BatchItem, BatchOutput
from inspector.pipeline.model_repo import ModelCard

BACKENDS = ("openvino", "onnxruntime", "tensorrt")


def create_backend(
    name: str,
    card: ModelCard,
    *,
    max_batch: int,
    device: str = "CPU",
    threads: int = 0,
    precision: str = "auto",
    depth: int = 1,
    streams: int | str = 0,
    nms_iou: float | None = None,
    batch: int = 0,
) -> Backend:
    """Build the named backend for one inference device.

    ``depth``: batches it can have in flight at once (CPU runtimes: one u8 buffer and infer
    request each). ``streams``: OpenVINO streams (0: one, all cores on each batch;
    ``auto``: one while the runtime is idle, two for batches that come while another runs).
    ``nms_iou``: OpenVINO decodes and suppresses inside the graph at this IoU and its outputs carry
    the detections (`BatchOutput.detections`); the others ignore it. ``batch``: the frames in a batch of the
    station's worker when all its cameras have one waiting (0: ``max_batch``), what OpenVINO's ``auto`` times
    the precisions at (`precision_choice`).

    Raises:
        BackendUnavailable: The runtime or device is missing (the message says what).
        ValueError: Unknown backend name.
    """
    if name == "openvino":
        from inspector.pipeline.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(card, max_batch, device, threads, precision, depth=depth, streams=streams,
                               nms_iou=nms_iou, batch=batch)
    if name == "onnxruntime":
        from inspector.pipeline.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(card, max_batch, device, threads, depth=depth)
    if name == "tensorrt":
        try:
            from inspector.pipeline.backends.tensorrt_backend import TensorRtBackend
        except ImportError as exc:
            raise BackendUnavailable(f"backend tensorrt: {exc}") from None
        return TensorRtBackend(card, max_batch, device)
    raise ValueError(f"backend: unknown {name!r} (choose from {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "BatchItem", "BatchOutput", "create_backend"]
