"""What the Teach dialog does, without its widgets: collect good frames, teach, save a recipe version.

1. `collect` copies frames of the running line into ``<recipes>/teach/<session>/<camera>/`` (PNG, lossless):
   the newest inspected frame of each chosen camera (on a triggered line: each decided part's), each frame
   once, optionally only those the station called OK (on a line whose detector knows the product), until N
   per camera.
2. `teach` teaches one anomaly model per camera (`inspector.anomaly.teach.teach`; minutes on the CPU: run it
   off the GUI thread) into ``<recipes>/models/<recipe>-<camera>-v<next>/``.
3. `save` saves the recipe's next version naming those models with the thresholds chosen and switches to
   it: `StationControl.save_taught_recipe` (kept, with a history line; audited ``recipe.save``, engineer
   role, and ``recipe.select``). Attached to a station service the same call goes over the link
   (`gui.remote.RemoteControl`) and the service's session of this window does it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import platformdirs

from inspector.access.control import StationControl
from inspector.anomaly.teach import MIN_GOOD, TeachReport
from inspector.anomaly.teach import teach as teach_model

log = logging.getLogger(__name__)

#: Good parts per camera the dialog asks for at first (MVTec's rule of thumb is 20-100; more hold out more).
DEFAULT_GOOD = 50


def to_bgr(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """A frame as it is saved (Mono8 stays grey; RGB swapped to BGR; alpha dropped)."""
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0].copy()
    if img.ndim == 3 and img.shape[2] == 4:
        code = cv2.COLOR_RGBA2BGR if pixel_format.upper().startswith("RGB") else cv2.COLOR_BGRA2BGR
        return cv2.cvtColor(img, code)
    if img.ndim == 3 and pixel_format.upper().startswith("RGB"):
        return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return img.copy()


@dataclass(frozen=True)
class TeachTarget:
    """The product recipe a teaching saves the next version of (`StationControl.recipe_in_force`)."""

    name: str
    version: int
    label: str
    #: the station's recipes folder (collections and models go under it where this window may write)
    folder: Path

    @classmethod
    def of(cls, control: Any) -> TeachTarget | None:
        """The control's recipe in force (in the station's process or over the link); None: no recipes."""
        d = control.recipe_in_force()
        if not d:
            return None
        return cls(str(d["name"]), int(d["version"]), str(d["label"]), Path(str(d["folder"])))


def teach_root(target: TeachTarget | None) -> Path:
    """Where collections and models go: the recipes folder where this window may write there (the station
    reads the models from it), else the user's data folder (platformdirs', as the database's and the spool's:
    ``$XDG_DATA_HOME/inspector``, by default ``~/.local/share/inspector``)."""
    if target is not None and os.access(target.folder, os.W_OK | os.X_OK):
        return target.folder
    return platformdirs.user_data_path("inspector")


@dataclass
class TeachSession:
    """One teaching: its folders, the frames collected, the models taught.

    Args:
        station: The running station, or the window's stand-in of the service's (its cameras).
        root: Where collections and models go (`teach_root`).
        target: The recipe a new version is saved of (None: the station has no recipes; nothing is saved).
    """

    station: Any
    root: Path
    target: TeachTarget | None = None
    stamp: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S"))
    collected: dict[str, int] = field(default_factory=dict)
    reports: dict[str, TeachReport] = field(default_factory=dict)
    _last_seq: dict[str, int] = field(default_factory=dict)
    _parts_seen: set[str] = field(default_factory=set)

    def good_folder(self, camera_id: str) -> Path:
        return self.root / "teach" / self.stamp / camera_id

    # ------------------------------------------------------------------ 1. collect
    def collect(self, bridge: Any, cameras: Sequence[str], want: int, *, only_ok: bool = True) -> int:
        """Save each camera's newest inspected frame not yet saved (on a triggered line: the frames of the
        parts decided since the last call); returns how many were saved now.

        Call it repeatedly (the dialog's timer) until `collected` reaches ``want`` for every camera.
        """
        if bridge.line is not None:
            return self._collect_parts(bridge, cameras, want, only_ok)
        saved = 0
        for cid in cameras:
            if self.collected.get(cid, 0) >= want:
                continue
            frame, result = bridge.result_frame(cid)
            try:
                if frame is None or result is None or frame.sequence == self._last_seq.get(cid):
                    continue
                self._last_seq[cid] = frame.sequence
                if not (only_ok and result.ng):
                    saved += self._save(cid, frame)
            finally:
                if frame is not None:
                    frame.release()
        return saved

    def _collect_parts(self, bridge: Any, cameras: Sequence[str], want: int, only_ok: bool) -> int:
        saved = 0
        for part in reversed(bridge.recent_parts()):  # oldest first
            if part.part_id in self._parts_seen:
                continue
            self._parts_seen.add(part.part_id)
            for cid in cameras:
                result = next((f for f in part.frames if f.camera_id == cid), None)
                if self.collected.get(cid, 0) >= want or result is None or (only_ok and result.ng):
                    continue
                frame = bridge.part_frame(part.part_id, cid)
                if frame is not None:
                    try:
                        saved += self._save(cid, frame)
                    finally:
                        frame.release()
        return saved

    def _save(self, camera_id: str, frame: Any) -> int:
        """Write one frame (a held `FrameHandle` or the bridge's copy) into the camera's folder."""
        n = self.collected.get(camera_id, 0)
        folder = self.good_folder(camera_id)
        folder.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(folder / f"{camera_id}_{n:04d}_{frame.sequence}.png"),
                           to_bgr(frame.image, frame.pixel_format)):
            raise OSError(f"cannot write into {folder}")
        self.collected[camera_id] = n + 1
        return 1

    # ------------------------------------------------------------------ 2. teach
    def model_folder(self, camera_id: str) -> Path:
        t = self.target
        name, version = (t.name, t.version + 1) if t is not None else ("station", 1)
        return self.root / "models" / f"{name}-{camera_id}-v{version}-{self.stamp}".replace(" ", "_")

    def teach(self, sources: Mapping[str, Path], *, bad: Path | None = None, size: int = 320,
              progress: Callable[[str, int, int], None] | None = None) -> dict[str, TeachReport]:
        """Teach one model per camera from its folder of good images (blocking: minutes on the CPU).

        Raises:
            ImageError: A folder without images, fewer than `MIN_GOOD`, an unreadable image (one line).
        """
        done: dict[str, TeachReport] = {}
        for k, (cid, folder) in enumerate(sources.items()):
            def told(stage: str, i: int, n: int, _k: int = k, _cid: str = cid) -> None:
                if progress is not None:
                    progress(f"{_cid} ({_k + 1} of {len(sources)}): {stage}", i, n)

            done[cid] = teach_model([folder], self.model_folder(cid), bad=bad, width=size, height=size,
                                    progress=told)
            log.info("teach: camera %s: %d good images, threshold raw %.4f, %.1f s", cid,
                     done[cid].good_images, done[cid].raw_threshold, done[cid].seconds)
        self.reports.update(done)
        return done

    # ------------------------------------------------------------------ 3. save and switch
    def save(self, control: StationControl, thresholds: Mapping[str, float],
             detector: Mapping[str, bool] | None = None) -> str:
        """Save the recipe's next version with the taught models and switch to it; returns its label.

        One call of the control API (`StationControl.save_taught_recipe`), in the station's process or
        over the link: the same role check, recipe version, audit rows and switch either way.

        Raises:
            PermissionDenied: The user may not save recipes (engineer role).
            ControlError: No recipes, or the new version does not check (one line).
        """
        models = {cid: {"model": str(r.folder.resolve()), "threshold": round(float(thresholds.get(cid, 1.0)), 4)}
                  for cid, r in self.reports.items()}
        label = control.save_taught_recipe(models, detector)
        self.target = TeachTarget.of(control)  # a second save makes the version after this one
        return label


def enough(collected: Mapping[str, int], cameras: Sequence[str]) -> bool:
    """Whether every camera has the fewest good images a model is taught from."""
    return bool(cameras) and all(collected.get(c, 0) >= MIN_GOOD for c in cameras)
