"""Faults inside a running station: a hung camera, a lost camera, inference slower than the cameras."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from camera.faults import FaultMode
from camera.protocol import CameraState
from camera.simulated import SimulatedLineCamera
from inspector.station import Station
from tests.reliability.helpers import camera_events, rss_bytes, station_config, use_paced_backend, wait_until


def _sim(st: Station, cid: str) -> SimulatedLineCamera:
    cam = st.cameras[cid]
    assert isinstance(cam, SimulatedLineCamera)
    return cam


def test_a_hung_camera_does_not_freeze_the_station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_paced_backend(monkeypatch)
    db = tmp_path / "r.db"
    st = Station(station_config(3, fps=10, archive_dir=tmp_path / "ng"), db_url=f"sqlite:///{db}")
    hung = _sim(st, "c0")
    st.start()
    try:
        wait_until(lambda: all(st.stats.camera(c).inspected >= 10 for c in st.cameras), 15, "all cameras inspected")
        t0 = time.monotonic()
        hung.faults.inject(FaultMode.HANG)  # until cleared: stuck inside the "driver"
        took = wait_until(lambda: hung.state is CameraState.OFFLINE, 5, "c0 OFFLINE")
        assert took < 3.0, took
        assert "1 camera OFFLINE (c0)" in st.status_line()
        assert not st.health()["ok"]
        # the other cameras keep their rate (+-5 %) while c0 hangs
        others = ("c1", "c2")
        c_start = {c: st.cameras[c].pool.snapshot() for c in others}
        w0 = time.monotonic()
        time.sleep(5.0)
        span = time.monotonic() - w0
        for c in others:
            now = st.cameras[c].pool.snapshot()
            for field in ("received", "inspected"):
                rate = (getattr(now, field) - getattr(c_start[c], field)) / span
                assert rate == pytest.approx(10.0, rel=0.05), (c, field, rate)
        assert time.monotonic() - t0 < 10
    finally:
        t_stop = time.monotonic()
        st.stop()
        stop_s = time.monotonic() - t_stop
        hung.faults.clear()
    assert stop_s < hung.stop_timeout_s + 3.0, stop_s  # bounded, although c0 never returned
    transitions = [(old, new) for _c, old, new, _r in camera_events(db, "c0")]
    assert ("streaming", "stale") in transitions and ("stale", "offline") in transitions
    rep = st.report()
    assert rep["health"]["cameras"]["c0"]["offline_events"] == 1


def test_a_lost_camera_comes_back_and_every_transition_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_paced_backend(monkeypatch)
    db = tmp_path / "r.db"
    st = Station(station_config(2, fps=10, archive_dir=tmp_path / "ng"), db_url=f"sqlite:///{db}")
    lost = _sim(st, "c1")
    seen: list[tuple[str, CameraState, CameraState]] = []
    st.events.camera_state_changed.connect(lambda cid, old, new: seen.append((cid, old, new)))
    with st:
        wait_until(lambda: st.stats.camera("c1").inspected >= 5, 10, "c1 inspected")
        lost.faults.inject(FaultMode.DISCONNECT, 1.5)
        t_return = time.monotonic() + 1.5
        wait_until(lambda: lost.state is CameraState.OFFLINE, 2, "c1 OFFLINE")
        wait_until(lambda: lost.state is CameraState.STREAMING, 12, "c1 back")
        assert time.monotonic() - t_return <= 10.0
        n = st.stats.camera("c1").inspected
        wait_until(lambda: st.stats.camera("c1").inspected > n, 3, "c1 inspected again")
    rows = camera_events(db, "c1")
    assert [(old, new) for _c, old, new, _r in rows] == [
        ("closed", "open"),
        ("open", "streaming"),
        ("streaming", "offline"),
        ("offline", "streaming"),
        ("streaming", "open"),
        ("open", "closed"),
    ]
    assert "device lost" in rows[2][3]
    assert [(c, o.value, n.value) for c, o, n in seen if c == "c1"] == [(c, o, n) for c, o, n, _ in rows]
    assert st.transitions[("c1", "offline")] == 1
    assert st.db_writer.stats()["events_written"] == len(camera_events(db))


def test_overload_keeps_memory_flat_and_every_frame_accounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference (60 ms a batch) far slower than 6 cameras at 30 fps: newest frame wins."""
    use_paced_backend(monkeypatch, delay_s=0.06)
    st = Station(station_config(6, fps=30, archive_dir=tmp_path / "ng"), db_url=f"sqlite:///{tmp_path / 'r.db'}")
    violations: list[str] = []
    samples = 0
    stop = threading.Event()
    # a camera's frames between publish and verdict: its pending one, and one in each batch in flight
    most = max(w.in_flight for w in st.workers) + 1
    assert most == st.config.scheduler.in_flight + 1  # every worker runs the configured batches in flight

    def sampler() -> None:
        nonlocal samples
        while not stop.is_set():
            for cid, cam in st.cameras.items():
                c = cam.pool.snapshot()
                if c.received != c.inspected + c.dropped + c.in_flight or not 0 <= c.in_flight <= most:
                    violations.append(f"{cid}: {c}")
            samples += 1
            time.sleep(0.002)

    t = threading.Thread(target=sampler, daemon=True)
    with st:
        t.start()
        time.sleep(3.0)  # warm-up: banks rendered, queues and caches at their working size
        rss0 = rss_bytes()
        time.sleep(6.0)
        rss1 = rss_bytes()
        stop.set()
        t.join()
    assert samples > 100 and not violations, violations[:5]
    rep = st.report()
    for cam in rep["cameras"]:
        assert cam["received"] == cam["inspected"] + cam["dropped"] and cam["in_flight"] == 0
        assert cam["dropped"] > cam["received"] * 0.2  # really overloaded
    assert all(cam.pool.snapshot().pool_exhausted == 0 for cam in st.cameras.values())
    assert all(cam["dropped_pool_exhausted"] == 0 for cam in rep["cameras"])  # every drop was a late claim
    assert rss1 - rss0 < 16 * 2**20, f"RSS grew {(rss1 - rss0) / 2**20:.1f} MiB in 6 s under overload"
    assert rep["db"]["rows_written"] == rep["totals"]["inspected"]
