"""The two result types sinks take: `InspectionResult` (one frame) and `PartResult` (one part)."""

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
    #: the camera's anomaly model (`inspector.anomaly`) and its memory bank's sha256; empty when it runs none
    anomaly_model: str = ""
    anomaly_sha256: str = ""


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
    #: The trigger the frame answers (triggered cameras), and the part it belongs to once
    #: the part tracker matched it; None for free-running cameras.
    trigger_id: int | None = None
    part_id: str | None = None
    #: True when the frame arrived after its part's verdict (stored, never counted for it)
    late: bool = False
    #: the anomaly model's image score (NG at or above the camera's anomaly threshold, normally 1.0);
    #: None when the camera runs no anomaly model
    anomaly_score: float | None = None
    #: its patch scores (gh, gw) on the model's input grid, for heat maps (`inspector.anomaly.teach.heat_map`)
    anomaly_map: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def ng(self) -> bool:
        return self.verdict is Verdict.NG


@dataclass(frozen=True)
class PartTimes:
    """Milliseconds of one part's cycle, each from its trigger (the photo-eye or PLC)."""

    acquired_ms: float = 0.0  # trigger -> last of its frames acquired (encoder delay + exposure + readout)
    inspected_ms: float = 0.0  # trigger -> last of its frames inspected
    verdict_ms: float = 0.0  # trigger -> part verdict (what the budget is measured against)

    def as_dict(self) -> dict[str, float]:
        return {"acquired": self.acquired_ms, "inspected": self.inspected_ms, "verdict": self.verdict_ms}


@dataclass(frozen=True)
class PartResult:
    """The verdict on one part: every camera's frame of it, one decision, the deadline kept or not.

    ``reason`` says what decided: ``"line-cam2: scratch>=0.40"``, ``"no defect"``, or for a
    part not fully inspected by its deadline ``"incomplete: line-cam3 no image"`` (always NG:
    fail safe). ``truth_ng`` is the union of the frames' ground truth (simulated parts),
    None when unknown.
    """

    part_id: str
    line: str
    trigger_id: int
    triggered_at: float  # wall clock, seconds since the epoch
    verdict: Verdict
    reason: str
    frames: tuple[InspectionResult, ...]
    expected: tuple[str, ...]  # the cameras that owe a frame
    missing: tuple[str, ...] = ()
    deciding_camera: str | None = None
    budget_ms: float = 0.0
    deadline_met: bool = True
    times: PartTimes = field(default_factory=PartTimes)
    truth_ng: bool | None = None
    recipe: str = ""

    @property
    def ng(self) -> bool:
        return self.verdict is Verdict.NG

    @property
    def incomplete(self) -> bool:
        return bool(self.missing)


def detections_from_array(arr: np.ndarray, names: tuple[str, ...]) -> tuple[Detection, ...]:
    """Build detections from an ``(N, 6)`` array of ``x1 y1 x2 y2 score class``."""
    return detections_from_rows(arr.tolist(), names)


def detections_from_rows(rows: list[list[float]], names: tuple[str, ...]) -> tuple[Detection, ...]:
    """`detections_from_array` for rows already given as lists."""
    out = []
    for x1, y1, x2, y2, score, cls in rows:
        c = int(cls)
        out.append(
            Detection(float(x1), float(y1), float(x2), float(y2), c, float(min(1.0, max(0.0, score))), names[c] if c < len(names) else str(c))
        )
    return tuple(out)
