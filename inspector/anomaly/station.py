"""The station's side of anomaly models: ``[cameras.anomaly]`` loaded, checked and compiled per worker.

`StationAnomaly.load_cameras` runs while the station is built, before any camera starts: each named model is
read once with `load_anomaly_model`, which checks the memory bank's and the backbone weights' sha256s (a
mismatch is a `ModelError`, so the station does not start). Each camera gets a `CameraAnomaly`, the
`inspector.pipeline.scheduler.AnomalyCheck` its inference worker runs beside the detector: the worker
compiles one scorer per model (`prepare`), letterboxes the frames of every camera using that model into one
batch and starts it right after the detector's (`start`), then waits for both.

A product recipe names its own anomaly model per camera (`StationAnomaly.for_recipe`): the recipe switch
loads and compiles it while the old recipe inspects and hands it to the workers in the recipe's epoch.
A camera with ``detector = false`` is decided by its anomaly model alone (`detector_rules`).

`StationAnomaly.heat_map` turns a result's patch scores into a compact u8 heat map over the frame (the
archive keeps it beside an NG image; the GUI draws it over the live picture).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from inspector.anomaly.images import ImageError, read_image
from inspector.anomaly.model import AnomalyModel, load_anomaly_model
from inspector.anomaly.runtime import AnomalyScorer, PendingScores, ScoreBatch
from inspector.pipeline.model_repo import ModelError
from inspector.pipeline.preprocess import Letterbox, Tile
from inspector.pipeline.results import InspectionResult
from inspector.pipeline.verdict import VerdictRules

log = logging.getLogger(__name__)

#: Longest side of a heat map in pixels: 160 x 160 u8 is 25.6 kB raw, 2-8 kB as PNG.
HEAT_MAP_SIDE = 160
#: Heat maps kept for the next consumer of the same result (the archive may run a queue behind the link).
HEAT_MAPS_KEPT = 64
#: Score per grey level: 255 is score 2.0, so the threshold (1.0) sits mid-scale (as ``anomaly score --heatmaps``).
HEAT_LEVELS_PER_SCORE = 127.5


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
                s = self._scorers[worker] = AnomalyScorer.for_model(m, depth=max(1, depth))
            return s


class _MaskedScores:
    """A pending batch whose patch maps are multiplied by the camera's grid mask before the image score."""

    def __init__(self, pending: PendingScores, mask: np.ndarray, edge: int) -> None:
        self._pending, self._mask, self._edge = pending, mask, edge

    def wait(self) -> ScoreBatch:
        out = self._pending.wait()
        maps = out.maps * self._mask
        e = self._edge
        inner = maps[:, e:maps.shape[1] - e, e:maps.shape[2] - e] if e else maps
        return ScoreBatch(inner.reshape(len(maps), -1).max(axis=1), maps, out.posed)


@dataclass(eq=False)
class CameraAnomaly:
    """A camera's anomaly check (`inspector.pipeline.scheduler.AnomalyCheck`).

    Attributes:
        runtime: The model and its scorers (shared by the cameras that name the same model).
        threshold: NG at a score at or above it (the model's own is 1.0: scores are normalised).
        roi: The inspected rectangle in frame pixels; None: the card's ROI (or the whole frame).
        grid_mask: (gh, gw) 1.0 where patches count, 0.0 where the camera's mask image is black; None: all.
    """

    runtime: AnomalyRuntime
    threshold: float = 1.0
    roi: Tile | None = None
    grid_mask: np.ndarray | None = field(default=None, repr=False)
    key: str = field(init=False)
    name: str = field(init=False)
    sha256: str = field(init=False)
    input_width: int = field(init=False)
    input_height: int = field(init=False)
    crop: Tile | None = field(init=False)

    def __post_init__(self) -> None:
        m = self.runtime.model
        self.name, self.sha256 = m.name, m.sha256
        self.input_width, self.input_height = m.input_width, m.input_height
        card_roi = Tile(m.roi.x0, m.roi.y0, m.roi.x1, m.roi.y1) if m.roi is not None else None
        self.crop = self.roi if self.roi is not None else card_roi
        # one batch per model and region: cameras with another ROI or mask letterbox other pixels
        where = "" if self.crop is None else f"@{self.crop.x0},{self.crop.y0},{self.crop.x1},{self.crop.y1}"
        masked = "" if self.grid_mask is None else f"#mask{id(self.grid_mask)}"
        self.key = f"{m.folder}:{m.sha256}{where}{masked}"

    def prepare(self, worker: int, depth: int) -> None:
        """Compile the model for ``worker`` with ``depth`` batches in flight."""
        self.runtime.scorer(worker, depth)

    def start(self, worker: int, batch_u8: np.ndarray) -> PendingScores | _MaskedScores:
        """Start scoring ``batch_u8`` on ``worker``'s scorer (compiled by `prepare`)."""
        pending = self.runtime.scorer(worker, 1).start(batch_u8)
        if self.grid_mask is None:
            return pending
        return _MaskedScores(pending, self.grid_mask, self.runtime.model.edge_cells)

    def heat_map(self, patch_map: np.ndarray, frame_w: int, frame_h: int, max_side: int = HEAT_MAP_SIDE) -> np.ndarray:
        """``patch_map`` (gh, gw) as a u8 map over the whole frame, at most ``max_side`` px on its longer side.

        Grey level = score x `HEAT_LEVELS_PER_SCORE` (the threshold 1.0 is 127/128); 0 outside the ROI.
        """
        f = min(1.0, max_side / max(frame_w, frame_h))
        out_w, out_h = max(1, round(frame_w * f)), max(1, round(frame_h * f))
        c = self.crop if self.crop is not None else Tile(0, 0, frame_w, frame_h)
        x0, y0 = min(out_w - 1, round(c.x0 * f)), min(out_h - 1, round(c.y0 * f))
        x1, y1 = max(x0 + 1, min(out_w, round(c.x1 * f))), max(y0 + 1, min(out_h, round(c.y1 * f)))
        w, h = self.input_width, self.input_height
        up = cv2.resize(np.asarray(patch_map, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        up = cv2.GaussianBlur(up, (0, 0), 4.0)  # as PatchCore's maps (and `teach.heat_map`)
        box = Letterbox.fit(c.width, c.height, w, h)
        inner = up[box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w]
        out = np.zeros((out_h, out_w), np.uint8)
        levels = cv2.resize(inner, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA) * HEAT_LEVELS_PER_SCORE
        out[y0:y1, x0:x1] = np.clip(levels, 0, 255).astype(np.uint8)
        return out


def detector_rules(rules: VerdictRules, detector: bool, classes: Iterable[str]) -> VerdictRules:
    """``rules`` as they are, or (``detector`` False) ignoring every class: the anomaly model alone decides."""
    return rules if detector else replace(rules, ignore_classes=frozenset(classes) | rules.ignore_classes)


def _grid_mask(path: Path, model: AnomalyModel, crop: Tile | None) -> np.ndarray:
    """The patch cells of ``model``'s grid that a mask image (the frame's size, black = left out) keeps."""
    img = read_image(path)
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    keep = (grey > 127).astype(np.float32)
    if crop is not None:
        if crop.x1 > keep.shape[1] or crop.y1 > keep.shape[0]:
            raise ImageError(f"{path}: the ROI {crop.x0},{crop.y0},{crop.x1},{crop.y1} reaches outside this "
                             f"{keep.shape[1]}x{keep.shape[0]} mask")
        keep = keep[crop.y0:crop.y1, crop.x0:crop.x1]
    w, h = model.input_width, model.input_height
    box = Letterbox.fit(keep.shape[1], keep.shape[0], w, h)
    canvas = np.zeros((h, w), np.float32)  # the letterbox's padding is no part of the frame
    canvas[box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w] = cv2.resize(
        keep, (box.new_w, box.new_h), interpolation=cv2.INTER_AREA)
    gh, gw = model.grid
    cells = cv2.resize(canvas, (gw, gh), interpolation=cv2.INTER_AREA)
    mask = (cells >= 0.5).astype(np.float32)
    if not mask.any():
        raise ImageError(f"{path}: the mask leaves no patch of the ROI to inspect")
    return mask


class _AnomalySpec(Protocol):
    """``[cameras.anomaly]`` of the station's config or of a recipe."""

    model: str
    threshold: float | None
    roi: tuple[int, int, int, int] | None
    mask: str | None


class _Worker(Protocol):
    index: int
    in_flight: int


@dataclass(frozen=True)
class RecipeAnomaly:
    """What a recipe asks of the anomaly side: each camera's check (None: none) and whether its detector decides.

    Attributes:
        checks: Camera id -> its anomaly check under the recipe (every camera of the station named).
        detector: Camera id -> False where the detector's boxes do not decide the verdict.
    """

    checks: dict[str, CameraAnomaly | None]
    detector: dict[str, bool]

    def rules(self, camera_id: str, rules: VerdictRules, classes: Iterable[str]) -> VerdictRules:
        """The camera's verdict rules under the recipe (`detector_rules`)."""
        return detector_rules(rules, self.detector.get(camera_id, True), classes)

    def prepare(self, workers: Sequence[_Worker]) -> None:
        """Compile every check for every worker before the switch (the old recipe inspects meanwhile)."""
        for w in workers:
            for check in self.checks.values():
                if check is not None:
                    check.prepare(w.index, w.in_flight)


class StationAnomaly:
    """The station's anomaly models: each loaded once, the cameras' checks, heat maps of results."""

    def __init__(self) -> None:
        self._runtimes: dict[str, AnomalyRuntime] = {}
        #: (camera id, model sha256) -> its newest check: a result names its model by its card's sha256
        self._by_result: dict[tuple[str, str], CameraAnomaly] = {}
        self._lock = threading.Lock()
        #: the newest heat maps, shared by the archive, the control link and the wall (each asks for the same
        #: NG result's): (camera, sequence, max side) -> (the result's patch scores, its map)
        self._heat_maps: OrderedDict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def check(self, spec: _AnomalySpec, camera_id: str, base: Path | None = None,
              say: Callable[[str], None] | None = None) -> CameraAnomaly:
        """The check ``spec`` describes (the model loaded and its sha256s checked once per station).

        Args:
            spec: ``[cameras.anomaly]``: model, threshold, roi, mask.
            camera_id: For the log and the messages.
            base: Folder a relative mask path is read from (a recipe's); None: the working folder.
            say: Progress (the station's start-up lines).

        Raises:
            ModelError: A model that is missing, not an anomaly model, whose sha256s do not match, or a
                mask image that cannot be used.
        """
        with self._lock:
            rt = self._runtimes.get(spec.model)
            if rt is None:
                if say is not None:
                    say(f"loading anomaly model {spec.model}")
                rt = self._runtimes[spec.model] = AnomalyRuntime(load_anomaly_model(spec.model))
                log.info("anomaly model %s (sha256 %s...) for camera %s", rt.model.name,
                         rt.model.sha256[:12], camera_id)
        roi = Tile(*spec.roi) if spec.roi is not None else None
        m = rt.model
        crop = roi if roi is not None else (Tile(m.roi.x0, m.roi.y0, m.roi.x1, m.roi.y1) if m.roi is not None else None)
        mask = None
        if spec.mask is not None:
            path = Path(spec.mask).expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            try:
                mask = _grid_mask(path, m, crop)
            except ImageError as exc:
                raise ModelError(f"camera {camera_id}: anomaly mask: {exc}") from None
        check = CameraAnomaly(rt, float(spec.threshold) if spec.threshold is not None else 1.0, roi, mask)
        with self._lock:
            self._by_result[(camera_id, check.sha256)] = check
        return check

    def load_cameras(self, cameras: Iterable[Any], say: Callable[[str], None] | None = None) -> dict[str, CameraAnomaly]:
        """Camera id -> its anomaly check, for the cameras of the station's config with ``[cameras.anomaly]``.

        Raises:
            ModelError: See `check`.
        """
        return {cam.id: self.check(cam.anomaly, cam.id, say=say) for cam in cameras if cam.anomaly is not None}

    def for_recipe(self, recipe: Any, cameras: Iterable[Any]) -> RecipeAnomaly:
        """Each camera's check and detector flag under ``recipe`` (a `inspector.recipes.recipe.Recipe`).

        A camera the recipe does not name, or names without ``anomaly``, keeps the station config's model;
        ``anomaly = false`` turns it off. ``detector`` likewise (the recipe's, else the config's).

        Raises:
            ModelError: A model or mask that cannot be used, or a camera left with neither detector nor
                anomaly model.
        """
        base = Path(recipe.path).parent if recipe.path else None
        checks: dict[str, CameraAnomaly | None] = {}
        detector: dict[str, bool] = {}
        for cam in cameras:
            rc = recipe.cameras.get(cam.id)
            if rc is None or rc.anomaly is None:  # the station config's
                checks[cam.id] = self.check(cam.anomaly, cam.id) if cam.anomaly is not None else None
            else:  # the recipe's own, or False: none
                checks[cam.id] = self.check(rc.anomaly, cam.id, base) if rc.anomaly else None
            detector[cam.id] = cam.detector if rc is None or rc.detector is None else rc.detector
            if not detector[cam.id] and checks[cam.id] is None:
                raise ModelError(f"recipe {recipe.label}: camera {cam.id} has detector = false and no anomaly "
                                 "model: nothing would decide its verdict")
        return RecipeAnomaly(checks, detector)

    def heat_map(self, result: InspectionResult, max_side: int = HEAT_MAP_SIDE) -> np.ndarray | None:
        """The u8 heat map of a result scored by an anomaly model of this station (`CameraAnomaly.heat_map`);
        None without patch scores, frame size, or for a model this station does not know."""
        m = result.anomaly_map
        if m is None or result.frame_width <= 0 or result.frame_height <= 0:
            return None
        key = (result.camera_id, result.sequence, max_side)
        with self._lock:
            kept = self._heat_maps.get(key)
        if kept is not None and kept[0] is m:  # the same result's scores (not a restarted camera's numbering)
            return kept[1]
        check = self._by_result.get((result.camera_id, result.provenance.anomaly_sha256))
        if check is None:
            return None
        heat = check.heat_map(m, result.frame_width, result.frame_height, max_side)
        heat.flags.writeable = False  # shared: no consumer draws into another's
        with self._lock:
            self._heat_maps[key] = (m, heat)
            self._heat_maps.move_to_end(key)
            while len(self._heat_maps) > HEAT_MAPS_KEPT:
                self._heat_maps.popitem(last=False)
        return heat

