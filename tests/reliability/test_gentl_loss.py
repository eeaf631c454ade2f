"""Device loss on the real GenTL path: genicam's viky.cti producer under harvesters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("harvesters", reason="harvesters is not installed")
pytest.importorskip("genicam", reason="genicam is not installed")

from camera.gentl import GenTLCamera
from camera.gentl_system import GenTLSystem, find_producers
from camera.protocol import CameraState
from inspector.ops.watchdog import CameraWatchdog
from tests.reliability.helpers import wait_until

VIKY = next((p for p in find_producers({}) if p.name == "viky.cti"), None)
pytestmark = pytest.mark.skipif(VIKY is None, reason="genicam's viky.cti producer is not installed")

RECIPE = {"Width": 320, "Height": 240}


@pytest.fixture(scope="module")
def system() -> Iterator[GenTLSystem]:
    assert VIKY is not None
    with GenTLSystem([VIKY]) as s:
        yield s


def _states(cam: GenTLCamera) -> list[tuple[float, CameraState]]:
    out: list[tuple[float, CameraState]] = []
    cam.events.state_changed.connect(lambda _c, _o, new: out.append((time.monotonic(), new)))
    return out


def _frame_shape(cam: GenTLCamera) -> tuple[int, ...]:
    n = cam.pool.snapshot().received
    wait_until(lambda: cam.pool.snapshot().received > n, 3, "a fresh frame")
    h = cam.pool.latest()
    assert h is not None
    with h:
        return h.image.shape


def test_acquirer_destroyed_underneath_goes_offline_and_comes_back_with_its_recipe(system: GenTLSystem) -> None:
    cam = GenTLCamera("viky-lost", system, serial="0", fps=50, settings=RECIPE)
    states = _states(cam)
    with cam:
        cam.start()
        assert _frame_shape(cam) == (240, 320, 4)
        cam.features.set("Width", 400)  # drift away from the recipe; the re-open must undo it
        lost = cam._acquirer
        assert lost is not None
        t0 = time.monotonic()
        lost.destroy()  # the device goes away under the running acquisition thread
        wait_until(lambda: cam.state is CameraState.OFFLINE, 3, "OFFLINE")
        wait_until(lambda: cam.state is CameraState.STREAMING and cam._acquirer is not lost, 10, "re-opened")
        offline = next(t for t, s in states if s is CameraState.OFFLINE)
        assert offline - t0 < 3.0
        assert cam.features.get("Width") == 320
        assert _frame_shape(cam) == (240, 320, 4)
        assert cam.state is CameraState.STREAMING


def test_device_missing_for_a_while_reconnects_within_10_s_of_its_return(
    system: GenTLSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    cam = GenTLCamera("viky-unplugged", system, serial="1", fps=50, settings=RECIPE)
    unplugged = threading.Event()
    real_create = system.create_acquirer

    def create(key: str) -> object:
        if unplugged.is_set():
            raise LookupError(f"GenTL camera {key!r} not found (unplugged in the test)")
        return real_create(key)

    monkeypatch.setattr(system, "create_acquirer", create)
    states = _states(cam)
    watchdog = CameraWatchdog({"viky-unplugged": cam}, interval_s=0.1)
    with cam:
        cam.start()
        watchdog.start()
        try:
            _frame_shape(cam)
            unplugged.set()
            lost = cam._acquirer
            assert lost is not None
            lost.destroy()
            wait_until(lambda: cam.state is CameraState.OFFLINE, 3, "OFFLINE")
            time.sleep(3.0)  # several failed re-opens: the backoff grows
            assert cam.state is CameraState.OFFLINE
            t_back = time.monotonic()
            unplugged.clear()  # plugged in again
            wait_until(lambda: cam.state is CameraState.STREAMING, 10, "STREAMING after the return")
            streaming = [t for t, s in states if s is CameraState.STREAMING and t >= t_back]
            assert streaming and streaming[0] - t_back <= 10.0
            assert cam.features.get("Width") == 320
        finally:
            watchdog.stop()
