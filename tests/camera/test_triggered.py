"""Triggered acquisition: the simulated camera answers each trigger with one frame tied to it;
the conveyor triggers every camera once per part at its place on the belt."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from camera.conveyor import Conveyor
from camera.features import DictFeatureTree, Feature
from camera.renderer import defective_faces, render_face
from camera.simulated import BankTooLarge, SimulatedLineCamera, check_bank_budget
from camera.trigger import TriggerLedger, TriggerSettings, TriggerUnsupported, apply_sfnc_trigger


def _camera(cid: str = "cam", **kw: object) -> SimulatedLineCamera:
    cam = SimulatedLineCamera(cid, width=96, height=96, bank_size=4, **kw)  # type: ignore[arg-type]
    cam.configure_trigger(TriggerSettings())
    return cam


def _claim(cam: SimulatedLineCamera, timeout: float = 3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        h = cam.pool.claim()
        if h is not None:
            return h
        time.sleep(0.002)
    raise AssertionError("no frame")


def test_each_trigger_gives_one_frame_carrying_its_id_after_exposure_and_readout() -> None:
    cam = _camera(readout_ms=20.0)
    assert cam.triggered and cam.pool.triggered
    with cam:
        cam.start()
        time.sleep(0.3)
        assert not cam.pool.has_pending(), "a triggered camera sends nothing without a trigger"
        t0 = time.perf_counter_ns()
        cam.fire(41)
        h = _claim(cam)
        took_ms = (time.perf_counter_ns() - t0) / 1e6
        assert h.trigger_id == 41
        assert took_ms >= 20.0 + 5.0  # ExposureTime 5000 us + readout 20 ms
        h.release()
        for tid in (7, 8, 9):
            cam.fire(tid)
            time.sleep(0.03)  # > exposure: no overrun
        got = [_claim(cam) for _ in range(3)]
        assert [h.trigger_id for h in got] == [7, 8, 9]  # queued in order, none replaced
        for h in got:
            h.release()
    c = cam.trigger_counters()
    assert c.fired == 4 and c.answered == 4 and c.missed == 0 and c.overruns == 0


def test_a_trigger_during_the_exposure_is_an_overrun() -> None:
    cam = _camera()
    cam.features.set("ExposureTime", 50_000.0)  # 50 ms
    with cam:
        cam.start()
        cam.fire(1)
        cam.fire(2)  # the sensor is still exposing
        h = _claim(cam)
        assert h.trigger_id == 1
        h.release()
        time.sleep(0.2)
        assert cam.pool.claim() is None
    assert cam.trigger_counters().overruns == 1


def test_missed_trigger_rate_loses_that_share_of_triggers() -> None:
    cam = _camera()
    cam.missed_trigger_rate = 0.5
    for i in range(400):
        cam._busy_until_ns = 0  # no overruns in this count
        cam.fire(i)
    c = cam.trigger_counters()
    assert 140 < c.missed < 260 and c.fired == 400


def test_faces_of_one_part_share_its_truth() -> None:
    seen_ng = seen_ok = 0
    for part in range(3_000_000, 3_000_040):
        bad = defective_faces(part, 8, ok_share=0.6)
        kinds = set()
        for face in range(8):
            fr = render_face(part, face, 8, 64, 64, ok_share=0.6)
            kinds.add(fr.truth.part_kind)
            if face not in bad:
                assert not fr.truth.defective
        assert len(kinds) == 1, f"part {part}: its faces show different parts {kinds}"
        seen_ng += bool(bad)
        seen_ok += not bad
        assert len(bad) <= 2
    assert seen_ng > 5 and seen_ok > 5


def test_a_device_without_trigger_features_is_free_run_only_in_one_line() -> None:
    tree = DictFeatureTree()
    tree.add(Feature("Width", "int", "ImageFormatControl", "Width"), 400)
    with pytest.raises(TriggerUnsupported) as err:
        apply_sfnc_trigger("viky-red", tree, TriggerSettings())
    msg = str(err.value)
    assert "\n" not in msg and "viky-red" in msg and "TriggerMode" in msg and "free-run only" in msg


def test_ledger_ties_buffers_to_triggers_by_frame_id_not_arrival_order() -> None:
    led = TriggerLedger()
    for tid in (100, 101, 102):
        led.fired(tid)
    # device frame ids 5, 6, 7 answer triggers 0, 1, 2; buffers arrive out of order
    assert led.match_frame_id(5) == 100
    assert led.match_frame_id(7) == 102
    assert led.match_frame_id(6) == 101
    assert led.match_frame_id(8) is None and led.counters.unmatched == 1


def test_ledger_by_timestamp_takes_the_trigger_just_before_the_exposure() -> None:
    led = TriggerLedger(max_latency_ns=500_000_000)
    now = time.perf_counter_ns()
    led.fired(1, fired_ns=now - 200_000_000)
    led.fired(2, fired_ns=now - 100_000_000)
    assert led.match_timestamp(now - 80_000_000) == 2
    assert led.match_timestamp(now - 190_000_000) == 1
    assert led.match_timestamp(now + 5_000_000_000) is None


def test_a_bank_that_cannot_fit_is_refused_before_allocating() -> None:
    with pytest.raises(BankTooLarge) as err:
        check_bank_budget("big", 8192, 8192, False, 64)
    assert "big" in str(err.value) and "bank_size <=" in str(err.value)
    with pytest.raises(BankTooLarge):
        SimulatedLineCamera("big", width=8192, height=8192, bank_size=64)


class _Recorder:
    def __init__(self, name: str, log: list[tuple[str, int, int]]) -> None:
        self.name, self.log = name, log
        self.triggered = True

    def configure_trigger(self, settings: TriggerSettings) -> None: ...

    def fire(self, trigger_id: int) -> None:
        self.log.append((self.name, trigger_id, time.perf_counter_ns()))

    def trigger_counters(self):  # pragma: no cover - unused here
        raise NotImplementedError


def test_conveyor_triggers_every_camera_once_per_part_at_its_position() -> None:
    fired: list[tuple[str, int, int]] = []
    opened: dict[int, int] = {}
    lock = threading.Lock()

    def photo_eye(t_ns: int) -> int:
        with lock:
            tid = len(opened) + 1
            opened[tid] = t_ns
            return tid

    belt = Conveyor(photo_eye, parts_per_min=600, jitter=0.2, belt_mm_s=1000)
    belt.add_camera(_Recorder("near", fired), position_mm=20)
    belt.add_camera(_Recorder("far", fired), position_mm=120)
    belt.start()
    time.sleep(1.05)
    belt.stop()  # parts already past the photo-eye still get their triggers
    assert 7 <= len(opened) <= 14
    for tid, t_ns in opened.items():
        mine = [(n, t) for n, i, t in fired if i == tid]
        assert sorted(n for n, _ in mine) == ["far", "near"], f"part {tid}: {mine}"
        delays = {n: (t - t_ns) / 1e6 for n, t in mine}
        assert 19 <= delays["near"] < 60 and 119 <= delays["far"] < 160


def test_a_bank_is_rendered_once_then_loaded_from_the_disk_cache(tmp_path, monkeypatch) -> None:
    import camera.simulated as sim
    from camera.bank_cache import BankCache

    calls = []
    real = sim.render_face
    monkeypatch.setattr(sim, "render_face", lambda *a, **k: calls.append(a) or real(*a, **k))
    cache = BankCache(tmp_path / "banks")

    def camera() -> SimulatedLineCamera:
        return SimulatedLineCamera("c", width=64, height=64, bank_size=5, seed=3_000_000, face=2, faces=4)

    first = camera()
    assert first.prerender(cache) is False and len(calls) == 5
    again = camera()
    assert again.prerender(cache) is True and len(calls) == 5  # nothing rendered the second time
    for i in range(5):
        a, b = first.frame_for(i), again.frame_for(i)
        assert (a[0] == b[0]).all() and a[1] == b[1]
    other_face = SimulatedLineCamera("c", width=64, height=64, bank_size=5, seed=3_000_000, face=3, faces=4)
    assert other_face.prerender(cache) is False  # another face is another bank
    monkeypatch.setattr("camera.bank_cache.renderer_digest", lambda: "a changed renderer")
    assert camera().prerender(cache) is False  # a changed renderer never reuses a bank


@pytest.mark.parametrize("triggered", [False, True])
def test_a_frame_is_the_banked_image_read_only_and_still_holds_its_pool_slot(triggered: bool) -> None:
    """The simulated sensor hands out its banked frame as a DMA'd buffer would be: no copy into the
    slot (host CPU a real camera does not spend), nobody can write into it, and the slot stays taken
    until the frame is released (the pool's back-pressure is unchanged)."""
    cam = SimulatedLineCamera("cam", width=96, height=96, bank_size=4, fps=0.0)
    if triggered:
        cam.configure_trigger(TriggerSettings())
    with cam:
        cam.start()
        if triggered:
            cam.fire(3)
        h = _claim(cam)
        try:
            banked, _truth = cam.frame_for(3 if triggered else h.sequence - 1)
            assert np.shares_memory(h.image, banked)
            assert not h.image.flags.writeable
            with pytest.raises(ValueError):
                h.image[0, 0] = 0
            held = cam.pool.capacity - cam.pool.free_slots
            assert held >= 1  # this frame's slot (and perhaps the next frame's)
        finally:
            h.release()
