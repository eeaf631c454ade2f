"""GenTL cameras against genicam's simulated producer (viky.cti, three devices)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("harvesters", reason="harvesters is not installed")
pytest.importorskip("genicam", reason="genicam is not installed")

from camera.features import FeatureError
from camera.frame_pool import FrameHandle
from camera.gentl import GenTLCamera
from camera.gentl_system import GENTL_PATH_VARIABLE, GenTLSystem, find_producers
from camera.protocol import CameraState

VIKY = next((p for p in find_producers({}) if p.name == "viky.cti"), None)
pytestmark = pytest.mark.skipif(VIKY is None, reason="genicam's viky.cti producer is not installed")

SMALL = {"Width": 320, "Height": 240}


def wait_for(condition: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f} s")
        time.sleep(0.005)


def claim_next(cam: GenTLCamera) -> FrameHandle:
    wait_for(cam.pool.has_pending)
    handle = cam.pool.claim()
    assert handle is not None
    return handle


@pytest.fixture(scope="module")
def system() -> Iterator[GenTLSystem]:
    assert VIKY is not None
    with GenTLSystem([VIKY]) as s:
        yield s


# ---------------------------------------------------------------------------- discovery
def test_find_producers_includes_viky_once(tmp_path: Path) -> None:
    (tmp_path / "vendor.cti").write_bytes(b"")
    assert VIKY is not None
    env = {GENTL_PATH_VARIABLE: os.pathsep.join([str(tmp_path), str(VIKY.parent), str(tmp_path), ""])}
    found = find_producers(env)
    assert found.count(VIKY) == 1  # listed by the variable and bundled: reported once
    assert (tmp_path / "vendor.cti").resolve() in found
    assert VIKY not in find_producers({}, include_simulated=False)


def test_devices_lists_the_three_viky_cameras(system: GenTLSystem) -> None:
    viky = [d for d in system.devices() if d.model == "Viky"]
    assert sorted(d.serial for d in viky) == ["0", "1", "2"]
    assert all(d.kind == "gentl" and d.vendor and d.producer.endswith("viky.cti") for d in viky)
    assert len({d.id for d in viky}) == 3
    assert system.find("VikyTL_DEV_green") == system.find("1")
    assert system.find("no-such-camera") is None


# ---------------------------------------------------------------------------- acquisition
def test_frames_are_the_producer_buffers(system: GenTLSystem) -> None:
    sigint = signal.getsignal(signal.SIGINT)
    cam = GenTLCamera("cam-red", system, serial="0", pool_slots=3, fps=100, settings=SMALL)
    with cam:
        assert signal.getsignal(signal.SIGINT) is sigint  # harvesters' own handler was undone
        cam.start()
        first = claim_next(cam)
        assert first.image.shape == (240, 320, 4)
        assert first.pixel_format == "RGBa8"
        assert not first.image.flags.owndata and first.image.base is not None  # zero-copy view
        # hold two frames; the pool holds the newest: all three buffers are out, the producer starves
        second = claim_next(cam)
        wait_for(lambda: cam.pool.external_live == 3)
        time.sleep(0.05)
        starved = cam.pool.snapshot().received
        time.sleep(0.15)
        assert cam.pool.snapshot().received == starved
        first.release()  # hands its buffer back: frames flow again
        wait_for(lambda: cam.pool.snapshot().received > starved)
        second.release()
        wait_for(lambda: cam.pool.external_live <= 1)
        assert cam.state is CameraState.STREAMING
        assert cam.pool.snapshot().invalid == 0
    assert cam.state is CameraState.CLOSED
    assert cam.pool.external_live == 0


def test_mono8_recipe_and_release_after_stop(system: GenTLSystem) -> None:
    cam = GenTLCamera(
        "cam-mono", system, device_id="VikyTL_DEV_blue", fps=100, settings={**SMALL, "PixelFormat": "Mono8"}
    )
    with cam:
        cam.start()
        held = claim_next(cam)
        assert held.image.shape == (240, 320) and held.pixel_format == "Mono8"
        cam.stop()  # the producer revokes its buffers; the held frame stays readable
        assert int(held.image.sum()) >= 0
        held.release()  # must not queue a revoked buffer
        cam.start()  # a second run announces fresh buffers
        claim_next(cam).release()


def test_two_cameras_at_once(system: GenTLSystem) -> None:
    a = GenTLCamera("cam-a", system, serial="1", fps=100, settings=SMALL)
    b = GenTLCamera("cam-b", system, serial="2", fps=100, settings={"Width": 200, "Height": 160})
    with a, b:
        a.start()
        b.start()
        ha, hb = claim_next(a), claim_next(b)
        assert ha.image.shape[:2] == (240, 320) and hb.image.shape[:2] == (160, 200)
        ha.release()
        hb.release()
        assert a.nominal_fps == pytest.approx(100.0)


def test_same_device_twice_is_refused(system: GenTLSystem) -> None:
    with GenTLCamera("cam-1", system, serial="0"), pytest.raises(RuntimeError, match="in use"):
        GenTLCamera("cam-2", system, serial="0").open()


def test_reconnects_and_reapplies_the_recipe(system: GenTLSystem) -> None:
    cam = GenTLCamera("cam-lost", system, serial="0", fps=100, settings=SMALL)
    with cam:
        cam.start()
        claim_next(cam).release()
        cam.features.set("Width", 400)  # drift away from the recipe
        lost = cam._acquirer
        assert lost is not None

        def device_lost(**_: object) -> None:
            raise ConnectionError("device unplugged (simulated)")

        lost.try_fetch = device_lost
        wait_for(lambda: cam.state is CameraState.OFFLINE)
        wait_for(lambda: cam.state is CameraState.STREAMING and cam._acquirer is not lost)
        assert cam.features.get("Width") == 320  # recipe re-applied on the new acquirer
        assert claim_next(cam).image.shape == (240, 320, 4)


def test_missing_camera_names_it(system: GenTLSystem) -> None:
    with pytest.raises(LookupError, match="nope"):
        GenTLCamera("cam-x", system, serial="nope").open()


# ---------------------------------------------------------------------------- feature tree
def test_feature_tree_walks_the_node_map(system: GenTLSystem) -> None:
    cam = GenTLCamera("cam-ft", system, serial="1")
    with cam:
        tree = cam.features
        features = {f.name: f for f in tree.features()}
        assert {"ImageFormatControl", "AcquisitionControl"} <= {f.category for f in features.values()}
        width = features["Width"]
        assert width.type == "int" and width.category == "ImageFormatControl" and width.writable
        assert width.minimum is not None and width.maximum is not None and width.increment
        assert width.description and width.display_name == "Width"
        assert {"RGBa8", "Mono8"} <= set(features["PixelFormat"].enum_entries)
        assert features["AcquisitionFrameRate"].type == "float" and features["AcquisitionFrameRate"].unit == "Hz"
        assert features["AcquisitionStart"].type == "command"
        assert features["PayloadSize"].visibility == "Expert" and not features["PayloadSize"].writable
        assert features["TLParamsLocked"].visibility == "Invisible"
        assert "GenDCDescriptor" not in features  # registers are not settings

        with pytest.raises(FeatureError, match="Width"):
            tree.set("Width", int(width.maximum) + 16)
        with pytest.raises(FeatureError, match="PixelFormat"):
            tree.set("PixelFormat", "Bogus")
        with pytest.raises(FeatureError, match="PayloadSize"):
            tree.set("PayloadSize", 1)
        with pytest.raises(FeatureError, match="NoSuchNode"):
            tree.get("NoSuchNode")
        assert tree.set("Width", 336) == 336
        assert cam._acquirer is not None and cam._acquirer.remote_device.node_map.Width.value == 336
        assert tree.get("Width") == 336
    with pytest.raises(FeatureError, match="not open"):
        cam.features.get("Width")


# ---------------------------------------------------------------------------- buffer checks
class FakeComponent:
    def __init__(self, data: np.ndarray, width: int, height: int, fmt: str, x_padding: int = 0) -> None:
        self.data, self.width, self.height, self.data_format, self.x_padding = data, width, height, fmt, x_padding


class FakeBuffer:
    """Stands in for a harvesters Buffer: a payload with one component, and queue()."""

    def __init__(self, component: FakeComponent | None, complete: bool = True) -> None:
        self.payload = SimpleNamespace(components=[component])
        self.module = SimpleNamespace(is_complete=lambda: complete)
        self.queued = 0

    def queue(self) -> None:
        self.queued += 1


def fetched_by(cam: GenTLCamera, buffer: FakeBuffer) -> bool:
    cam._acquirer = SimpleNamespace(try_fetch=lambda timeout: buffer)
    cam._armed = True
    return cam._acquire_once()


def raw(size: int) -> np.ndarray:
    return np.frombuffer(bytes(size), np.uint8)  # like harvesters: a view on the producer's memory


@pytest.mark.parametrize(
    ("case", "buffer"),
    [
        ("incomplete", FakeBuffer(FakeComponent(raw(12), 2, 2, "RGB8"), complete=False)),
        ("no image component", FakeBuffer(None)),
        ("zero size", FakeBuffer(FakeComponent(raw(0), 0, 0, "Mono8"))),
        ("short data", FakeBuffer(FakeComponent(raw(11), 2, 2, "RGB8"))),
        ("unsupported format", FakeBuffer(FakeComponent(raw(8), 2, 2, "Mono16"))),
    ],
)
def test_unusable_buffers_are_counted_and_requeued(case: str, buffer: FakeBuffer) -> None:
    cam = GenTLCamera("cam-fake", GenTLSystem([]), serial="0")
    assert fetched_by(cam, buffer) is False, case
    assert cam.pool.snapshot().invalid == 1 and cam.pool.snapshot().received == 0
    assert buffer.queued == 1  # straight back to the producer


@pytest.mark.parametrize(
    ("fmt", "channels", "shape"),
    [("Mono8", 1, (3, 4)), ("BayerRG8", 1, (3, 4)), ("BGR8", 3, (3, 4, 3)), ("BGRa8", 4, (3, 4, 4))],
)
def test_published_views_have_the_frame_shape(fmt: str, channels: int, shape: tuple[int, ...]) -> None:
    cam = GenTLCamera("cam-fake", GenTLSystem([]), serial="0")
    data = raw(12 * channels)
    buffer = FakeBuffer(FakeComponent(data, 4, 3, fmt))
    assert fetched_by(cam, buffer) is True
    handle = cam.pool.claim()
    assert handle is not None and handle.pixel_format == fmt and handle.image.shape == shape
    assert np.shares_memory(handle.image, data)
    handle.release()
    cam.pool.flush()
    assert buffer.queued == 1 and cam.pool.external_live == 0


def test_line_padding_is_skipped_without_a_copy() -> None:
    cam = GenTLCamera("cam-fake", GenTLSystem([]), serial="0")
    data = np.frombuffer(bytes(range(3 * 14)), np.uint8)  # 3 lines: 4 RGB8 pixels + 2 padding bytes
    assert fetched_by(cam, FakeBuffer(FakeComponent(data, 4, 3, "RGB8", x_padding=2))) is True
    handle = cam.pool.claim()
    assert handle is not None and handle.image.shape == (3, 4, 3)
    assert np.shares_memory(handle.image, data)
    assert handle.image[1, 0, 0] == 14 and handle.image[2, 3, 2] == 2 * 14 + 11
    handle.release()


# ---------------------------------------------------------------------------- triggers
def test_viky_has_no_trigger_features_and_says_so_in_one_line(system: GenTLSystem) -> None:
    from camera.trigger import TriggerSettings, TriggerUnsupported

    cam = GenTLCamera("cam-red", system, serial="0", pool_slots=3)
    try:
        with pytest.raises(TriggerUnsupported) as err:
            cam.configure_trigger(TriggerSettings())
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("camera cam-red: no trigger features") and "free-run only" in msg
        assert not cam.triggered and not cam.pool.triggered
    finally:
        cam.close()


def test_triggered_buffers_carry_the_trigger_their_frame_id_answers() -> None:
    from camera.trigger import TriggerLedger

    cam = GenTLCamera("cam-fake", GenTLSystem([]), serial="0")
    cam._ledger = TriggerLedger()
    cam.pool.triggered = True
    for tid in (501, 502):
        cam._ledger.fired(tid)
    first = FakeBuffer(FakeComponent(raw(12), 4, 3, "Mono8"))
    first.frame_id = 9  # type: ignore[attr-defined]
    second = FakeBuffer(FakeComponent(raw(12), 4, 3, "Mono8"))
    second.frame_id = 10  # type: ignore[attr-defined]
    stray = FakeBuffer(FakeComponent(raw(12), 4, 3, "Mono8"))
    stray.frame_id = 30  # type: ignore[attr-defined]
    assert fetched_by(cam, first) and fetched_by(cam, second)
    assert fetched_by(cam, stray) is False and stray.queued == 1  # fits no trigger: straight back
    got = [cam.pool.claim(), cam.pool.claim()]
    assert [h.trigger_id for h in got if h is not None] == [501, 502]
    assert cam.trigger_counters().unmatched == 1
