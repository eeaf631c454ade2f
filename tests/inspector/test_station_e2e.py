"""A short end-to-end run: simulated cameras -> shipped model (OpenVINO) -> verdicts -> SQLite + NG archive."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspector.config import parse_config
from inspector.station import Station

CONFIG = """
name = "e2e"
[model]
threads = 1
[storage]
archive_dir = "{archive}"
commit_interval_ms = 120
[[cameras]]
id = "a"
kind = "simulated"
fps = 8
bank_size = 8
ok_share = 0.3
[[cameras]]
id = "b"
kind = "simulated"
fps = 8
mono = true
seed = 2001000
bank_size = 8
ok_share = 0.3
"""


def test_station_runs_end_to_end(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG.format(archive=tmp_path / "ng"))
    db = tmp_path / "r.db"
    st = Station(cfg, db_url=f"sqlite:///{db}")
    # the simulated banks are rendered before the cameras start, not on the first pass next to inference
    assert [st.cameras[c].banked_parts for c in ("a", "b")] == [8, 8]  # type: ignore[attr-defined]
    assert st.db_writer is not None and st.db_writer._linger == pytest.approx(0.12)  # [storage] commit_interval_ms
    seen = []
    st.events.result_ready.connect(seen.append)
    with st:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(st.stats.camera(c).inspected for c in ("a", "b")) < 10:
            time.sleep(0.1)
    rep = st.report()
    assert all(c["inspected"] >= 10 for c in rep["cameras"])
    for c in rep["cameras"]:
        assert c["received"] == c["inspected"] + c["dropped"]
    assert rep["db"]["rows_written"] == rep["totals"]["inspected"] == len(seen)
    con = sqlite3.connect(db)
    n_rows, n_ng = con.execute("select count(*), sum(verdict = 'NG') from inspections").fetchone()
    assert n_rows == rep["totals"]["inspected"]
    assert n_ng == rep["totals"]["ng"]
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    # every NG row points at an archived image that exists
    paths = [p for (p,) in con.execute("select image_path from inspections where verdict = 'NG'")]
    assert all(p and Path(p).is_file() for p in paths)
    # provenance travels with every result
    r = seen[0]
    assert r.provenance.model_sha256 == st.card.sha256 and r.provenance.backend == "openvino"
    assert r.times.total_ms > 0 and r.truth is not None
    assert rep["accuracy"]["parts"] == rep["totals"]["inspected"]
    assert rep["precision"] == [st.workers[0].backend.precision]  # what ran, "auto" or the INT8 it chose


def test_cli_run_writes_the_report(tmp_path: Path) -> None:
    from inspector.cli import app

    cfg = tmp_path / "s.toml"
    cfg.write_text(CONFIG.format(archive=tmp_path / "ng"))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app, ["run", "--headless", "--config", str(cfg), "--duration", "3", "--db", f"sqlite:///{tmp_path / 'c.db'}",
              "--report", str(out), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    for key in ("duration_s", "backend", "model", "cameras", "totals", "db", "accuracy"):
        assert key in rep
    assert {"name", "sha256"} <= set(rep["model"])
    cam = rep["cameras"][0]
    assert {"id", "kind", "received", "inspected", "dropped", "fps", "latency_ms"} <= set(cam)
    assert {"p50", "p99"} == set(cam["latency_ms"])
    assert {"parts", "escapes", "false_rejects", "escape_rate", "false_reject_rate", "box_precision", "box_recall"} <= set(rep["accuracy"])
    assert rep["db"]["rows_written"] == rep["totals"]["inspected"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--headless", "--station", "nope"], "unknown 'nope'"),
        (["run", "--headless", "--config", "/no/such.toml"], "config file not found"),
        (["run", "--headless", "--backend", "tflite"], "--backend"),
        (["run", "--headless", "--db", "foo://x"], "foo://x"),
        (["history", "--verdict", "maybe"], "--verdict"),
        (["history", "--since", "yesterday-ish"], "--since"),
        (["dataset", "synth", "--out", "/tmp/x", "--seed", "999999999"], "seed"),
        (["eval", "--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    from inspector.cli import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    err = res.output.strip().splitlines()
    assert len(err) == 1 and message in err[0], res.output
    assert "Traceback" not in res.output


def test_tensorrt_backend_explains_what_is_missing(tmp_path: Path) -> None:
    from inspector.cli import app

    res = CliRunner().invoke(app, ["run", "--headless", "--backend", "tensorrt", "--duration", "1", "--db", "none"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "tensorrt" in line.lower()


def test_history_and_cameras_list_commands(tmp_path: Path) -> None:
    from inspector.cli import app

    cfg = tmp_path / "s.toml"
    cfg.write_text(CONFIG.format(archive=tmp_path / "ng"))
    url = f"sqlite:///{tmp_path / 'h.db'}"
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--headless", "--config", str(cfg), "--duration", "2", "--db", url, "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["history", "--db", url, "--json", "--limit", "500"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows and {r["camera_id"] for r in rows} <= {"a", "b"}
    assert [r["acquired_at"] for r in rows] == sorted((r["acquired_at"] for r in rows), reverse=True)
    res = runner.invoke(app, ["history", "--db", url, "--json", "--camera", "b", "--verdict", "NG", "--since", "1h"])
    ng_b = json.loads(res.output)
    assert all(r["camera_id"] == "b" and r["verdict"] == "NG" for r in ng_b)
    assert len(ng_b) == sum(r["camera_id"] == "b" and r["verdict"] == "NG" for r in rows)
    res = runner.invoke(app, ["history", "--db", url])  # the human table
    assert res.exit_code == 0 and "CAMERA" in res.output

    res = runner.invoke(app, ["cameras", "list", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.output)
    ids = {c["id"] for c in listed["cameras"]}
    assert {"a", "b"} <= ids
    if any(p.endswith("viky.cti") for p in listed["producers"]):
        serials = {c["serial"] for c in listed["cameras"] if c["kind"] == "gentl"}
        assert len(serials) >= 3  # the three viky devices


def test_on_a_terminal_the_headless_start_says_what_it_is_doing(tmp_path: Path) -> None:
    """A start takes seconds: on a terminal each stage shows at once on one line that is cleared
    when the station runs; in a log or a capture (no terminal) nothing but the run's own output."""
    import os
    import pty
    import subprocess
    import sys

    cfg = tmp_path / "s.toml"
    cfg.write_text(CONFIG.format(archive=tmp_path / "arch"))
    cmd = [sys.executable, "-m", "inspector.cli", "run", "--headless", "--config", str(cfg), "--db", "none",
           "--no-archive", "--duration", "0.5"]
    root = Path(__file__).resolve().parents[2]
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=slave, timeout=120, check=False)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child's end is closed: all read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    tty = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, tty
    for stage in ("e2e: loading model", "e2e: warming up", "e2e: camera a: opening (1 of 2)", "e2e: camera b: frames"):
        assert stage in tty, tty
    assert "\r\x1b[2K" in tty  # one line, rewritten in place and cleared
    piped = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert piped.returncode == 0 and "[start" not in piped.stderr + piped.stdout


def test_a_cpu_station_letterboxes_with_one_opencv_thread(tmp_path: Path) -> None:
    """The runtime takes every core: OpenCV's own worker pool only competes with it (a Mono8 frame's
    conversion cost 12-15 us of CPU with two OpenCV threads against 8.5 with one, same wall time)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        cfg = parse_config(CONFIG.format(archive=tmp_path / "ng"))
        st = Station(cfg, db_url=f"sqlite:///{tmp_path / 'r.db'}", archive=False)
        try:
            assert cv2.getNumThreads() == 1
        finally:
            st.stop()
    finally:
        cv2.setNumThreads(before)
