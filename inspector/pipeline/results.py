"""The one result type every sink takes: `InspectionResult`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from camera.frame_pool import FrameHandle
    from camera.renderer import GroundTruth


class Verdict(str, enum.Enum):
    """Part-level decision."""

    OK = "OK"
    NG = "NG"


@dataclass(frozen=True)
class Detection:
    """One detected defect in frame pixels (xyxy)."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    score: float
    class_name: str = ""

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def __post_init__(self) -> None:
        if not (self.x2 >= self.x1 and self.y2 >= self.y1):
            raise ValueError(f"detection box is not xyxy: {(self.x1, self.y1, self.x2, self.y2)}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"detection score out of 0..1: {self.score}")


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds spent per stage for one frame (batch stages are shared by the batch)."""

    wait_ms: float = 0.0  # acquired -> taken by the scheduler
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    verdict_ms: float = 0.0
    total_ms: float = 0.0  # acquired -> result built

    def as_dict(self) -> dict[str, float]:
        return {
            "wait": self.wait_ms,
            "preprocess": self.preprocess_ms,
            "inference": self.inference_ms,
            "postprocess": self.postprocess_ms,
            "verdict": self.verdict_ms,
            "total": self.total_ms,
        }


@dataclass(frozen=True)
class Provenance:
    """What produced a result: the model, its thresholds and the camera's settings."""

    model_name: str
    model_sha256: str
    backend: str
    thresholds: tuple[tuple[str, float], ...] = ()
    camera_settings_digest: str = ""
    #: sha256 of the model card (its thresholds and metrics), not only of the ONNX file
    card_sha256: str = ""


@dataclass(frozen=True)
class InspectionResult:
    """The outcome of inspecting one frame.

    ``detections`` are the defects the verdict rules counted; ``rejected`` those the
    model reported but a rule discarded (below threshold, too small, outside the ROI).
    ``frame`` carries the pixels to sinks that need them (archive, display); it is not
    part of the value and sinks that keep it must `retain` it.
    """

    camera_id: str
    sequence: int
    acquired_at: float  # wall clock, seconds since the epoch
    verdict: Verdict
    rule: str  # which rule decided, e.g. "scratch>=0.40" or "no defect"
    detections: tuple[Detection, ...]
    times: StageTimes
    provenance: Provenance
    frame_width: int = 0
    frame_height: int = 0
    rejected: tuple[Detection, ...] = ()
    truth: GroundTruth | None = field(default=None, compare=False)
    frame: FrameHandle | None = field(default=None, compare=False, repr=False)

    @property
    def ng(self) -> bool:
        return self.verdict is Verdict.NG


def detections_from_array(arr: np.ndarray, names: tuple[str, ...]) -> tuple[Detection, ...]:
    """Build detections from an ``(N, 6)`` array of ``x1 y1 x2 y2 score class``."""
    out = []
    for x1, y1, x2, y2, score, cls in arr.tolist():
        c = int(cls)
        out.append(
            Detection(float(x1), float(y1), float(x2), float(y2), c, float(min(1.0, max(0.0, score))), names[c] if c < len(names) else str(c))
        )
    return tuple(out)
