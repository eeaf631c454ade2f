"""The control link's server in-process: socket handling, sessions, the wire format (issue 31.1)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.pipeline.results import Detection, InspectionResult, PartResult, Provenance, StageTimes, Verdict
from inspector.service.protocol import display_size, part_from_wire, part_to_wire, result_from_wire, result_to_wire
from inspector.service.server import ControlServer, ServiceError, encode_display_jpeg
from tests.gui.conftest import PASSWORDS, FakeStation, make_control

ROOT = Path(__file__).resolve().parents[3]


class Station(FakeStation):
    """The GUI tests' fake station with what the server reads besides."""

    def __init__(self, engine: Any) -> None:
        super().__init__("fake-1")
        self.engine = engine
        self.line = None
        self.db_url = "sqlite://"

    def health(self) -> dict[str, Any]:
        return {"ok": True, "level": "OK", "summary": "", "issues": []}


@pytest.fixture
def served(engine: Any, tmp_path: Path) -> Iterator[tuple[Station, ControlServer]]:
    st = Station(engine)
    make_control(st, engine)  # users admin, eng, op
    server = ControlServer(st, tmp_path / "run" / "st.sock", image_fps=10)
    server.start()
    yield st, server
    server.stop()


def request(f: Any, s: socket.socket, rid: int, op: str, **args: Any) -> dict[str, Any]:
    s.sendall((json.dumps({"id": rid, "op": op, "args": args}) + "\n").encode())
    while True:
        msg = json.loads(f.readline())
        if msg.get("id") == rid:
            return msg


def test_each_client_is_its_own_session(served: tuple[Station, ControlServer]) -> None:
    st, server = served
    assert oct(server.path.stat().st_mode & 0o777) == "0o660" and oct(server.path.parent.stat().st_mode & 0o777) == "0o750"
    a, b = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    a.connect(str(server.path))
    b.connect(str(server.path))
    fa, fb = a.makefile("rb"), b.makefile("rb")
    try:
        assert request(fa, a, 1, "login", name="op", password=PASSWORDS["op"])["result"] == {"name": "op", "role": "operator"}
        assert request(fa, a, 2, "pause", paused=True)["result"] is True and st.paused
        refused = request(fb, b, 1, "pause", paused=False)  # the other window is not logged in
        assert refused["ok"] is False and refused["kind"] == "PermissionDenied" and st.paused
        assert request(fb, b, 2, "nonsense")["kind"] == "ProtocolError"
        b.sendall(b"not json\n")
        assert json.loads(fb.readline())["kind"] == "ProtocolError"
        assert request(fb, b, 3, "hello")["result"]["cameras"][0]["id"] == "fake-1"  # still served
    finally:
        for x in (fa, fb, a, b):
            x.close()
    end = time.monotonic() + 5
    while server.clients and time.monotonic() < end:
        time.sleep(0.05)
    assert not server.clients


def test_a_second_server_on_a_live_socket_is_refused_and_a_stale_one_replaced(served: tuple[Station, ControlServer],
                                                                            engine: Any, tmp_path: Path) -> None:
    st, server = served
    with pytest.raises(ServiceError, match="answers there already"):
        ControlServer(st, server.path).start()
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on: left by a service that died
    with ControlServer(st, stale):
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(stale))
        c.close()
    assert not stale.exists()
    plain = tmp_path / "plain.sock"
    plain.write_text("x")
    with pytest.raises(ServiceError, match="not a socket"):
        ControlServer(st, plain).start()


def test_images_go_only_to_clients_that_ask_and_the_engine_keeps_one_frame(served: tuple[Station, ControlServer]) -> None:
    st, server = served
    cam = st.cameras["fake-1"]
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(server.path))
    f = s.makefile("rb")
    try:
        request(f, s, 1, "images", on=True)
        handles = []
        for i in range(5):
            cam.publish(value=40 * i)
            h = cam.pool.claim()  # as a worker does: its reference, released once the sinks had the result
            assert h is not None
            handles.append(h)
            st.events.result_ready.emit(_result(h))
            h.release()
        assert cam.pool.snapshot().received == 5
        end = time.monotonic() + 5
        got = None
        while time.monotonic() < end and got is None:
            msg = json.loads(f.readline())
            got = msg if msg.get("event") == "image" else None
        assert got is not None and got["camera_id"] == "fake-1" and got["sequence"] == 5  # the newest only
    finally:
        f.close()
        s.close()
    # every reference the server took is given back: what is left is the pool's own on its newest frame
    assert not server._newest and [h.refcount for h in handles] == [0, 0, 0, 0, 1]


def test_the_wire_keeps_a_part_and_scales_its_boxes_to_the_display_image() -> None:
    r = InspectionResult("cam-a", 7, 1.0, Verdict.NG, "scratch>=0.40", (Detection(100, 200, 300, 400, 0, 0.9, "scratch"),),
                         StageTimes(total_ms=12.0), Provenance("m", "s", "b"), frame_width=1280, frame_height=960,
                         part_id="p-1", trigger_id=3)
    p = PartResult("p-1", "line", 3, 2.0, Verdict.NG, "cam-a NG", (r,), ("cam-a", "cam-b"), ("cam-b",), "cam-a", 1000.0,
                   True)
    back = part_from_wire(json.loads(json.dumps(part_to_wire(p))))
    assert back.part_id == "p-1" and back.missing == ("cam-b",) and back.incomplete == p.incomplete
    d = back.frames[0].detections[0]
    assert display_size(1280, 960) == (640, 480) and (d.x1, d.y2) == (50.0, 200.0)
    assert result_from_wire(result_to_wire(r), display=False).detections == r.detections
    jpeg = encode_display_jpeg(np.zeros((960, 1280), np.uint8), "Mono8")
    import cv2

    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED).shape == (480, 640)


def test_the_service_unit_runs_the_service_and_its_options_are_the_commands() -> None:
    unit = (ROOT / "installer" / "inspector-headless.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    args = exec_start.split()[1:]
    assert args[0] == "service" and "RuntimeDirectory=inspector" in unit
    # the unit's options are the command's: a missing config is one line and exit 2, not a usage error
    done = subprocess.run([sys.executable, "-m", "inspector.cli", *args[:1], "--config", "/nonexistent/station.toml"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "config file not found" in done.stderr


def test_the_service_refuses_to_run_without_a_database() -> None:
    done = subprocess.run([sys.executable, "-m", "inspector.cli", "service", "--station", "demo", "--db", "none"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "needs a database" in done.stderr and "Traceback" not in done.stderr


def _result(h: Any) -> InspectionResult:
    return InspectionResult("fake-1", h.sequence, time.time(), Verdict.OK, "no defect", (), StageTimes(),
                            Provenance("m", "s", "b"), frame_width=64, frame_height=48, frame=h)
