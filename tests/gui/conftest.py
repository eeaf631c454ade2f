"""Fixtures for the GUI tests: a small real station, a fake one we publish into, users."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from camera.frame_pool import FrameHandle, FramePool
from camera.protocol import CameraEvents, CameraInfo, CameraState
from camera.simulated import SimulatedLineCamera
from inspector.config import parse_config
from inspector.ops.run_stats import RunStats
from inspector.pipeline.verdict import VerdictRules

SMALL_STATION = """
name = "gui-test"
[scheduler]
max_wait_ms = 2
[storage]
db_url = "none"
[[cameras]]
id = "cam-a"
kind = "simulated"
fps = 20
bank_size = 4
[[cameras]]
id = "cam-b"
kind = "simulated"
fps = 20
mono = true
bank_size = 4
"""

PASSWORDS = {"admin": "admin-pass", "eng": "engineer-pass", "op": "operator-pass"}


class FakeCamera:
    """A camera whose frames the test publishes; state is set by the test."""

    def __init__(self, camera_id: str, shape: tuple[int, ...] = (48, 64, 3)) -> None:
        self.info = CameraInfo(id=camera_id, kind="fake", model="FakeCam")
        self.pool = FramePool(camera_id, 4, shape)
        self.events = CameraEvents()
        self._state = CameraState.STREAMING
        self.features = SimulatedLineCamera(camera_id, fps=1, bank_size=1).features
        self.seq = 0

    @property
    def state(self) -> CameraState:
        return self._state

    def set_state(self, new: CameraState) -> None:
        old, self._state = self._state, new
        self.events.state_changed.emit(self.info.id, old, new)

    def publish(self, value: int = 100) -> FrameHandle:
        got = self.pool.acquire_slot()
        assert got is not None, "fake pool exhausted: a frame reference leaked"
        slot, arr = got
        arr[...] = value
        self.seq += 1
        pixel_format = "Mono8" if arr.ndim == 2 else "BGR8"
        return self.pool.publish(slot, self.seq, pixel_format=pixel_format)

    def stop(self) -> None:
        self.pool.flush()
        self.set_state(CameraState.OPEN)


class FakeStation:
    """What the GUI reads of a `Station`, with cameras the test drives by hand."""

    def __init__(self, *ids: str, shape: tuple[int, ...] = (48, 64, 3)) -> None:
        from inspector.station import StationEvents

        self.config = SimpleNamespace(name="fake")
        self.events = StationEvents()
        self.stats = RunStats()
        self.cameras: dict[str, Any] = {i: FakeCamera(i, shape) for i in ids}
        self.lanes = {i: SimpleNamespace(rules=VerdictRules()) for i in ids}
        self.card = SimpleNamespace(classes=("scratch", "dent", "crack", "contamination"))
        self._paused = False
        for cam in self.cameras.values():
            cam.events.state_changed.connect(self.events.camera_state_changed.emit)

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self, paused: bool) -> None:
        self._paused = paused
        self.events.paused_changed.emit(paused)

    def refresh_provenance(self, camera_id: str) -> None:
        pass

    def status_line(self) -> str:
        return "fake station"

    def stop(self) -> None:
        pass


def make_control(station: Any, engine: Engine) -> Any:
    """A `StationControl` with users admin, eng (engineer) and op (operator), nobody logged in."""
    from inspector.access.control import StationControl

    ctl = StationControl(station, engine=engine)
    ctl.create_admin(PASSWORDS["admin"])
    ctl.login("admin", PASSWORDS["admin"])
    ctl.add_user("eng", PASSWORDS["eng"], "engineer")
    ctl.add_user("op", PASSWORDS["op"], "operator")
    ctl.logout()
    return ctl


@pytest.fixture
def station() -> Iterator[Any]:
    """A real station: 2 simulated cameras at 20 fps, the shipped model, no database."""
    from inspector.station import Station

    st = Station(parse_config(SMALL_STATION, "gui-test"), db_url="none", archive=False)
    yield st
    st.stop()


@pytest.fixture
def fake_station() -> FakeStation:
    return FakeStation("fake-1", "fake-2")


def qimage_pixels(image: Any) -> np.ndarray:
    """A 32-bit QImage's pixels as an ``HxWx4`` array (B, G, R, A bytes), copied."""
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_RGB32)
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    return buf.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 4].reshape(img.height(), img.width(), 4).copy()
