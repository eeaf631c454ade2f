"""The station's side of anomaly models: ``[cameras.anomaly]`` loaded, checked and compiled per worker.

`load_camera_anomaly` runs while the station is built, before any camera starts: each named model is read
once with `load_anomaly_model`, which checks the memory bank's and the backbone weights' sha256s (a mismatch
is a `ModelError`, so the station does not start). Each camera gets a `CameraAnomaly`, the
`inspector.pipeline.scheduler.AnomalyCheck` its inference worker runs beside the detector: the worker
compiles one scorer per model (`prepare`), letterboxes the frames of every camera using that model into one
batch and starts it right after the detector's (`start`), then waits for both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.anomaly.model import AnomalyModel, load_anomaly_model
from inspector.anomaly.runtime import AnomalyScorer, PendingScores
from inspector.pipeline.preprocess import Tile

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AnomalyRuntime:
    """One loaded anomaly model and its compiled scorers, one per inference worker."""

    model: AnomalyModel
    _scorers: dict[int, AnomalyScorer] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scorer(self, worker: int, depth: int) -> AnomalyScorer:
        """The scorer of ``worker`` (compiled on the first call, with ``depth`` infer requests)."""
        with self._lock:
            s = self._scorers.get(worker)
            if s is None:
                m = self.model
                s = self._scorers[worker] = AnomalyScorer(m.spec, m.input_width, m.input_height, m.bank,
                                                          m.raw_threshold, depth=max(1, depth), edge=m.edge_cells)
            return s


@dataclass(eq=False)
class CameraAnomaly:
    """A camera's anomaly check (`inspector.pipeline.scheduler.AnomalyCheck`).

    Attributes:
        runtime: The model and its scorers (shared by the cameras that name the same model).
        threshold: NG at a score at or above it (the model's own is 1.0: scores are normalised).
    """

    runtime: AnomalyRuntime
    threshold: float = 1.0
    key: str = field(init=False)
    name: str = field(init=False)
    sha256: str = field(init=False)
    input_width: int = field(init=False)
    input_height: int = field(init=False)
    crop: Tile | None = field(init=False)

    def __post_init__(self) -> None:
        m = self.runtime.model
        self.key = f"{m.folder}:{m.bank_sha256}"
        self.name, self.sha256 = m.name, m.bank_sha256
        self.input_width, self.input_height = m.input_width, m.input_height
        self.crop = Tile(m.roi.x0, m.roi.y0, m.roi.x1, m.roi.y1) if m.roi is not None else None

    def prepare(self, worker: int, depth: int) -> None:
        """Compile the model for ``worker`` with ``depth`` batches in flight."""
        self.runtime.scorer(worker, depth)

    def start(self, worker: int, batch_u8: np.ndarray) -> PendingScores:
        """Start scoring ``batch_u8`` on ``worker``'s scorer (compiled by `prepare`)."""
        return self.runtime.scorer(worker, 1).start(batch_u8)


def load_camera_anomaly(cameras: Iterable[Any], say: Callable[[str], None] | None = None) -> dict[str, CameraAnomaly]:
    """Camera id -> its anomaly check, for the cameras with ``[cameras.anomaly]``.

    Raises:
        ModelError: A model that is missing, not an anomaly model, or whose sha256s do not match.
    """
    runtimes: dict[str, AnomalyRuntime] = {}
    checks: dict[str, CameraAnomaly] = {}
    for cam in cameras:
        cfg = getattr(cam, "anomaly", None)
        if cfg is None:
            continue
        rt = runtimes.get(cfg.model)
        if rt is None:
            if say is not None:
                say(f"loading anomaly model {cfg.model}")
            rt = runtimes[cfg.model] = AnomalyRuntime(load_anomaly_model(cfg.model))
            log.info("anomaly model %s (bank sha256 %s...) for camera %s", rt.model.name, rt.model.bank_sha256[:12],
                     cam.id)
        checks[cam.id] = CameraAnomaly(rt, float(cfg.threshold) if cfg.threshold is not None else 1.0)
    return checks
