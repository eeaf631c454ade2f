"""Health: the Prometheus endpoint, the status line and the report's health section."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from camera.faults import FaultMode
from camera.protocol import CameraState
from camera.simulated import SimulatedLineCamera
from inspector.cli import app
from inspector.station import Station
from tests.reliability.conftest import _free_port
from tests.reliability.helpers import station_config, use_paced_backend, wait_until


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from ``http://127.0.0.1:port/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


def test_metrics_endpoint_reports_counters_states_and_alarms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_paced_backend(monkeypatch, delay_s=0.005)
    port = _free_port()
    cfg = station_config(2, fps=10, archive_dir=tmp_path / "ng", extra=f"[metrics]\nport = {port}")
    st = Station(cfg, db_url=f"sqlite:///{tmp_path / 'r.db'}")
    cam = st.cameras["c1"]
    assert isinstance(cam, SimulatedLineCamera)
    with st:
        wait_until(lambda: st.stats.camera("c1").inspected >= 10, 10, "frames inspected")
        time.sleep(0.5)
        m = scrape(port)
        for cid in ("c0", "c1"):
            lab = (("camera", cid),)
            assert m[("inspector_frames_received_total", lab)] >= 10
            assert m[("inspector_frames_received_total", lab)] == (  # one pool snapshot per camera and scrape
                m[("inspector_frames_inspected_total", lab)] + m[("inspector_frames_dropped_total", lab)]
                + m[("inspector_frames_in_flight", lab)]
            )
            assert m[("inspector_frames_invalid_total", lab)] == 0
            assert m[("inspector_camera_fps", lab)] == pytest.approx(10.0, rel=0.25)
            assert m[("inspector_camera_state", (("camera", cid), ("state", "streaming")))] == 1
            assert m[("inspector_latency_seconds_count", lab)] >= 10
        assert ("inspector_db_queue_depth", ()) in m and m[("inspector_db_spool_records", ())] == 0
        assert ("inspector_archive_bytes", ()) in m and m[("inspector_archive_alarm", ())] == 0
        assert m[("inspector_alarm", ())] == 0 and m[("inspector_health_level", ())] == 0
        assert ("inspector_drop_rate", ()) in m and ("inspector_window_latency_p99_seconds", ()) in m

        cam.faults.inject(FaultMode.STALL)
        wait_until(lambda: cam.state is CameraState.OFFLINE, 5, "c1 OFFLINE")
        m = scrape(port)
        assert m[("inspector_camera_state", (("camera", "c1"), ("state", "offline")))] == 1
        assert m[("inspector_camera_transitions_total", (("camera", "c1"), ("state", "offline")))] == 1
        assert m[("inspector_camera_frame_age_seconds", (("camera", "c1"),))] > 2.0
        assert m[("inspector_alarm", ())] == 1 and m[("inspector_health_level", ())] == 2  # OFFLINE: ALARM
        cam.faults.clear()
    with pytest.raises(OSError):  # the endpoint is gone with the station
        scrape(port)


def test_health_summary_names_each_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_paced_backend(monkeypatch)
    st = Station(station_config(3, fps=10, archive_dir=tmp_path / "ng"), db_url=f"sqlite:///{tmp_path / 'r.db'}")
    cams = {cid: c for cid, c in st.cameras.items() if isinstance(c, SimulatedLineCamera)}
    with st:
        wait_until(lambda: st.health()["ok"] and st.watchdog.checks > 5, 10, "a healthy station")
        assert "| health: OK |" in st.status_line()
        cams["c0"].faults.inject(FaultMode.DISCONNECT)
        cams["c2"].faults.inject(FaultMode.WRONG_SIZE)
        wait_until(lambda: cams["c0"].state is CameraState.OFFLINE, 3)
        wait_until(lambda: "invalid frames from c2" in st.health()["summary"], 5, "invalid frames flagged")
        h = st.health()
        assert h["summary"].startswith("1 camera OFFLINE (c0)")
        assert h["cameras"]["c0"]["state"] == "offline" and "device lost" in h["cameras"]["c0"]["reason"]
        assert st.db_writer is not None
        st.db_writer.spool.append([{"row": {"uid": "x"}}])  # pretend the database went away
        assert "db spooling 1" in st.health()["summary"]
        st.db_writer.spool.clear()
        for c in cams.values():
            c.faults.clear()
    rep = st.report()
    assert rep["health"]["ok"] and rep["health"]["cameras"]["c0"]["offline_events"] == 1
    assert rep["cameras"][2]["invalid"] > 0 and rep["cameras"][2]["in_flight"] == 0


def test_cli_serves_metrics_and_reports_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_paced_backend(monkeypatch)
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        'name = "cli"\n[storage]\n'
        f'archive_dir = "{tmp_path / "ng"}"\n[[cameras]]\nid = "a"\nkind = "simulated"\nfps = 10\nbank_size = 2\n'
    )
    port = _free_port()
    scraped: list[dict] = []

    def poll() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not scraped:
            try:
                m = scrape(port)
            except OSError:
                time.sleep(0.1)
                continue
            if m.get(("inspector_frames_received_total", (("camera", "a"),)), 0) > 0:
                scraped.append(m)
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--duration", "3", "--db",
                                   f"sqlite:///{tmp_path / 'c.db'}", "--report", str(out), "--metrics-port",
                                   str(port)])
    t.join()
    assert res.exit_code == 0, res.output
    assert scraped, "the metrics endpoint never answered during the run"
    assert "health: OK" in res.output
    rep = json.loads(out.read_text())
    assert rep["health"]["ok"] is True and rep["health"]["summary"] == "OK"
    assert set(rep["health"]) >= {"ok", "summary", "issues", "cameras", "db", "archive"}


def test_metrics_port_in_use_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_paced_backend(monkeypatch)
    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "cli"\n[[cameras]]\nid = "a"\nkind = "simulated"\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--duration", "1", "--db", "none",
                                       "--metrics-port", str(port)])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and f"127.0.0.1:{port}" in line and "Traceback" not in line
