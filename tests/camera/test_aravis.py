"""AravisCamera against Aravis' fake GigE Vision camera (``arv-fake-gv-camera-0.8 -i 127.0.0.1``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("gi", reason="PyGObject is not installed (pip install 'PyGObject<3.50')")

from camera.aravis import AravisCamera, aravis, discover
from camera.features import Feature, FeatureError
from camera.frame_pool import FrameHandle
from camera.trigger import TriggerSettings, TriggerUnsupported

try:
    aravis()
    _MISSING = ""
except RuntimeError as exc:
    _MISSING = str(exc)
FAKE = shutil.which("arv-fake-gv-camera-0.8")
pytestmark = [
    pytest.mark.skipif(bool(_MISSING), reason=_MISSING or "-"),
    pytest.mark.skipif(FAKE is None, reason="arv-fake-gv-camera-0.8 is not installed (apt-get install aravis-tools)"),
    pytest.mark.timeout(60),
]

LOOPBACK = "127.0.0.1"


def wait_for(condition: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f} s")
        time.sleep(0.005)


def claim_next(cam: AravisCamera, timeout: float = 3.0) -> FrameHandle:
    wait_for(cam.pool.has_pending, timeout)
    handle = cam.pool.claim()
    assert handle is not None
    return handle


def done(cam: AravisCamera, handle: FrameHandle) -> None:
    handle.release()
    cam.pool.mark_inspected()


@pytest.fixture(scope="module")
def fake_camera() -> Iterator[str]:
    """The fake camera on 127.0.0.1, serial GV01; killed when the module ends."""
    assert FAKE is not None
    proc = subprocess.Popen([FAKE, "-i", LOOPBACK], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not any(d.serial == "GV01" for d in discover()):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.skip(f"arv-fake-gv-camera-0.8 exited ({proc.returncode}): {err.strip()[:200]}")
            if time.monotonic() > deadline:
                pytest.fail("the fake camera was not discovered within 10 s")
        yield LOOPBACK
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def camera(fake_camera: str) -> Iterator[AravisCamera]:
    # the fake device keeps its settings between connections: every test states its format
    cam = AravisCamera("gv0", device_id=fake_camera, pool_slots=8, fps=20.0, settings={"PixelFormat": "Mono8"})
    try:
        yield cam
    finally:
        cam.close()


def test_discover_and_open_by_serial(fake_camera: str) -> None:
    found = [d for d in discover() if d.serial == "GV01"]
    assert found and found[0].device_id == "Aravis-Fake-GV01"
    cam = AravisCamera("gv0", device_id="GV01")
    with cam:
        assert cam.info.kind == "aravis"
        assert cam.info.serial == "GV01" and cam.info.vendor == "Aravis"


def test_feature_tree_lists_and_writes_the_features_a_station_needs(camera: AravisCamera) -> None:
    camera.open()
    names = {f.name for f in camera.features.features()}
    needed = {"TriggerSelector", "TriggerMode", "TriggerSource", "TriggerSoftware", "PixelFormat", "Width",
              "Height", "ExposureTimeAbs", "GainRaw", "AcquisitionFrameRate"}
    assert needed <= names
    t = camera.features
    assert t.set("Width", 320) == 320
    assert t.set("ExposureTime", 2000.0) == pytest.approx(2000.0)  # SFNC name of ExposureTimeAbs
    assert "Software" in t.describe("TriggerSource").enum_entries
    with pytest.raises(FeatureError, match="PixelFormat"):
        t.set("PixelFormat", "YUV422")
    with pytest.raises(FeatureError, match="no such feature"):
        t.get("NoSuchFeature")
    t.set("Width", 512)


def test_free_run_delivers_frames(camera: AravisCamera) -> None:
    camera.start()
    assert not camera.triggered
    seqs = []
    for _ in range(3):
        h = claim_next(camera)
        assert h.trigger_id is None and h.pixel_format == "Mono8" and h.image.ndim == 2
        seqs.append(h.sequence)
        done(camera, h)
    assert seqs == sorted(seqs)
    camera.stop()


@pytest.mark.parametrize("pixel_format", ["RGB8", "BayerRG8"])
def test_colour_formats_arrive_as_bgr8(fake_camera: str, pixel_format: str) -> None:
    cam = AravisCamera("gv0", device_id=fake_camera, fps=20.0, settings={"PixelFormat": pixel_format, "Width": 320})
    try:
        cam.start()
        h = claim_next(cam)
        assert h.pixel_format == "BGR8" and h.image.shape[1:] == (320, 3)
        done(cam, h)
    finally:
        cam.close()


def _triggered(camera: AravisCamera) -> AravisCamera:
    """Triggered and warmed up: the first frame after AcquisitionStart often loses packets on lo."""
    camera.configure_trigger(TriggerSettings(source="Software"))
    assert camera.triggered and camera.pool.triggered
    camera.start()
    for _ in range(3):
        camera.fire(-1)
        deadline = time.monotonic() + 0.5
        while not camera.pool.has_pending() and time.monotonic() < deadline:
            time.sleep(0.005)
        if (h := camera.pool.claim()) is not None:
            assert h.trigger_id == -1
            done(camera, h)
            break
    time.sleep(0.06)
    return camera


def test_each_frame_carries_the_id_of_the_trigger_that_made_it(camera: AravisCamera) -> None:
    cam = _triggered(camera)
    time.sleep(0.2)
    assert not cam.pool.has_pending()  # triggered: nothing without a trigger
    missed = cam.trigger_counters().missed
    for trigger_id in (1001, 57, 4242, 8, 600):
        cam.fire(trigger_id)
        # a frame lost on the way (loopback drops packets on a busy host) counts as missed
        wait_for(lambda missed=missed: cam.pool.has_pending() or cam.trigger_counters().missed > missed)
        if (h := cam.pool.claim()) is not None:
            assert h.trigger_id == trigger_id
            done(cam, h)
        missed = cam.trigger_counters().missed
        time.sleep(0.06)  # past the trigger holdoff
    c = cam.trigger_counters()
    assert c.answered + c.missed == c.fired and c.unmatched == 0 and c.overruns == 0


def test_a_burst_faster_than_it_is_consumed_arrives_once_and_in_order(camera: AravisCamera) -> None:
    cam = _triggered(camera)
    ids = [31, 7, 19, 2, 88, 40]
    before = cam.trigger_counters()
    for trigger_id in ids:  # nobody claims while the burst is fired
        cam.fire(trigger_id)
        time.sleep(0.06)
    deadline = time.monotonic() + 2.0  # a frame lost on lo is never answered: wait a bounded time
    while cam.pool.snapshot().in_flight < len(ids) and time.monotonic() < deadline:
        time.sleep(0.01)
    got = []
    while (h := cam.pool.claim()) is not None:
        got.append(h.trigger_id)
        done(cam, h)
    assert got == [i for i in ids if i in got] and len(set(got)) == len(got)  # once, in order
    assert len(got) >= len(ids) - 1  # at most one frame lost on lo
    time.sleep(0.2)
    assert not cam.pool.has_pending()  # no extra frames
    c = cam.trigger_counters()
    assert c.answered - before.answered == len(got) and c.unmatched == 0 and c.overruns == 0


def test_triggers_inside_the_holdoff_are_overruns_not_misattributed(camera: AravisCamera) -> None:
    cam = _triggered(camera)
    for trigger_id in (1, 2, 3):  # faster than the device takes triggers: it would merge them
        cam.fire(trigger_id)
    h = claim_next(cam)
    assert h.trigger_id == 1
    done(cam, h)
    time.sleep(0.1)
    cam.fire(4)
    h = claim_next(cam)
    assert h.trigger_id == 4  # not 2: the merged triggers were never sent
    done(cam, h)
    assert cam.trigger_counters().overruns == 2


class _NoTriggers:
    """A device's feature tree without the SFNC trigger features."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def features(self) -> list[Feature]:
        return [f for f in self._inner.features() if not f.name.startswith("Trigger")]

    def get(self, name: str) -> Any:
        return self._inner.get(name)

    def set(self, name: str, value: Any) -> Any:
        return self._inner.set(name, value)

    def rebind(self, device: Any) -> None:
        self._inner.rebind(device)


def test_configure_trigger_without_trigger_features_is_one_line(camera: AravisCamera) -> None:
    camera.open()
    camera._tree = _NoTriggers(camera._tree)  # type: ignore[assignment]
    with pytest.raises(TriggerUnsupported) as err:
        camera.configure_trigger(TriggerSettings())
    msg = str(err.value)
    assert "\n" not in msg and "gv0" in msg and "TriggerMode" in msg
    assert not camera.triggered


def test_opening_without_aravis_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gi", None)
    cam = AravisCamera("gv9", device_id=LOOPBACK)
    with pytest.raises(RuntimeError, match=r"^Aravis \(PyGObject \+ gir1.2-aravis-0.8\) is not installed") as err:
        cam.open()
    assert "\n" not in str(err.value)
