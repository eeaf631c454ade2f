"""`RemoteBridge`: a station service's events as the bridge state and Qt signals the views read.

It has `gui.bridge.EngineBridge`'s interface (the live wall, camera views and parts strip
take either): events arrive on the link's reader thread and are kept under a lock; a
`QTimer` on the GUI thread emits `tick` for the views to repaint. Images arrive already
downscaled (`inspector.service.protocol.display_size`) with their boxes scaled alike.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from camera.frame_pool import PoolCounters
from camera.protocol import CameraState
from gui.bridge import GAUGE_WINDOW_S, PARTS_KEPT, CameraLive, LineStatus
from gui.remote import LOST_HEALTH, RemoteControl, RemoteFrame, RemoteLink, RemoteStation, camera_state
from inspector.access.control import ControlError
from inspector.pipeline.results import InspectionResult, PartResult
from inspector.plc.link_status import PlcStatus
from inspector.service.protocol import ProtocolError, part_from_wire, result_from_wire

log = logging.getLogger(__name__)


class RemoteBridge(QObject):
    """The service's events -> the bridge's state and Qt signals (the interface of `EngineBridge`).

    Args:
        station: The station stand-in (states, health and pause are kept up to date here).
        control: This window's session (its user changes are forwarded as `user_changed`).
        link: The connection (its events are read on the link's thread).
        refresh_hz: How often `tick` fires (default: the service's image rate, 5..10 Hz).
    """

    tick = Signal()
    camera_state_changed = Signal(str, str, str)
    paused_changed = Signal(bool)
    user_changed = Signal(object)
    audit_recorded = Signal(object)
    link_lost = Signal(str)

    def __init__(self, station: RemoteStation, control: RemoteControl, link: RemoteLink, *,
                 refresh_hz: float | None = None, image_fps: float = 5.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.station = station
        self.control = control
        self.link = link
        self.line = station.line
        self.live: dict[str, CameraLive] = {cid: CameraLive(cid) for cid in station.cameras}
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[RemoteFrame, InspectionResult]] = {}
        self._part_frames: OrderedDict[str, dict[str, RemoteFrame]] = OrderedDict()
        self._parts: deque[PartResult] = deque(maxlen=PARTS_KEPT)
        self._line: LineStatus | None = None
        self._plc = PlcStatus()
        self._closed = False
        self.images_received = 0
        #: of those, PNG (asked for while the Teach dialog collects good parts)
        self.lossless_received = 0
        control.events.user_changed.connect(self._on_user)
        link.on_event = self._on_event
        link.on_lost = self._on_lost
        self.refresh_hz = refresh_hz if refresh_hz is not None else min(10.0, max(5.0, image_fps))
        self._timer = QTimer(self)
        self._timer.setInterval(max(10, int(1000 / self.refresh_hz)))
        self._timer.timeout.connect(self.tick.emit)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Ask the service for images and start pacing the views."""
        self._timer.start()
        try:
            self.link.request("images", on=True)
        except ControlError as exc:
            log.warning("control link: no images: %s", exc)

    def lossless_images(self, on: bool) -> None:
        """Ask the service for PNG images instead of JPEG (the Teach dialog collecting good parts) or back."""
        try:
            self.link.request("images", on=True, lossless=on)
        except ControlError as exc:
            log.warning("control link: images: %s", exc)

    def close(self) -> None:
        """Stop pacing the views (the link is closed by its owner); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self.control.events.user_changed.disconnect(self._on_user, missing_ok=True)
        self.link.on_event = None
        self.link.on_lost = None

    # ------------------------------------------------------------------ the link's thread
    def _on_user(self, user: object) -> None:
        self.user_changed.emit(user)

    def _on_event(self, msg: dict[str, Any]) -> None:
        kind = msg.get("event")
        if kind == "image":
            self._on_image(msg)
        elif kind == "part":
            part = part_from_wire(msg["part"])
            with self._lock:
                self._parts.append(part)
        elif kind == "status":
            self._on_status(msg)
        elif kind == "camera_state":
            cam = self.station.cameras.get(str(msg.get("camera_id")))
            if cam is not None:
                cam.state = camera_state(msg.get("new"))
                self.camera_state_changed.emit(cam.info.id, str(msg.get("old")), cam.state.value)
        elif kind == "paused":
            self.station._paused = bool(msg.get("paused"))
            self.paused_changed.emit(self.station._paused)

    def _on_image(self, msg: dict[str, Any]) -> None:
        data = np.frombuffer(base64.b64decode(msg["png"] if "png" in msg else msg["jpeg"]), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ProtocolError("image: not a JPEG or PNG")
        cid = str(msg["camera_id"])
        frame = RemoteFrame(cid, int(msg["sequence"]), image, float(msg["acquired_wall"]))
        result = result_from_wire(msg["result"])
        if msg.get("heat"):  # before the frame is shown: the wall asks for it by camera and sequence
            heat = cv2.imdecode(np.frombuffer(base64.b64decode(msg["heat"]), np.uint8), cv2.IMREAD_GRAYSCALE)
            if heat is None:
                raise ProtocolError("image: its heat map is not a PNG")
            self.station.anomaly_models.put(cid, frame.sequence, heat)
        part_id = msg.get("part_id")
        with self._lock:
            self.images_received += 1
            self.lossless_received += int("png" in msg)
            if self.line is None or part_id is None:
                self._frames[cid] = (frame, result)
                return
            self._part_frames.setdefault(str(part_id), {})[cid] = frame
            self._part_frames.move_to_end(str(part_id))
            while len(self._part_frames) > 2 * PARTS_KEPT:
                self._part_frames.popitem(last=False)

    def _on_status(self, msg: dict[str, Any]) -> None:
        now = time.monotonic()
        health = msg.get("health")
        if isinstance(health, dict):
            self.station._health = health
        paused = bool(msg.get("paused"))
        if paused != self.station._paused:
            self.station._paused = paused
            self.paused_changed.emit(paused)
        for c in msg.get("cameras", []):
            cid = str(c["camera_id"])
            cam = self.station.cameras.get(cid)
            live = self.live.get(cid)
            if cam is None or live is None:
                continue
            cam.pool.newest_frame_wall = c.get("newest_frame_wall")
            cam.pool.counters = PoolCounters(inspected=int(c["inspected"]), dropped=int(c["dropped"]))
            state = camera_state(c.get("state"))
            if state is not cam.state:
                old, cam.state = cam.state, state
                self.camera_state_changed.emit(cid, old.value, state.value)
            live.fps, live.inspected_fps = float(c["fps"]), float(c["inspected_fps"])
            live.latency_p50_ms = c.get("latency_p50_ms")
            live.dropped, live.inspected, live.ng = int(c["dropped"]), int(c["inspected"]), int(c["ng"])
            live.last_verdict = str(c.get("last_verdict", ""))
            age = c.get("last_result_age_s")
            live.last_result_at = now - float(age) if age is not None else None
        line = msg.get("line")
        if isinstance(line, dict):
            with self._lock:
                self._line = LineStatus(**{**line, "window_s": float(line.get("window_s", GAUGE_WINDOW_S))})
        recipes = msg.get("recipes")
        if isinstance(recipes, dict) and self.station.recipes is not None:
            self.station.recipes.update(recipes)  # the recipe selector shows it at its next sync
        plc = PlcStatus.from_wire(msg.get("plc"))  # a service from before the PLC view sends none: not configured
        with self._lock:
            self._plc = plc

    def _on_lost(self, reason: str) -> None:
        self.station._health = {"ok": False, "level": "ALARM", "summary": LOST_HEALTH,
                                "issues": [f"{LOST_HEALTH}: {reason}; restart the GUI once the service runs"]}
        for cid, cam in self.station.cameras.items():
            old, cam.state = cam.state, CameraState.OFFLINE
            self.camera_state_changed.emit(cid, old.value, cam.state.value)
        self.link_lost.emit(reason)

    # ------------------------------------------------------------------ GUI thread (EngineBridge's interface)
    def result_frame(self, camera_id: str) -> tuple[RemoteFrame | None, InspectionResult | None]:
        """The newest image of a camera with its result, or ``(None, None)``."""
        with self._lock:
            got = self._frames.get(camera_id)
        return (got[0], got[1]) if got is not None else (None, None)

    def recent_parts(self) -> list[PartResult]:
        with self._lock:
            return list(reversed(self._parts))

    def current_part(self) -> PartResult | None:
        with self._lock:
            return self._parts[-1] if self._parts else None

    def part_frame(self, part_id: str, camera_id: str) -> RemoteFrame | None:
        with self._lock:
            return self._part_frames.get(part_id, {}).get(camera_id)

    def line_status(self) -> LineStatus | None:
        if self.line is None:
            return None
        with self._lock:
            return self._line

    def plc_status(self) -> PlcStatus:
        """The station's PLC links as of the service's last status snapshot (the PLC view)."""
        with self._lock:
            return self._plc

    def line_counts(self) -> tuple[int, int]:
        return sum(v.inspected for v in self.live.values()), sum(v.ng for v in self.live.values())

    def line_verdict(self, *, recent_s: float = 3.0) -> str:
        now = time.monotonic()
        recent = [v.last_verdict for v in self.live.values()
                  if v.last_result_at is not None and now - v.last_result_at <= recent_s]
        if not recent:
            return ""
        return "NG" if "NG" in recent else "OK"
