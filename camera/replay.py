"""`ReplayCamera`: recorded frames (a video file or a folder of images) played back at a set rate.

Used for demos, regression runs on recorded production images, and debugging a station
without its cameras. Frames are copied into owned pool slots, like the simulated camera.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from camera.base import ThreadedCamera
from camera.features import DictFeatureTree, Feature, FeatureError
from camera.frame_pool import FramePool
from camera.protocol import CameraInfo

log = logging.getLogger(__name__)

#: Image files a replay folder may hold (other files are ignored).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class _FrameReader(Protocol):
    unreadable: int  # frames skipped because they could not be decoded

    def read(self) -> np.ndarray | None:
        """The next frame (None at the end); unreadable frames are skipped."""
        ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...


def _natural_key(path: Path) -> list[Any]:
    """``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class _FolderReader:
    """Sorted image files of a folder, read one at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key
        )
        if not self.files:
            raise ValueError(
                f"replay source {folder}: no {'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))} images in the folder"
            )
        self._next = 0
        self.unreadable = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None:
                return image
            self.unreadable += 1
            log.warning("replay %s: cannot read %s; skipped", self.folder, path.name)
        return None

    def rewind(self) -> None:
        self._next = 0

    def close(self) -> None:
        pass


class _VideoReader:
    """A video file through OpenCV; rewinding re-opens it (seeking is unreliable for some codecs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unreadable = 0
        self._capture = self._open()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise ValueError(f"replay source {self.path}: not a readable video (or image folder)")
        return capture

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        return frame if ok else None

    def rewind(self) -> None:
        self._capture.release()
        self._capture = self._open()

    def close(self) -> None:
        self._capture.release()


def _open_reader(source: Path) -> _FrameReader:
    if not source.exists():
        raise FileNotFoundError(f"replay source {source}: no such file or folder")
    return _FolderReader(source) if source.is_dir() else _VideoReader(source)


def _as_u8(image: np.ndarray) -> np.ndarray:
    """Mono8 (HxW) or BGR8 (HxWx3) from whatever the file held (16-bit, alpha, 1 channel)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())  # float/32-bit images: stretch to 0..255
        image = ((image - lo) * (255.0 / ((hi - lo) or 1.0))).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class ReplayCamera(ThreadedCamera):
    """Plays back a video file or a folder of images as a camera.

    Args:
        camera_id: Station-unique id.
        source: A video file (anything OpenCV reads) or a folder of png/jpg/bmp/tif images,
            played in natural name order.
        fps: Playback rate (free-running when 0: a new frame whenever the last was taken).
        loop: Start over at the end; otherwise the camera stops delivering (and turns stale).
        pool_slots: Frame pool capacity.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``source`` holds no readable frame.
    """

    def __init__(
        self, camera_id: str, source: Path, *, fps: float = 5.0, loop: bool = True, pool_slots: int = 6
    ) -> None:
        self.source = Path(source)
        reader = _open_reader(self.source)
        try:
            first = reader.read()
        finally:
            reader.close()
        if first is None:
            raise ValueError(f"replay source {self.source}: no readable frame")
        first = _as_u8(first)
        super().__init__(
            CameraInfo(id=camera_id, kind="replay", vendor="inspector", model="ReplayCamera", serial=self.source.name),
            FramePool(camera_id, pool_slots, first.shape),
            fps,
        )
        self.loop = loop
        self._shape: tuple[int, ...] = first.shape
        self._reader: _FrameReader | None = None
        self._ended = False
        self._next_due = 0.0
        self._tree = DictFeatureTree(on_write=self._apply_feature)
        t = self._tree
        t.add(
            Feature("SourcePath", "str", "Replay", "Source", "Video file or image folder", writable=False),
            str(self.source),
        )
        t.add(Feature("Loop", "bool", "Replay", "Loop", "Start over at the end of the source"), loop)
        t.add(
            Feature(
                "AcquisitionFrameRate",
                "float",
                "AcquisitionControl",
                "Frame rate",
                minimum=0.0,
                maximum=1000.0,
                unit="Hz",
            ),
            float(fps),
        )
        t.add(Feature("Width", "int", "ImageFormatControl", "Width", writable=False, unit="px"), first.shape[1])
        t.add(Feature("Height", "int", "ImageFormatControl", "Height", writable=False, unit="px"), first.shape[0])
        t.add(
            Feature(
                "PixelFormat",
                "enum",
                "ImageFormatControl",
                "Pixel format",
                writable=False,
                enum_entries=("BGR8", "Mono8"),
            ),
            _pixel_format(first),
        )

    # ------------------------------------------------------------------ features
    @property
    def features(self) -> DictFeatureTree:
        return self._tree

    def _apply_feature(self, name: str, value: Any) -> None:
        if name == "AcquisitionFrameRate":
            self._fps = float(value)
        elif name == "Loop":
            self.loop = bool(value)
            self._ended = self._ended and not self.loop
        else:  # pragma: no cover - read-only nodes never reach here
            raise FeatureError(f"{name}: not writable")

    # ------------------------------------------------------------------ device
    def _open_device(self) -> None:
        self._reader = _open_reader(self.source)
        self._ended = False

    def _close_device(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _start_device(self) -> None:
        self._next_due = time.monotonic()

    # ------------------------------------------------------------------ acquisition
    def _expects_frames(self) -> bool:
        """A finished, non-looping replay is done, not lost: never STALE/OFFLINE for that."""
        return not self._ended

    def _acquire_once(self) -> bool:
        if self._ended or self._reader is None:
            self._stop.wait(0.1)
            return False
        if self._fps > 0:
            delay = self._next_due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return False
            self._next_due = max(self._next_due + 1.0 / self._fps, time.monotonic() - 1.0 / self._fps)
        elif self.pool.has_pending():
            self._stop.wait(0.0005)
            return False
        frame = self._next_frame(self._reader)
        if frame is None:
            return False
        image = _as_u8(frame)
        if image.shape != self._shape:  # frames of another size: re-allocate the slots
            self._shape = image.shape
            self.pool.reshape(image.shape)
            self._tree.values.update(Width=image.shape[1], Height=image.shape[0], PixelFormat=_pixel_format(image))
        t_acq = time.perf_counter_ns()
        got = self.pool.acquire_slot()
        if got is None:
            return True
        slot, arr = got
        np.copyto(arr, image)
        self.pool.publish(slot, self._next_sequence(), pixel_format=_pixel_format(image), acquired_ns=t_acq)
        return True

    def _next_frame(self, reader: _FrameReader) -> np.ndarray | None:
        skipped = reader.unreadable
        frame = reader.read()
        if frame is None and self.loop:
            reader.rewind()
            frame = reader.read()
        for _ in range(reader.unreadable - skipped):
            self.pool.count_invalid()
        if frame is None:
            self._ended = True
            log.info("camera %s: end of %s", self.info.id, self.source)
        return frame


def _pixel_format(image: np.ndarray) -> str:
    return "Mono8" if image.ndim == 2 else "BGR8"
