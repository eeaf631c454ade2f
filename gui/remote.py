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

import logging
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
from inspector.access.control import ControlEvents
from inspector.access.users import Permissions, Role, User
from inspector.pipeline.results import InspectionResult
from inspector.service.client import (  # the link itself is the engine's (the CLI reaches the service too)
    REQUEST_TIMEOUT_S,
    SWITCH_TIMEOUT_S,
    LinkLost,
    RemoteLink,
    attach,
)

__all__ = ["REQUEST_TIMEOUT_S", "LinkLost", "RemoteControl", "RemoteLink", "RemoteStation", "attach"]

log = logging.getLogger(__name__)

#: A taught recipe's save loads and compiles its models before the switch answers.
SAVE_TIMEOUT_S = SWITCH_TIMEOUT_S
LOST_HEALTH = "the link to the station service is lost"


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


class RemoteRecipe:
    """One product recipe of the service, as the recipe selector and dialog read a `Recipe` (``recipe.number``,
    ``recipe.name``, ``label``)."""

    __slots__ = ("label", "recipe")

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.recipe = SimpleNamespace(number=int(d["number"]), name=str(d["name"]), version=int(d["version"]),
                                      product_id=str(d.get("product_id", "")))
        self.label = str(d["label"])


class RemoteRecipes:
    """The service's product recipes, read as a `RecipeSwitch` is (``recipes``, ``current``, ``folder``).

    The list and the recipe in force come with the hello and every status snapshot (a switch by the PLC,
    the command line or another window shows within one); switching goes through `RemoteControl.select_recipe`.
    """

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.folder = Path(str(d["folder"]))
        self._state: tuple[list[RemoteRecipe], RemoteRecipe | None] = ([], None)
        self.update(d)

    @classmethod
    def from_wire(cls, d: Any) -> RemoteRecipes | None:
        """The stand-in of a hello's ``recipes`` (None: the station has none, or an older service sent none)."""
        return cls(d) if isinstance(d, Mapping) else None

    def update(self, d: Mapping[str, Any]) -> None:
        """Take a status snapshot's ``recipes`` (the link's reader thread; one assignment the GUI reads whole)."""
        recipes = [RemoteRecipe(r) for r in d.get("recipes", [])]
        number = d.get("current")
        self._state = (recipes, next((r for r in recipes if r.recipe.number == number), None))

    def now_in_force(self, label: str) -> None:
        """The service answered a switch to ``label`` (the next snapshot says so too)."""
        recipes = self._state[0]
        new = next((r for r in recipes if r.label == label), None)
        if new is not None:
            self._state = (recipes, new)

    @property
    def recipes(self) -> list[RemoteRecipe]:
        return self._state[0]

    @property
    def current(self) -> RemoteRecipe | None:
        return self._state[1]

    @property
    def number(self) -> int:
        cur = self.current
        return cur.recipe.number if cur is not None else 0

    def reload(self) -> None:
        """Nothing: the service reads its folder (at each selection) and sends the list with its status."""


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
        #: the product recipes (None: the station has none; the selector stays hidden)
        self.recipes = RemoteRecipes.from_wire(hello.get("recipes"))
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
        """The product changeover on the service (operator; audited there); waits while it loads the models.

        The recipe in force is the new one at once here (the selector shows it), not at the next status snapshot.
        """
        options: dict[str, Any] = {"override_gate": True, "reason": reason} if override_gate else {}
        label = str(self.link.request("select_recipe", timeout=SWITCH_TIMEOUT_S, key=key, **options))
        if self.station.recipes is not None:
            self.station.recipes.now_in_force(label)
        return label

    def rollback_recipe(self, name: str, *, to: int | None = None, reason: str = "") -> str:
        """Make a kept earlier version of recipe ``name`` active again, on the service (engineer; audited there)."""
        return str(self.link.request("rollback_recipe", name=name, to=to, reason=reason))

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
