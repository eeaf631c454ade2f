"""`ControlServer`: the station's local control link, served on a Unix socket.

Each accepted connection becomes a `session.ClientLink` with its own `StationControl`
session. What clients see (events): decided parts, camera states, pause changes, a status
snapshot (health, line counters, every camera's rates) a few times a second, and display
images (`images.encode_display_jpeg` of each camera's newest inspected frame, at most
``image_fps`` per camera, encoded on the server's publisher thread, only while a client
asked for images). The engine's threads only take a frame reference and append to bounded
deques; a slow client only ever costs its own queue.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, Self

import cv2
import numpy as np

from camera.frame_pool import FrameHandle
from camera.protocol import Camera, CameraState
from inspector.access.control import StationControl
from inspector.ops.health import Health
from inspector.pipeline.results import InspectionResult, PartResult
from inspector.plc.link_status import plc_status
from inspector.service.images import encode_display_jpeg
from inspector.service.protocol import (
    VERSION,
    CameraLiveWire,
    encode,
    part_to_wire,
    recipes_to_wire,
    result_to_wire,
)
from inspector.service.session import ClientLink

log = logging.getLogger(__name__)

#: The publisher's period: parts and states go out within this.
PUBLISH_PERIOD_S = 0.05
#: The line gauge's window (seconds), as the embedded GUI's.
GAUGE_WINDOW_S = 10.0


class ServiceError(RuntimeError):
    """The control link cannot be served (socket in use, folder not writable); one line."""


class ServedStation(Protocol):
    """What the server reads of a `inspector.station.Station` (and what its sessions control)."""

    config: Any
    cameras: dict[str, Camera]
    lanes: dict[str, Any]
    events: Any
    stats: Any
    line: Any
    engine: Any

    @property
    def paused(self) -> bool: ...

    def pause(self, paused: bool) -> None: ...

    def refresh_provenance(self, camera_id: str) -> None: ...

    def health(self) -> Health: ...


# ---------------------------------------------------------------------------- the server
class ControlServer:
    """Serves a station's control link on a Unix socket (file mode 0660).

    Args:
        station: The running station (it needs a database: users and audit live there).
        path: The socket's path; its folder is made (0750) when missing.
        image_fps: Display images per camera and second at most (0: none).
        status_hz: Status snapshots per second.
        max_clients: Connections beyond this are refused (closed at once).

    Raises:
        ServiceError: From `start`: the socket is in use by a live server, or cannot be made.
    """

    def __init__(self, station: ServedStation, path: Path | str, *, image_fps: float = 5.0, status_hz: float = 2.0,
                 max_clients: int = 8) -> None:
        if getattr(station, "engine", None) is None:
            raise ServiceError("the control link needs the station's database (users and audit): not 'none'")
        self.station = station
        self.path = Path(path)
        self.image_fps = max(0.0, float(image_fps))
        self.status_hz = max(0.2, float(status_hz))
        self.max_clients = max_clients
        self._clients: list[ClientLink] = []
        self._clients_lock = threading.Lock()
        self._seq = 0
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        # engine side: filled on engine threads, read by the publisher
        self._lock = threading.Lock()
        self._newest: dict[str, tuple[FrameHandle, InspectionResult]] = {}
        self._latency: dict[str, deque[float]] = {cid: deque(maxlen=64) for cid in station.cameras}
        self._last: dict[str, tuple[str, float]] = {}  # camera -> (verdict, monotonic time)
        self._parts: deque[PartResult] = deque(maxlen=200)
        self._events: deque[dict[str, Any]] = deque(maxlen=200)
        self._encoded_at: dict[str, tuple[float, int]] = {}  # camera -> (monotonic, sequence)
        self._rate_marks: dict[str, tuple[float, int, int]] = {}
        self._rates: dict[str, tuple[float, float]] = {}
        self.images_sent = 0
        #: a result's u8 anomaly heat map (sent beside its image; None: the station runs no anomaly models)
        models = getattr(station, "anomaly_models", None)
        self._heat_map: Callable[[InspectionResult], np.ndarray | None] | None = (
            models.heat_map if models is not None else None)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Bind the socket, connect to the station's events and start serving."""
        self._bind()
        ev = self.station.events
        ev.result_ready.connect(self._on_result)
        ev.part_ready.connect(self._on_part)
        ev.camera_state_changed.connect(self._on_camera_state)
        ev.paused_changed.connect(self._on_paused)
        for target, name in ((self._accept_loop, "link-accept"), (self._publish_loop, "link-publish")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("control link: serving station %s on %s", self.station.config.name, self.path)

    def stop(self) -> None:
        """Disconnect every client, stop serving and remove the socket (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        ev = self.station.events
        for sig, slot in ((ev.result_ready, self._on_result), (ev.part_ready, self._on_part),
                          (ev.camera_state_changed, self._on_camera_state), (ev.paused_changed, self._on_paused)):
            sig.disconnect(slot, missing_ok=True)
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        with self._clients_lock:
            clients = list(self._clients)
        for c in clients:
            c.close()
        for c in clients:
            c.join()
        for t in self._threads:
            t.join(2.0)
        with self._lock:
            held, self._newest = [h for h, _ in self._newest.values()], {}
        for h in held:
            h.release()
        try:
            if self.path.is_socket():
                self.path.unlink()
        except OSError:
            pass

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def clients(self) -> list[ClientLink]:
        with self._clients_lock:
            return list(self._clients)

    def _bind(self) -> None:
        path = self.path
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=0o750, parents=True)
            if path.exists() or path.is_symlink():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise ServiceError(f"socket {path}: a file that is not a socket is there; remove it")
                if _answers(path):
                    raise ServiceError(f"socket {path}: a station service answers there already")
                path.unlink()  # left by a service that died
            lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lst.bind(str(path))
            os.chmod(path, 0o660)  # the service's user and group (the GUI users) only
            lst.listen(8)
            lst.settimeout(0.5)
        except ServiceError:
            raise
        except OSError as exc:
            raise ServiceError(f"socket {path}: {exc.strerror or exc}") from None
        self._listener = lst

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._clients_lock:
                full = len(self._clients) >= self.max_clients
                self._seq += 1
                name = f"client {self._seq}"
            if full:
                log.warning("control link: %s refused: %d clients attached already", name, self.max_clients)
                sock.close()
                continue
            try:
                control = StationControl(self.station)
            except Exception as exc:  # noqa: BLE001 - a session that cannot open is one line, the server goes on
                log.warning("control link: %s: no session: %s", name, exc)
                sock.close()
                continue
            client = ClientLink(sock, self, control, name)
            with self._clients_lock:
                self._clients.append(client)
            client.start()
            log.info("control link: %s attached", name)

    def forget(self, client: ClientLink) -> None:
        """Drop a client that closed (its link calls this)."""
        with self._clients_lock:
            if client in self._clients:
                self._clients.remove(client)
                log.info("control link: %s detached", client.name)

    # -------------------------------------------------------------- what clients read
    def hello(self) -> dict[str, Any]:
        """The station as a client first sees it (cameras, line, classes, database)."""
        st = self.station
        card = getattr(st, "card", None)
        line = st.line
        return {
            "version": VERSION,
            "station": st.config.name,
            "pid": os.getpid(),
            "cameras": [
                {"id": cid, "kind": cam.info.kind, "vendor": cam.info.vendor, "model": cam.info.model,
                 "serial": cam.info.serial, "state": _state(cam.state), "pool_capacity": cam.pool.capacity}
                for cid, cam in st.cameras.items()
            ],
            "triggered": line is not None,
            "classes": list(card.classes) if card is not None else [],
            "paused": bool(st.paused),
            "db_url": getattr(st, "db_url", None),
            "image_fps": self.image_fps,
            "recipes": recipes_to_wire(getattr(st, "recipes", None)),
        }

    def status(self) -> dict[str, Any]:
        """Health, pause, line counters and every camera's numbers now."""
        st = self.station
        now = time.monotonic()
        cams = []
        with self._lock:
            lat = {cid: list(d) for cid, d in self._latency.items()}
            last = dict(self._last)
        for cid, cam in st.cameras.items():
            c = cam.pool.snapshot()
            mark = self._rate_marks.get(cid)
            if mark is None or now - mark[0] >= 1.0:
                if mark is not None:
                    dt = now - mark[0]
                    self._rates[cid] = ((c.received - mark[1]) / dt, (c.inspected - mark[2]) / dt)
                self._rate_marks[cid] = (now, c.received, c.inspected)
            fps, ins = self._rates.get(cid, (0.0, 0.0))
            newest = cam.pool.latest()
            newest_wall = newest.acquired_wall if newest is not None else None
            if newest is not None:
                newest.release()
            cs = st.stats.camera(cid)
            verdict, at = last.get(cid, ("", None))  # type: ignore[arg-type]
            cams.append(dataclasses.asdict(CameraLiveWire(
                camera_id=cid, state=_state(cam.state), fps=fps, inspected_fps=ins,
                latency_p50_ms=float(np.median(lat[cid])) if lat.get(cid) else None, dropped=c.dropped,
                inspected=cs.inspected, ng=cs.ng, last_verdict=verdict,
                last_result_age_s=(now - at) if at is not None else None, newest_frame_wall=newest_wall,
            )))
        return {"paused": bool(st.paused), "health": dict(st.health()), "cameras": cams, "line": self._line_status(),
                "plc": plc_status(st).to_wire(),  # type: ignore[arg-type]  # Station has both links (None: off)
                # the recipe in force and the list (a switch by the PLC or another window; a version saved)
                "recipes": recipes_to_wire(getattr(st, "recipes", None))}

    def _line_status(self) -> dict[str, Any] | None:
        line = self.station.line
        if line is None:
            return None
        rep = line.report()
        win = line.tracker.stats.window(GAUGE_WINDOW_S)
        return {
            "parts": int(rep["verdicts"]), "ok": int(rep["ok"]), "ng": int(rep["ng"]),
            "incomplete": int(rep["incomplete"]), "late_frames": int(rep["late_frames"]),
            "missed_triggers": int(rep.get("missed_triggers", 0)), "budget_ms": float(rep["budget_ms"]),
            "p99_ms": float(win["p99_ms"]), "window_parts": int(win["parts"]), "window_s": GAUGE_WINDOW_S,
        }

    # -------------------------------------------------------------- engine threads (cheap)
    def _wanting_images(self) -> bool:
        return self.image_fps > 0 and any(c.wants_images for c in self.clients)

    def _on_result(self, r: InspectionResult) -> None:
        old: FrameHandle | None = None
        with self._lock:
            lat = self._latency.get(r.camera_id)
            if lat is None:
                lat = self._latency[r.camera_id] = deque(maxlen=64)
            lat.append(r.times.total_ms)
            self._last[r.camera_id] = (r.verdict.value, time.monotonic())
            if r.frame is None or r.late or not self._clients or not self._wanting_images():
                return
            prev = self._newest.get(r.camera_id)
            old = prev[0] if prev is not None else None
            self._newest[r.camera_id] = (r.frame.retain(), r)  # the worker still holds it here
        if old is not None:
            old.release()

    def _on_part(self, part: PartResult) -> None:
        if self._clients:
            self._parts.append(part)

    def _on_camera_state(self, camera_id: str, old: CameraState, new: CameraState) -> None:
        if new is not CameraState.STREAMING:  # a lost camera gets its buffer back at once
            with self._lock:
                held = self._newest.pop(camera_id, None)
            if held is not None:
                held[0].release()
        self._events.append({"event": "camera_state", "camera_id": camera_id, "old": _state(old), "new": _state(new)})

    def _on_paused(self, paused: bool) -> None:
        self._events.append({"event": "paused", "paused": bool(paused)})

    # -------------------------------------------------------------- publisher thread
    def _broadcast(self, message: bytes, *, image: bool = False) -> None:
        for c in self.clients:
            if not image or c.wants_images:
                c.send(message, image=image)

    def _publish_loop(self) -> None:
        status_at = 0.0
        while not self._stop.wait(PUBLISH_PERIOD_S):
            try:
                if not self.clients:
                    self._parts.clear()
                    self._events.clear()
                    continue
                while self._events:
                    self._broadcast(encode(self._events.popleft()))
                if self._wanting_images():
                    self._send_images()
                while self._parts:
                    self._broadcast(encode({"event": "part", "part": part_to_wire(self._parts.popleft())}))
                now = time.monotonic()
                if now - status_at >= 1.0 / self.status_hz:
                    status_at = now
                    self._broadcast(encode({"event": "status", **self.status()}))
            except Exception as exc:  # noqa: BLE001 - the link must outlive one bad snapshot
                log.warning("control link: publishing failed: %s: %s", type(exc).__name__, exc)

    def _send_images(self) -> None:
        now = time.monotonic()
        interval = 1.0 / self.image_fps
        due: list[tuple[FrameHandle, InspectionResult]] = []
        with self._lock:
            for cid in list(self._newest):
                h, r = self._newest[cid]
                at, seq = self._encoded_at.get(cid, (0.0, -1))
                if now - at >= interval and h.sequence != seq:
                    due.append(self._newest.pop(cid))
                    self._encoded_at[cid] = (now, h.sequence)
        wanting = [c for c in self.clients if c.wants_images]
        lossless = {c for c in wanting if c.wants_lossless}  # the Teach dialog collecting: PNG
        kinds = (["jpeg"] if len(lossless) < len(wanting) else []) + (["png"] if lossless else [])
        for h, r in due:
            try:
                images = {k: base64.b64encode(encode_display_jpeg(h.image, h.pixel_format, lossless=k == "png")).decode()
                          for k in kinds}
                wall = h.acquired_wall
            except (ValueError, cv2.error) as exc:  # a malformed frame (counted by the engine)
                log.debug("control link: camera %s frame %d not sent: %s", h.camera_id, h.sequence, exc)
                continue
            finally:
                h.release()
            msg = {"event": "image", "camera_id": r.camera_id, "sequence": r.sequence, "part_id": r.part_id,
                   "acquired_wall": wall, "result": result_to_wire(r)}
            heat = self._encoded_heat_map(r)
            if heat:
                msg["heat"] = heat
            for kind, data in images.items():
                line = encode({**msg, kind: data})
                for c in wanting:
                    if (c in lossless) == (kind == "png"):
                        c.send(line, image=True)
            self.images_sent += 1

    def _encoded_heat_map(self, r: InspectionResult) -> str:
        """``r``'s anomaly heat map as base64 PNG ("": it has none); 160 px, 2-8 kB, as the archive keeps it."""
        if self._heat_map is None or r.anomaly_map is None:
            return ""
        try:
            heat = self._heat_map(r)
            if heat is None:
                return ""
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(heat, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        except (ValueError, cv2.error) as exc:
            log.debug("control link: camera %s frame %d: no heat map: %s", r.camera_id, r.sequence, exc)
            return ""
        return base64.b64encode(buf.tobytes()).decode() if ok else ""


# ---------------------------------------------------------------------------- helpers
def _state(state: object) -> str:
    return str(getattr(state, "value", state))


def _answers(path: Path) -> bool:
    """Whether a server accepts connections on ``path`` now."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()
