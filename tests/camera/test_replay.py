"""ReplayCamera: image folders and video files played back as a camera."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from camera.features import FeatureError
from camera.frame_pool import FramePool
from camera.protocol import CameraState
from camera.renderer import render_part
from camera.replay import ReplayCamera


def wait_for(condition: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f} s")
        time.sleep(0.005)


class Recorder:
    """Keeps a copy of every published frame (pool listeners run on the camera thread)."""

    def __init__(self, pool: FramePool) -> None:
        self.frames: list[tuple[int, str, np.ndarray]] = []
        self._lock = threading.Lock()
        pool.subscribe(self._on_publish)

    def _on_publish(self, pool: FramePool) -> None:
        handle = pool.latest()
        if handle is None:
            return
        with handle, self._lock:
            self.frames.append((handle.sequence, handle.pixel_format, handle.image.copy()))

    def __len__(self) -> int:
        with self._lock:
            return len(self.frames)


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    folder = tmp_path / "frames"
    folder.mkdir()
    images = [render_part(7 + i, 96, 64).image for i in range(3)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"part{i * 5}.png"), image)  # part0, part5, part10: natural order
    (folder / "notes.txt").write_text("not an image")
    return folder, images


def test_folder_plays_in_order_and_loops(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, images = image_folder
    with ReplayCamera("replay", folder, fps=200) as cam:
        recorder = Recorder(cam.pool)
        cam.start()
        wait_for(lambda: len(recorder) >= 7)
    seqs = [s for s, _, _ in recorder.frames]
    assert seqs == sorted(seqs)
    for i, (_, fmt, frame) in enumerate(recorder.frames[:7]):
        assert fmt == "BGR8"
        np.testing.assert_array_equal(frame, images[i % 3])
    assert cam.features.get("Width") == 96 and cam.features.get("Height") == 64


def test_video_plays_once_without_loop(tmp_path: Path) -> None:
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG video here")
    levels = [30, 90, 150, 210]
    for level in levels:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()

    with ReplayCamera("video", path, fps=200, loop=False) as cam:
        recorder = Recorder(cam.pool)
        cam.start()
        wait_for(lambda: len(recorder) >= len(levels))
        time.sleep(0.1)  # nothing more arrives after the end
        assert len(recorder) == len(levels)
        assert cam.state in (CameraState.STREAMING, CameraState.STALE)
    means = [float(frame.mean()) for _, _, frame in recorder.frames]
    assert means == pytest.approx(levels, abs=4)  # MJPG is lossy
    assert all(frame.shape == (48, 64, 3) for _, _, frame in recorder.frames)


def test_mono_images_and_size_change(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 60), 50, np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((30, 20), 200, np.uint8))
    with ReplayCamera("mono", tmp_path, fps=200, pool_slots=3) as cam:
        recorder = Recorder(cam.pool)
        cam.start()
        wait_for(lambda: len(recorder) >= 3)
    shapes = [(fmt, frame.shape) for _, fmt, frame in recorder.frames[:3]]
    assert shapes == [("Mono8", (40, 60)), ("Mono8", (30, 20)), ("Mono8", (40, 60))]


def test_missing_or_empty_source_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.avi"
    with pytest.raises(FileNotFoundError, match="nowhere.avi"):
        ReplayCamera("x", missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        ReplayCamera("x", empty)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="junk.avi"):
        ReplayCamera("x", junk)


def test_feature_tree(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, _ = image_folder
    cam = ReplayCamera("replay", folder, fps=5)
    tree = cam.features
    assert tree.get("SourcePath") == str(folder)
    assert tree.set("AcquisitionFrameRate", 12.5) == 12.5 and cam.nominal_fps == 12.5
    assert tree.set("Loop", False) is False and cam.loop is False
    with pytest.raises(FeatureError, match="Width"):
        tree.set("Width", 10)
    with pytest.raises(FeatureError, match="SourcePath"):
        tree.set("SourcePath", "/tmp")
