"""Collect mode: the next N parts' images of chosen cameras into a dataset folder, while the station inspects.

`DatasetCollector` is a frame sink on the station's `SinkFanOut`: it claims the first ``parts``
parts it sees (on a triggered line a part is its part id; on a free-running camera every frame is
a part of its own) and keeps every frame of them from the chosen cameras. Its queue is short and
bounded, like the archive's: a frame it cannot take is counted (``skipped_full``), never waited for,
so inspection never slows.

The folder it writes, ready to label in CVAT or Label Studio and to bring back with
``inspector dataset import --format yolo DIR``::

    images/<part>__<camera>.png   # the frame as the camera gave it (Mono8 stays grey)
    labels/<part>__<camera>.txt   # empty: nothing labelled yet
    classes.txt                   # the model's classes, one a line (what Label Studio writes)
    parts.csv                     # image,part (the part id of every image; eval reports per part)

File names carry the part before ``__``, the rule `inspector dataset import` and ``eval --data``
read part ids by.
"""

from __future__ import annotations

import csv
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.pipeline.results import InspectionResult
from inspector.pipeline.sinks import QueuedSink

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """``text`` as a file-name piece: letters, digits, ``._-``; never hidden, never empty."""
    out = _UNSAFE.sub("_", text) or "_"
    return "_" + out if out.startswith(".") else out


@dataclass(frozen=True)
class CollectSummary:
    """What a collection wrote."""

    root: Path
    parts: int  # parts with at least one image written
    images: int
    incomplete: tuple[str, ...]  # parts missing a chosen camera's image (queue full, camera down, stopped early)
    skipped: int  # frames of claimed parts the queue could not take

    @property
    def complete(self) -> bool:
        return not self.incomplete and not self.skipped


class DatasetCollector(QueuedSink):
    """A frame sink that saves the images of the next ``parts`` parts of ``cameras`` into ``out``.

    Args:
        out: The dataset folder (new or empty).
        cameras: The cameras whose images are kept (a part counts as complete with one of each).
        parts: How many parts to collect (each free-running frame is a part).
        classes: The model's classes, written to ``classes.txt`` for the labelling tool.
        image_format: ``png`` (lossless, the default) or ``jpg``.
        maxsize: Frames queued at most (each holds a frame slot of its camera until written).

    Raises:
        ValueError: ``out`` is not empty, no camera, ``parts`` below 1, or an unknown format.
    """

    needs_pixels = True

    def __init__(self, out: Path | str, cameras: Sequence[str], parts: int, *, classes: Sequence[str] = (),
                 image_format: str = "png", maxsize: int = 16) -> None:
        super().__init__("collect", maxsize=maxsize, max_batch=8, linger_s=0.0)
        self.root = Path(out)
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise ValueError(f"--out {self.root}: exists and is not an empty folder (a collection never mixes "
                             "into a dataset)")
        if not cameras:
            raise ValueError("--cameras: name at least one camera")
        if parts < 1:
            raise ValueError(f"--parts {parts}: collect at least one part")
        if image_format not in ("png", "jpg"):
            raise ValueError(f"image format {image_format!r}: choose png or jpg")
        self.cameras = tuple(dict.fromkeys(cameras))
        self.wanted = int(parts)
        self.classes = tuple(classes)
        self.ext = "." + image_format
        self._lock = threading.Lock()
        self._claimed: dict[str, set[str]] = {}  # part -> cameras whose frame was taken (in claim order)
        self._expect: dict[str, set[str]] = {}  # part -> cameras that owe it an image
        self._written: dict[str, set[str]] = {}  # part -> cameras whose image is on disk
        self._lost: dict[str, set[str]] = {}  # part -> cameras whose frame was skipped or not written
        self._rows: list[tuple[str, str]] = []
        self.images = 0
        self.failed_writes = 0
        self.done = threading.Event()  # every claimed part has each chosen camera's image written (or lost)

    @staticmethod
    def part_of(result: InspectionResult) -> str:
        """The part a frame shows: its part id on a triggered line, else the frame itself."""
        return result.part_id if result.part_id is not None else f"{result.camera_id}-{result.sequence:06d}"

    def _expected(self, result: InspectionResult) -> set[str]:
        return set(self.cameras) if result.part_id is not None else {result.camera_id}

    # ------------------------------------------------------------------ the frame sink
    def wants(self, result: InspectionResult) -> bool:
        """A frame of a chosen camera of a part already claimed, or of a new part while fewer than N are."""
        if result.camera_id not in self.cameras or result.frame is None:
            return False
        part = self.part_of(result)
        with self._lock:
            taken = self._claimed.get(part)
            if taken is None:
                if len(self._claimed) >= self.wanted:
                    return False
                taken = self._claimed[part] = set()
                self._expect[part] = self._expected(result)
            if result.camera_id in taken:
                return False  # one image per camera and part (a re-inspection of the same frame)
            taken.add(result.camera_id)
            return True

    def start(self) -> None:
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        (self.root / "labels").mkdir(parents=True, exist_ok=True)
        if self.classes:
            (self.root / "classes.txt").write_text("".join(f"{c}\n" for c in self.classes))
        super().start()

    def submit(self, result: InspectionResult) -> bool:
        if super().submit(result):
            return True
        with self._lock:
            self._lost.setdefault(self.part_of(result), set()).add(result.camera_id)
        self._check_done()
        log.warning("collect: %s#%d skipped, the queue is full (images are written slower than they come)",
                    result.camera_id, result.sequence)
        return False

    def handle_batch(self, batch: list[InspectionResult]) -> None:
        for r in batch:
            if r.frame is not None:
                self._write(r)
        self._check_done()

    def _write(self, r: InspectionResult) -> None:
        assert r.frame is not None
        part = self.part_of(r)
        name = f"{safe_name(part)}__{safe_name(r.camera_id)}"
        try:
            data = _encode(r.frame.image, r.frame.pixel_format, self.ext)
            (self.root / "images" / f"{name}{self.ext}").write_bytes(data)
            (self.root / "labels" / f"{name}.txt").write_text("")
        except (OSError, ValueError, cv2.error) as exc:
            self.failed_writes += 1
            log.error("collect: cannot save %s#%d to %s (%s)", r.camera_id, r.sequence, self.root, exc)
            with self._lock:
                self._lost.setdefault(part, set()).add(r.camera_id)
            return
        with self._lock:
            self._written.setdefault(part, set()).add(r.camera_id)
            self._rows.append((f"images/{name}{self.ext}", part))
            self.images += 1

    def _check_done(self) -> None:
        with self._lock:
            if len(self._claimed) >= self.wanted and all(
                    self._expect[p] <= self._written.get(p, set()) | self._lost.get(p, set()) for p in self._claimed):
                self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the N parts are collected; False on timeout."""
        return self.done.wait(timeout)

    def on_stopped(self) -> None:
        with open(self.root / "parts.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "part"])
            w.writerows(sorted(self._rows))

    def summary(self) -> CollectSummary:
        """What was written so far (complete once stopped)."""
        with self._lock:
            incomplete = tuple(p for p in self._claimed if not self._expect[p] <= self._written.get(p, set()))
            return CollectSummary(self.root, len(self._written), self.images, incomplete, self.skipped_full)

    def stats(self) -> dict[str, float]:
        return {**super().stats(), "images": self.images, "parts": len(self._written),
                "failed_writes": self.failed_writes}


def _encode(image: np.ndarray, pixel_format: str, ext: str) -> bytes:
    """A Mono8 (H, W[, 1]) or colour (H, W, 3|4) u8 frame as PNG or JPEG bytes (RGB swapped to BGR)."""
    if image.dtype != np.uint8:
        raise ValueError(f"frame dtype {image.dtype} is not uint8")
    img = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    rgb = pixel_format.upper().startswith("RGB")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGR if rgb else cv2.COLOR_BGRA2BGR)
    elif img.ndim == 3 and img.shape[2] == 3 and rgb:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim not in (2, 3):
        raise ValueError(f"frame shape {image.shape} is neither (H, W) nor (H, W, 3|4)")
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise ValueError(f"OpenCV could not encode {ext}")
    return bytes(buf.tobytes())
