"""The Teach dialog's collection without its widgets: free-running and triggered lines, NG parts skipped."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from gui.teach_session import TeachSession, enough, to_bgr


class _Frame(SimpleNamespace):
    released = 0

    def release(self) -> None:
        self.released += 1


def _frame(seq: int, value: int = 90) -> _Frame:
    return _Frame(image=np.full((24, 32, 3), value, np.uint8), pixel_format="BGR8", sequence=seq)


class _FreeBridge:
    line = None

    def __init__(self) -> None:
        self.now: dict[str, tuple[_Frame, Any]] = {}

    def result_frame(self, cid: str) -> tuple[Any, Any]:
        return self.now.get(cid, (None, None))


class _LineBridge:
    line = object()

    def __init__(self) -> None:
        self.parts: list[Any] = []  # newest first, as EngineBridge.recent_parts
        self.frames: dict[tuple[str, str], _Frame] = {}

    def recent_parts(self) -> list[Any]:
        return list(self.parts)

    def part_frame(self, part_id: str, cid: str) -> _Frame | None:
        return self.frames.get((part_id, cid))


def test_a_free_running_line_gives_each_frame_once_and_ng_frames_are_skipped(tmp_path: Path) -> None:
    s, b = TeachSession(SimpleNamespace(), tmp_path), _FreeBridge()
    f1 = _frame(1)
    b.now["a"] = (f1, SimpleNamespace(ng=False))
    assert s.collect(b, ["a", "b"], 3) == 1 and s.collect(b, ["a", "b"], 3) == 0  # the same frame again: not twice
    b.now["a"] = (_frame(2), SimpleNamespace(ng=True))
    assert s.collect(b, ["a"], 3) == 0  # the station called it NG
    assert s.collect(b, ["a"], 3, only_ok=False) == 0  # seen already
    b.now["a"] = (_frame(3), SimpleNamespace(ng=True))
    assert s.collect(b, ["a"], 3, only_ok=False) == 1
    assert s.collected == {"a": 2} and f1.released == 2  # every reference given back
    files = sorted(s.good_folder("a").glob("*.png"))
    assert len(files) == 2 and cv2.imread(str(files[0])).shape == (24, 32, 3)
    assert not enough(s.collected, ["a"])


def test_a_triggered_line_gives_each_decided_parts_frames(tmp_path: Path) -> None:
    s, b = TeachSession(SimpleNamespace(), tmp_path), _LineBridge()
    for i in range(4):
        frames = [SimpleNamespace(camera_id=c, ng=(i == 2 and c == "b")) for c in ("a", "b")]
        b.parts.insert(0, SimpleNamespace(part_id=f"p{i}", frames=frames))
        for c in ("a", "b"):
            b.frames[(f"p{i}", c)] = _frame(10 + i)
    assert s.collect(b, ["a", "b"], 3) == 6  # a: 3 parts (the 4th is over N), b: p0, p1, p3 (p2 NG)
    assert s.collect(b, ["a", "b"], 3) == 0  # parts seen are not taken again
    assert s.collected == {"a": 3, "b": 3}


def test_frames_are_saved_as_bgr_or_grey() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    assert to_bgr(rgb, "RGB8")[0, 0].tolist() == [0, 0, 255]
    assert to_bgr(np.zeros((2, 2, 1), np.uint8), "Mono8").shape == (2, 2)


def test_models_go_under_the_recipes_folder_where_this_window_may_write_there(
        tmp_path: Path, monkeypatch: Any) -> None:
    from gui.teach_session import TeachTarget, teach_root

    target = TeachTarget("housing", 3, "housing v3", tmp_path / "recipes")
    (tmp_path / "recipes").mkdir()
    assert teach_root(target) == tmp_path / "recipes"
    # no recipes: the user's data folder, where the database and spool are too (XDG_DATA_HOME honoured)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert teach_root(None) == tmp_path / "data" / "inspector"
    # a service's recipes folder this user may not write (root may write anywhere: os.access decides)
    monkeypatch.setattr("gui.teach_session.os.access", lambda path, mode: Path(path) != tmp_path / "recipes")
    assert teach_root(target) == tmp_path / "data" / "inspector"
    s = TeachSession(SimpleNamespace(), tmp_path, target, stamp="20261206-000000")
    assert s.model_folder("cam 1") == tmp_path / "models" / "housing-cam_1-v4-20261206-000000"  # the next version
