"""`EngineBridge`: adapts the engine's psygnal events (from engine threads) to Qt.

Results arrive on the inference thread at up to tens per second per camera. They are
not forwarded one by one: the bridge keeps the newest result of each camera (and one
reference to its frame, so the view can paint the very pixels the boxes belong to)
under a lock, and a `QTimer` on the GUI thread emits `tick` at ~16 Hz for the views to
repaint from that state. The display drops frames; the engine never waits for it.

On a triggered line (``station.line`` set) the unit shown is the part: each frame is
retained for its part when its result arrives (the worker still holds it then), and
`part_ready` moves the part into the recent parts the wall shows. `PartFrames` keeps the
display's references within half of each camera's pool, so the GUI never starves
acquisition. A part that waits for its deadline (another camera is out: every part does)
would outlive its frames' references, so the frame of an undecided part is copied
(`FrameCopy`) as its reference goes back; a decided part's frame given back is shown as
"image released", never replaced.

Camera state changes, pause changes and the control API's events are forwarded as Qt
signals; emitted from an engine thread, they reach GUI-thread slots queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from camera.frame_pool import FrameHandle
from camera.protocol import CameraState
from inspector.access.control import StationControl
from inspector.pipeline.results import InspectionResult, PartResult
from inspector.plc.link_status import PlcStatus, plc_status

log = logging.getLogger(__name__)

#: A result's frame is kept for display at most this long (seconds) after it was taken.
HOLD_FRAME_S = 2.0
#: Decided parts the bridge remembers for the parts strip (their frames are held far fewer).
PARTS_KEPT = 20
#: The window of the line's budget gauge (seconds).
GAUGE_WINDOW_S = 10.0
#: Copies of undecided parts' frames kept per camera (parts open at once: budget x part rate).
COPIES_PER_CAMERA = 12
#: A copy's longest side at most (pixels): a wall view is smaller; boxes keep the frame's size.
COPY_MAX_PX = 640


class FrameCopy:
    """The pixels of a frame whose pool reference went back, for display only (no slot held).

    It reads like the `FrameHandle` it copies (``image``, ``pixel_format``, ``sequence``,
    ``acquired_wall``, ``retain``/``release``); ``frame_size`` is the frame's own ``(width,
    height)``: ``image`` may be smaller (every n-th pixel, at most `COPY_MAX_PX`).
    """

    def __init__(self, h: FrameHandle) -> None:
        full_h, full_w = h.image.shape[:2]
        step = max(1, -(-max(full_h, full_w) // COPY_MAX_PX))
        self.image = np.ascontiguousarray(h.image[::step, ::step])
        self.frame_size = (full_w, full_h)
        self.pixel_format = h.pixel_format
        self.sequence = h.sequence
        self.acquired_wall = h.acquired_wall

    def retain(self) -> FrameCopy:
        return self

    def release(self) -> None:
        pass


#: What the views get of a part's frame: the held frame itself, or its copy.
DisplayFrame = FrameHandle | FrameCopy


def frame_size(h: DisplayFrame) -> tuple[int, int]:
    """``(width, height)`` of the frame ``h`` shows (the boxes' coordinates)."""
    if isinstance(h, FrameCopy):
        return h.frame_size
    fh, fw = h.image.shape[:2]
    return fw, fh


@dataclass
class CameraLive:
    """What the bridge knows about one camera, refreshed on the GUI thread."""

    camera_id: str
    fps: float = 0.0  # frames received per second (last ~second)
    inspected_fps: float = 0.0
    latency_p50_ms: float | None = None
    dropped: int = 0
    inspected: int = 0
    ng: int = 0
    last_verdict: str = ""
    last_result_at: float | None = None  # time.monotonic() when the newest result arrived
    _rate_mark: tuple[float, int, int] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LineStatus:
    """A triggered line's counters since start and its trigger->verdict p99 over the last `window_s`."""

    parts: int
    ok: int
    ng: int  # incomplete parts included: they are NG (fail safe)
    incomplete: int
    late_frames: int
    missed_triggers: int
    budget_ms: float
    p99_ms: float  # over the window; 0 when no part was decided in it
    window_parts: int
    window_s: float = GAUGE_WINDOW_S
    #: the reject gate's ``(in time, late, passed)`` (`RejectGate.counters`); None: the line has no reject output
    gate: tuple[int, int, int] | None = None


class PartFrames:
    """Display references to the frames of recent parts, at most ``shares[camera]`` per camera.

    Not thread-safe: the bridge calls it under its lock. Methods that give references up
    return the handles for the caller to release *outside* that lock.

    When a camera's share is full, the reference given up is the oldest decided part's,
    then the newest decided part's, then the oldest undecided part's. The last two are
    listed in `to_copy` for the caller to copy (outside the lock) before releasing them
    (the wall may not have painted the newest part yet), and `keep_copy` stores the copy.
    """

    def __init__(self, shares: dict[str, int]) -> None:
        self.shares = shares
        self._held: OrderedDict[str, dict[str, FrameHandle]] = OrderedDict()  # part id -> camera -> handle
        self._copies: OrderedDict[str, dict[str, FrameCopy]] = OrderedDict()  # part id -> camera -> copy
        self._decided: list[str] = []  # oldest first
        #: ``(part id, camera id, handle)`` given up by `add` from undecided parts: copy, then release
        self.to_copy: list[tuple[str, str, FrameHandle]] = []

    def add(self, part_id: str, camera_id: str, frame: FrameHandle) -> list[FrameHandle]:
        """Retain ``frame`` for its part (the caller's reference must still be live)."""
        frames = self._held.setdefault(part_id, {})
        out = [frames[camera_id]] if camera_id in frames else []
        frames[camera_id] = frame.retain()
        share = max(1, self.shares.get(camera_id, 1))
        while self.held(camera_id) > share:
            victim = self._victim(camera_id, keep=part_id)
            if victim is None:
                break
            h = self._held[victim].pop(camera_id)
            if victim in self._decided and victim != self._decided[-1]:
                out.append(h)
            else:  # an open part, or the part decided last (the wall's, perhaps not painted yet)
                self.to_copy.append((victim, camera_id, h))
        self._prune()
        return out

    def keep_copy(self, part_id: str, camera_id: str, copy: FrameCopy) -> None:
        """Keep the copy of a frame given up before its part was decided (at most `COPIES_PER_CAMERA`)."""
        self._copies.setdefault(part_id, {})[camera_id] = copy
        mine = [p for p, c in self._copies.items() if camera_id in c]
        while len(mine) > COPIES_PER_CAMERA:  # the oldest decided part's first, then the oldest one
            drop = next((p for p in mine if p in self._decided), mine[0])
            mine.remove(drop)
            del self._copies[drop][camera_id]
        self._prune()

    def decide(self, part: PartResult) -> list[FrameHandle]:
        """``part`` has its verdict: keep the references that are its frames', give back any other."""
        held = self._held.get(part.part_id, {})
        own = {f.camera_id: f.frame for f in part.frames}
        out = [held.pop(cid) for cid in list(held) if own.get(cid) is not held[cid]]
        if part.part_id not in self._decided:
            self._decided.append(part.part_id)
        copies = self._copies.get(part.part_id, {})
        for cid in [c for c, copy in copies.items() if (f := own.get(c)) is None or f.sequence != copy.sequence]:
            del copies[cid]
        while len(self._decided) > PARTS_KEPT:
            gone = self._decided.pop(0)
            out.extend(self._held.pop(gone, {}).values())
            self._copies.pop(gone, None)
        self._prune()
        return out

    def get(self, part_id: str, camera_id: str) -> DisplayFrame | None:
        """The part's frame of a camera with a reference for the caller (or its copy), or None
        (released or never had)."""
        h = self._held.get(part_id, {}).get(camera_id)
        if h is not None:
            return h.retain()
        return self._copies.get(part_id, {}).get(camera_id)

    def held(self, camera_id: str) -> int:
        return sum(camera_id in frames for frames in self._held.values())

    def drop_camera(self, camera_id: str) -> list[FrameHandle]:
        out = [frames.pop(camera_id) for frames in self._held.values() if camera_id in frames]
        self._prune()
        return out

    def clear(self) -> list[FrameHandle]:
        out = [h for frames in self._held.values() for h in frames.values()]
        self._held.clear()
        self._copies.clear()
        out += [h for _p, _c, h in self.to_copy]
        self.to_copy.clear()
        return out

    def _victim(self, camera_id: str, keep: str) -> str | None:
        decided = [p for p in self._decided if camera_id in self._held.get(p, {})]
        if decided:
            return decided[0]
        undecided = [p for p, frames in self._held.items() if p != keep and camera_id in frames]
        return undecided[0] if undecided else None

    def _prune(self) -> None:
        for pid in [p for p, frames in self._held.items() if not frames]:
            del self._held[pid]
        for pid in [p for p, frames in self._copies.items() if not frames]:
            del self._copies[pid]
        self._decided = [p for p in self._decided if p in self._held or p in self._copies]


class EngineBridge(QObject):
    """Engine events -> Qt signals, with a timer that paces the views.

    Args:
        station: The `inspector.station.Station` (or anything with ``events``,
            ``cameras`` and ``stats``).
        control: The control API whose events to forward (optional).
        refresh_hz: How often `tick` fires (default: the fastest camera rate, clamped to 5..10 Hz).
        parent: Qt parent.
    """

    tick = Signal()
    camera_state_changed = Signal(str, str, str)  # camera id, old state, new state (values)
    paused_changed = Signal(bool)
    user_changed = Signal(object)  # inspector.access.users.User | None
    audit_recorded = Signal(object)  # inspector.access.users.AuditEntry

    def __init__(self, station: Any, control: StationControl | None = None, *, refresh_hz: float | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.station = station
        self.control = control
        self._lock = threading.Lock()
        self._results: dict[str, InspectionResult] = {}
        self._frames: dict[str, FrameHandle] = {}  # one display reference per camera
        self._frame_results: dict[str, InspectionResult] = {}  # the result each held frame belongs to
        self._latency: dict[str, deque[float]] = {cid: deque(maxlen=64) for cid in station.cameras}
        self._result_at: dict[str, float] = {}
        self.live: dict[str, CameraLive] = {cid: CameraLive(cid) for cid in station.cameras}
        #: the triggered line (parts), None on a free-running station
        self.line: Any = getattr(station, "line", None)
        # half of each pool for the display: the other half covers queued, in-flight, latest and archive
        self._part_frames = PartFrames({cid: cam.pool.capacity // 2 for cid, cam in station.cameras.items()})
        self._parts: deque[PartResult] = deque(maxlen=PARTS_KEPT)  # newest last
        self._closed = False
        station.events.result_ready.connect(self._on_result)
        if self.line is not None:
            station.events.part_ready.connect(self._on_part)
        station.events.camera_state_changed.connect(self._on_camera_state)
        station.events.paused_changed.connect(self._on_paused)
        if control is not None:
            control.events.user_changed.connect(self._on_user)
            control.events.audit_recorded.connect(self._on_audit)
        self._timer = QTimer(self)
        if refresh_hz is None:
            # every frame of a 5 fps camera, at most 10 Hz: repainting 8 views costs the engine CPU
            # (measured: 14% of saturation throughput at 10 Hz, under 1% at 5 Hz on two cores)
            rates = [float(getattr(c, "nominal_fps", 0.0) or 0.0) for c in station.cameras.values()]
            refresh_hz = min(10.0, max(5.0, max(rates, default=5.0)))
        self.refresh_hz = refresh_hz
        self._timer.setInterval(max(10, int(1000 / refresh_hz)))
        self._timer.timeout.connect(self._on_timer)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start pacing the views."""
        self._timer.start()

    def lossless_images(self, on: bool) -> None:
        """Nothing: the frames here are the cameras' own (an attached window's bridge asks for PNG)."""

    def close(self) -> None:
        """Disconnect from the engine and give back every held frame; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        ev = self.station.events
        for sig, slot in (
            (ev.result_ready, self._on_result),
            (ev.part_ready, self._on_part),
            (ev.camera_state_changed, self._on_camera_state),
            (ev.paused_changed, self._on_paused),
        ):
            sig.disconnect(slot, missing_ok=True)
        if self.control is not None:
            self.control.events.user_changed.disconnect(self._on_user, missing_ok=True)
            self.control.events.audit_recorded.disconnect(self._on_audit, missing_ok=True)
        with self._lock:
            frames, self._frames = list(self._frames.values()), {}
            self._frame_results.clear()
            frames += self._part_frames.clear()
        for h in frames:
            h.release()

    # ------------------------------------------------------------------ engine threads
    def _on_result(self, r: InspectionResult) -> None:
        # Inference thread: the worker still holds the frame here, so retaining is safe.
        old: FrameHandle | None = None
        given_up: list[FrameHandle] = []
        to_copy: list[tuple[str, str, FrameHandle]] = []
        with self._lock:
            if self._closed:
                return
            self._results[r.camera_id] = r
            self._result_at[r.camera_id] = time.monotonic()
            lat = self._latency.get(r.camera_id)
            if lat is None:
                lat = self._latency[r.camera_id] = deque(maxlen=64)
            lat.append(r.times.total_ms)
            if r.frame is None:
                pass
            elif self.line is None:
                old = self._frames.get(r.camera_id)
                self._frames[r.camera_id] = r.frame.retain()
                self._frame_results[r.camera_id] = r
            elif r.part_id is not None and not r.late:  # a late frame is not its part's: never shown as such
                given_up = self._part_frames.add(r.part_id, r.camera_id, r.frame)
                to_copy, self._part_frames.to_copy = self._part_frames.to_copy, []
        if old is not None:
            old.release()
        for h in given_up:
            h.release()
        if to_copy:
            self._copy_and_release(to_copy)

    def _copy_and_release(self, frames: list[tuple[str, str, FrameHandle]]) -> None:
        """Copy the frames of undecided parts whose references go back, then give the references back."""
        copies = []
        for part_id, camera_id, h in frames:
            try:
                copies.append((part_id, camera_id, FrameCopy(h)))
            finally:
                h.release()
        with self._lock:
            if self._closed:
                return
            for part_id, camera_id, copy in copies:
                self._part_frames.keep_copy(part_id, camera_id, copy)

    def _on_part(self, part: PartResult) -> None:
        # The fan-out or the tracker's deadline thread: the frames' references were taken in _on_result.
        with self._lock:
            if self._closed:
                return
            given_up = self._part_frames.decide(part)
            self._parts.append(part)
        for h in given_up:
            h.release()

    def _on_camera_state(self, camera_id: str, old: CameraState, new: CameraState) -> None:
        if new is not CameraState.STREAMING:  # a stopping or lost camera gets its buffer back at once
            with self._lock:
                held = [self._frames.pop(camera_id, None), *self._part_frames.drop_camera(camera_id)]
            for h in held:
                if h is not None:
                    h.release()
        self.camera_state_changed.emit(camera_id, _state_value(old), _state_value(new))

    def _on_paused(self, paused: bool) -> None:
        self.paused_changed.emit(bool(paused))

    def _on_user(self, user: object) -> None:
        self.user_changed.emit(user)

    def _on_audit(self, entry: object) -> None:
        self.audit_recorded.emit(entry)

    # ------------------------------------------------------------------ GUI thread
    def result_frame(self, camera_id: str) -> tuple[FrameHandle | None, InspectionResult | None]:
        """The newest result that still has its frame, and that frame with a reference for the caller.

        The two always belong together (``h is r.frame``): a newer result without a frame
        never pairs with an older picture. ``(None, None)`` when no frame is held (release ``h``).
        """
        with self._lock:
            h = self._frames.get(camera_id)
            r = self._frame_results.get(camera_id) if h is not None else None
            if h is None or r is None:
                return None, None
            h.retain()
        return h, r

    def recent_parts(self) -> list[PartResult]:
        """The last decided parts, newest first (empty on a free-running station)."""
        with self._lock:
            return list(reversed(self._parts))

    def current_part(self) -> PartResult | None:
        """The most recently decided part, or None."""
        with self._lock:
            return self._parts[-1] if self._parts else None

    def part_frame(self, part_id: str, camera_id: str) -> DisplayFrame | None:
        """A part's frame of one camera with a reference for the caller (release it), or its copy;
        None once given back."""
        with self._lock:
            return self._part_frames.get(part_id, camera_id)

    def line_status(self) -> LineStatus | None:
        """The triggered line's counters and its windowed p99 (None on a free-running station)."""
        if self.line is None:
            return None
        rep = self.line.report()
        win = self.line.tracker.stats.window(GAUGE_WINDOW_S)
        g = rep.get("reject_gate")
        return LineStatus(
            parts=int(rep["verdicts"]), ok=int(rep["ok"]), ng=int(rep["ng"]), incomplete=int(rep["incomplete"]),
            late_frames=int(rep["late_frames"]), missed_triggers=int(rep.get("missed_triggers", 0)),
            budget_ms=float(rep["budget_ms"]), p99_ms=float(win["p99_ms"]), window_parts=int(win["parts"]),
            gate=(int(g["rejected_in_time"]), int(g["missed"]), int(g["passed_ok"])) if g is not None else None,
        )

    def _on_timer(self) -> None:
        self._refresh_live()
        self._drop_old_frames()
        self.tick.emit()

    def _refresh_live(self) -> None:
        now = time.monotonic()
        stats = getattr(self.station, "stats", None)
        with self._lock:
            lat = {cid: list(d) for cid, d in self._latency.items()}
            result_at = dict(self._result_at)
            verdicts = {cid: r.verdict.value for cid, r in self._results.items()}
        for cid, cam in self.station.cameras.items():
            live = self.live.setdefault(cid, CameraLive(cid))
            c = cam.pool.snapshot()
            live.dropped = c.dropped
            if live._rate_mark is None:
                live._rate_mark = (now, c.received, c.inspected)
            else:
                t0, rec0, ins0 = live._rate_mark
                if now - t0 >= 1.0:
                    live.fps = (c.received - rec0) / (now - t0)
                    live.inspected_fps = (c.inspected - ins0) / (now - t0)
                    live._rate_mark = (now, c.received, c.inspected)
            samples = lat.get(cid)
            live.latency_p50_ms = float(np.median(samples)) if samples else None
            live.last_verdict = verdicts.get(cid, "")
            live.last_result_at = result_at.get(cid)
            if stats is not None:
                cs = stats.camera(cid)
                live.inspected, live.ng = cs.inspected, cs.ng

    def _drop_old_frames(self) -> None:
        """Give slots back while inspection is paused (no newer result replaces them)."""
        now = time.time()
        old: list[FrameHandle] = []
        with self._lock:
            for cid, h in list(self._frames.items()):
                if now - h.acquired_wall > HOLD_FRAME_S:
                    old.append(self._frames.pop(cid))
        for h in old:
            h.release()

    def plc_status(self) -> PlcStatus:
        """The station's PLC links now (the PLC view)."""
        return plc_status(self.station)

    def line_counts(self) -> tuple[int, int]:
        """``(inspected, NG)`` over all cameras since the station started."""
        return sum(v.inspected for v in self.live.values()), sum(v.ng for v in self.live.values())

    def line_verdict(self, *, recent_s: float = 3.0) -> str:
        """``"NG"`` if any camera's newest recent result is NG, ``"OK"`` if all are OK, else ``""``."""
        now = time.monotonic()
        recent = [v.last_verdict for v in self.live.values() if v.last_result_at is not None and now - v.last_result_at <= recent_s]
        if not recent:
            return ""
        return "NG" if "NG" in recent else "OK"


def _state_value(state: object) -> str:
    return str(getattr(state, "value", state))
