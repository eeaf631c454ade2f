"""The GUI attached to a station service: the same narrow interface as an embedded station, over the link.

`attach` connects to a running ``inspector service`` (``inspector/service``) on its Unix
socket. `RemoteStation`, `RemoteControl` and `gui.remote_bridge.RemoteBridge` then stand where the embedded
app has the `Station`, its `StationControl` and the `EngineBridge`: the main window, the
live wall, the parts strip and the status bar read them exactly as they read those.

- `RemoteControl` forwards every action to the service's session of this window (the
  service checks the role and writes the audit row); it starts logged out, like a new
  window on an embedded station.
- `RemoteBridge` turns the service's events (parts, display images, camera states, pause,
  status snapshots) into the bridge's state and Qt signals; it paces the views with a timer
  like `EngineBridge`. Images arrive already downscaled, with their boxes scaled alike.
- Closing the window closes the link only: the station keeps inspecting. A lost link
  turns every camera OFFLINE and health ALARM ("link to the station service lost").
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from camera.frame_pool import PoolCounters
from camera.protocol import CameraInfo, CameraState
from inspector.access.audit import AuditEntry
from inspector.access.control import ControlError, ControlEvents, FeatureSetError
from inspector.access.users import LoginRefused, PermissionDenied, Permissions, Role, User, UserError
from inspector.pipeline.results import InspectionResult
from inspector.service.protocol import (
    VERSION,
    ProtocolError,
    decode,
    encode,
    socket_candidates,
)

log = logging.getLogger(__name__)

#: How long a request waits for its answer (a login may be throttled server-side for longer: it answers at once).
REQUEST_TIMEOUT_S = 10.0
#: A taught recipe's save loads and compiles its models before the switch answers.
SAVE_TIMEOUT_S = 120.0
LOST_HEALTH = "the link to the station service is lost"


class LinkLost(ControlError):
    """The service stopped answering (it stopped, or the socket closed); one line."""


_ERRORS: dict[str, type[Exception]] = {
    "PermissionDenied": PermissionDenied, "UserError": UserError, "ControlError": ControlError,
    "FeatureSetError": FeatureSetError, "RecipeError": FeatureSetError, "KeyError": KeyError, "ValueError": ValueError, "TypeError": TypeError,
}


class RemoteLink:
    """A connection to the service: requests answered in order, events handed to `on_event`.

    Args:
        path: The service's socket.
        timeout: Seconds to connect.

    Raises:
        OSError: Nothing answers at ``path``.
    """

    def __init__(self, path: Path | str, *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._ids = itertools.count(1)
        self._pending: dict[int, list[Any]] = {}  # id -> [event, answer]
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.lost: str | None = None
        #: Called on the reader thread with every event message.
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        #: Called once on the reader thread when the link is lost (not after `close`).
        self.on_lost: Callable[[str], None] | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name="link-read", daemon=True)
        self._reader.start()

    def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        """Perform ``op`` on the service and return its result.

        Raises:
            LinkLost: No answer (the service is gone).
            PermissionDenied, LoginRefused, UserError, ControlError, ...: What the service's control API raised.
        """
        if self.lost is not None:
            raise LinkLost(f"station service: {self.lost}")
        rid = next(self._ids)
        slot: list[Any] = [threading.Event(), None]
        with self._lock:
            self._pending[rid] = slot
        try:
            with self._send_lock:
                self._sock.sendall(encode({"id": rid, "op": op, "args": args}))
            if not slot[0].wait(timeout):
                raise LinkLost(f"station service: no answer to {op} in {timeout:g} s")
        except OSError as exc:
            raise LinkLost(f"station service: {exc.strerror or exc}") from None
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        answer = slot[1]
        if answer is None:
            raise LinkLost(f"station service: {self.lost or 'link closed'}")
        if answer.get("ok"):
            return answer.get("result")
        kind, text = str(answer.get("kind", "")), str(answer.get("error", "refused"))
        if kind == "LoginRefused":
            raise LoginRefused(text, float(answer.get("retry_after_s", 0.0)))
        raise _ERRORS.get(kind, ControlError)(text)

    def close(self) -> None:
        """Close the link (the service's session of this window logs out; the station goes on)."""
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._reader is not threading.current_thread():
            self._reader.join(2.0)

    def _read_loop(self) -> None:
        reason = "the service closed the link"
        try:
            with self._sock.makefile("rb") as f:
                for line in f:
                    try:
                        msg = decode(line)
                    except ProtocolError as exc:
                        log.warning("control link: %s", exc)
                        continue
                    if "event" in msg:
                        if self.on_event is not None:
                            try:
                                self.on_event(msg)
                            except Exception as exc:  # noqa: BLE001 - one bad event must not end the link
                                log.warning("control link: event %s: %s: %s", msg.get("event"), type(exc).__name__, exc)
                        continue
                    with self._lock:
                        slot = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
                    if slot is not None:
                        slot[1] = msg
                        slot[0].set()
        except (OSError, ValueError) as exc:
            reason = str(exc)
        self.lost = reason
        with self._lock:
            for slot in self._pending.values():
                slot[0].set()
        if not self._closing and self.on_lost is not None:
            self.on_lost(reason)


def attach(station_name: str, path: Path | str | None = None) -> tuple[RemoteLink, dict[str, Any]] | None:
    """Connect to the service of ``station_name`` if one answers (``path``, else the usual places).

    Returns:
        The link and the service's hello, or None where no service answers.
    """
    for cand in [Path(path)] if path is not None else socket_candidates(station_name):
        if not cand.exists():
            continue
        try:
            link = RemoteLink(cand)
        except OSError as exc:
            log.debug("control link %s: %s", cand, exc)
            continue
        try:
            hello = link.request("hello", timeout=5.0)
        except ControlError as exc:
            log.warning("control link %s: %s", cand, exc)
            link.close()
            continue
        if int(hello.get("version", 0)) != VERSION:
            log.warning("control link %s: protocol %s, this GUI speaks %d", cand, hello.get("version"), VERSION)
            link.close()
            continue
        return link, hello
    return None


# ---------------------------------------------------------------------------- the station's stand-ins
class RemoteFrame:
    """A display image of one frame, standing where a `FrameHandle` is read (no slot behind it)."""

    __slots__ = ("acquired_wall", "camera_id", "image", "pixel_format", "sequence")

    def __init__(self, camera_id: str, sequence: int, image: np.ndarray, acquired_wall: float) -> None:
        self.camera_id = camera_id
        self.sequence = sequence
        self.image = image
        self.pixel_format = "Mono8" if image.ndim == 2 else "BGR8"
        self.acquired_wall = acquired_wall

    def retain(self) -> RemoteFrame:
        return self

    def release(self) -> None:
        pass


class RemotePool:
    """What the views read of a camera's pool: its newest frame's time and its counters."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.newest_frame_wall: float | None = None
        self.counters = PoolCounters()

    def latest(self) -> RemoteFrame | None:
        if self.newest_frame_wall is None:
            return None
        return RemoteFrame("", -1, np.zeros((1, 1), np.uint8), self.newest_frame_wall)

    def snapshot(self) -> PoolCounters:
        return self.counters


class RemoteCamera:
    """A camera of the service: identity, state and pool numbers from its events."""

    def __init__(self, info: CameraInfo, state: CameraState, capacity: int) -> None:
        self.info = info
        self.state = state
        self.pool = RemotePool(capacity)


class RemoteHeatMaps:
    """The anomaly heat maps that came with the service's images, read as `StationAnomaly.heat_map` is.

    The live wall asks for the heat map of the result a view shows; it is the one sent with that
    frame's image (camera and sequence), or None. The newest `KEPT` are kept (160 x 160 u8 each).
    """

    KEPT = 256

    def __init__(self) -> None:
        self._maps: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, camera_id: str, sequence: int, heat: np.ndarray) -> None:
        """Keep the heat map of one frame (the link's reader thread)."""
        with self._lock:
            self._maps[(camera_id, sequence)] = heat
            self._maps.move_to_end((camera_id, sequence))
            while len(self._maps) > self.KEPT:
                self._maps.popitem(last=False)

    def heat_map(self, result: InspectionResult) -> np.ndarray | None:
        """The u8 heat map sent with ``result``'s frame, or None (not scored by an anomaly model, or not sent)."""
        with self._lock:
            return self._maps.get((result.camera_id, result.sequence))


class RemoteStation:
    """The service's station as the main window reads it (built from the service's hello).

    ``stop`` does nothing: closing an attached window never stops inspection.
    """

    def __init__(self, hello: dict[str, Any]) -> None:
        self.config = SimpleNamespace(name=str(hello["station"]))
        self.cameras: dict[str, RemoteCamera] = {
            c["id"]: RemoteCamera(CameraInfo(id=c["id"], kind=c.get("kind", ""), vendor=c.get("vendor", ""),
                                             model=c.get("model", ""), serial=c.get("serial", "")),
                                  camera_state(c.get("state")), int(c.get("pool_capacity", 6)))
            for c in hello["cameras"]
        }
        self.card = SimpleNamespace(classes=tuple(hello.get("classes", ())))
        self.line: object | None = object() if hello.get("triggered") else None
        self.recipes = None  # the product recipe selector stays hidden over the link (not served yet)
        #: heat maps of the anomaly models' results, as the service sends them with its images
        self.anomaly_models = RemoteHeatMaps()
        self.db_url: str | None = hello.get("db_url")
        self.pid = int(hello.get("pid", 0))
        self._paused = bool(hello.get("paused"))
        self._health: dict[str, Any] = {"ok": True, "level": "OK", "summary": "", "issues": []}

    @property
    def paused(self) -> bool:
        return self._paused

    def health(self) -> dict[str, Any]:
        return self._health

    def stop(self) -> None:
        """Nothing: the station is the service's."""


class RemoteControl:
    """`StationControl`'s interface over the link: this window's own session on the service.

    Args:
        link: The connection.
        station: The station stand-in (its pause state follows the answers).
        engine: The station's database, opened here read-only for the history browser (None: no history).
    """

    def __init__(self, link: RemoteLink, station: RemoteStation, engine: Any = None) -> None:
        self.link = link
        self.station = station
        self.engine = engine
        self.permissions = Permissions()
        self.events = ControlEvents()
        self._user: User | None = None
        #: Asked before inspection is paused from this window (None: not asked).
        self.confirm_pause: Callable[[], bool] | None = None

    @property
    def user(self) -> User | None:
        return self._user

    def can(self, action: str) -> bool:
        return self.permissions.allowed(self._user, action)

    def require(self, action: str) -> None:
        self.permissions.require(self._user, action)

    def login(self, name: str, password: str) -> User | None:
        d = self.link.request("login", name=name, password=password)
        user = _user(d)
        if user is not None:
            self._user = user
            self.events.user_changed.emit(user)
        return user

    def logout(self) -> None:
        user, self._user = self._user, None
        try:
            self.link.request("logout")
        except LinkLost:
            pass
        if user is not None:
            self.events.user_changed.emit(None)

    def first_start_needed(self) -> bool:
        return bool(self.link.request("first_start_needed"))

    def create_admin(self, password: str, name: str = "admin") -> User:
        u = _user(self.link.request("create_admin", password=password, name=name))
        assert u is not None
        return u

    def pause(self, paused: bool) -> None:
        """Pause or resume the station (operator); pausing is asked for first when `confirm_pause` is set."""
        self.require("station.pause")
        if paused and self.confirm_pause is not None and not self.confirm_pause():
            return
        self.station._paused = bool(self.link.request("pause", paused=paused))

    def select_recipe(self, key: int | str, *, override_gate: bool = False, reason: str = "") -> str:
        if not override_gate:
            return str(self.link.request("select_recipe", key=key))
        return str(self.link.request("select_recipe", key=key, override_gate=True, reason=reason))

    def trigger_part(self, part_id: str | None = None) -> str:
        return str(self.link.request("trigger_part", part_id=part_id))

    def recipe_in_force(self) -> dict[str, Any] | None:
        got = self.link.request("recipe_in_force")
        return dict(got) if got else None

    def save_taught_recipe(self, models: Mapping[str, Mapping[str, Any]],
                           detector: Mapping[str, bool] | None = None) -> str:
        """The Teach dialog's save over the link: the service's session saves, audits and switches.

        The model folders must be readable by the service (on this machine: the recipes folder's ``models``).
        """
        return str(self.link.request("save_taught_recipe", timeout=SAVE_TIMEOUT_S,
                                     models={cid: dict(m) for cid, m in models.items()},
                                     detector=dict(detector) if detector is not None else None))

    def review(self, inspection_id: int, mark: str | None) -> str | None:
        old = self.link.request("review", inspection_id=inspection_id, mark=mark)
        return None if old is None else str(old)

    def record_export(self, kind: str, path: Path | str, rows: int) -> None:
        self.link.request("record_export", kind=kind, path=str(path), rows=rows)

    def audit_entries(self, limit: int = 500, since: float | None = None) -> list[AuditEntry]:
        return [AuditEntry(**d) for d in self.link.request("audit_entries", limit=limit, since=since)]

    def list_users(self) -> list[User]:
        return [u for u in (_user(d) for d in self.link.request("list_users")) if u is not None]

    def add_user(self, name: str, password: str, role: Role | str) -> User:
        u = _user(self.link.request("add_user", name=name, password=password, role=Role.parse(role).label))
        assert u is not None
        return u

    def set_role(self, name: str, role: Role | str) -> Role:
        old = Role.parse(self.link.request("set_role", name=name, role=Role.parse(role).label))
        if self._user is not None and self._user.name == name.strip():
            self._user = User(self._user.name, Role.parse(role))
            self.events.user_changed.emit(self._user)
        return old

    def set_password(self, name: str, password: str) -> None:
        self.link.request("set_password", name=name, password=password)

    def unlock_user(self, name: str) -> bool:
        return bool(self.link.request("unlock_user", name=name))

    def remove_user(self, name: str) -> Role:
        return Role.parse(self.link.request("remove_user", name=name))

    def change_own_password(self, password: str) -> None:
        self.link.request("change_own_password", password=password)


def _user(d: Any) -> User | None:
    return None if not d else User(str(d["name"]), Role.parse(d["role"]))


def camera_state(value: Any) -> CameraState:
    """A camera state from its wire value (an unknown one is OFFLINE)."""
    try:
        return CameraState(value)
    except ValueError:
        return CameraState.OFFLINE
