"""GenTL cameras through harvesters: producers, the process's Harvester, cameras, node maps.

The announced GenTL buffers *are* the frame pool's slots: a fetched buffer is published
zero-copy with `FramePool.publish_external` and queued back to the producer when its
last holder releases it. Quirks of harvesters 1.4.3 and genicam's ``viky.cti`` that
shape this module are noted where they are handled.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from camera.base import ThreadedCamera
from camera.features import Feature, FeatureError, FeatureType, Visibility
from camera.frame_pool import FramePool
from camera.protocol import CameraInfo

try:
    from genicam.genapi import GenericException as _GenApiError  # type: ignore[import-untyped]
    from genicam.gentl import GenericException as _GenTLError  # type: ignore[import-untyped]
    from harvesters.core import Callback as _HarvestersCallback  # type: ignore[import-untyped]
    from harvesters.core import Harvester  # type: ignore[import-untyped]

    HAVE_HARVESTERS = True
except ImportError:  # pragma: no cover - harvesters is a runtime dependency
    HAVE_HARVESTERS = False
    _HarvestersCallback = object  # type: ignore[assignment,misc]
    _GenApiError = _GenTLError = RuntimeError  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: Environment variable listing the folders that hold GenTL producers (``*.cti``).
GENTL_PATH_VARIABLE = "GENICAM_GENTL64_PATH"

#: GenICam pixel formats published as they arrive, with their channels per pixel.
PIXEL_FORMAT_CHANNELS: dict[str, int] = {
    "Mono8": 1,
    "BayerRG8": 1,
    "BayerGR8": 1,
    "BayerGB8": 1,
    "BayerBG8": 1,
    "RGB8": 3,
    "BGR8": 3,
    "RGBa8": 4,
    "BGRa8": 4,
}

#: Reconnect backoff after a lost device: first wait, then doubling up to the cap.
#: How often a GenTL camera polls for a buffer (the wait in between releases the GIL).
POLL_S = 0.002
RECONNECT_FIRST_WAIT_S = 0.5
RECONNECT_MAX_WAIT_S = 5.0

_DEVICE_ERRORS: tuple[type[Exception], ...] = (_GenApiError, _GenTLError)


def _require_harvesters() -> None:
    if not HAVE_HARVESTERS:
        raise ImportError("harvesters/genicam are not installed: pip install harvesters genicam")


# --------------------------------------------------------------------------- producers
def _bundled_producers() -> list[Path]:
    """The simulated producer (``viky.cti``) that ships inside the genicam wheel."""
    spec = importlib.util.find_spec("genicam")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [p for loc in spec.submodule_search_locations for p in sorted(Path(loc).rglob("viky.cti"))]


def find_producers(env: Mapping[str, str] | None = None, *, include_simulated: bool = True) -> list[Path]:
    """Every GenTL producer on this machine, de-duplicated.

    Args:
        env: Environment to read `GENTL_PATH_VARIABLE` from (default: ``os.environ``).
        include_simulated: Also return genicam's bundled ``viky.cti`` (three simulated devices).

    Returns:
        Resolved ``*.cti`` paths: those in the variable's folders first, then the bundled one.
    """
    env = os.environ if env is None else env
    candidates: list[Path] = []
    for entry in env.get(GENTL_PATH_VARIABLE, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry.strip())
        if folder.is_file() and folder.suffix.lower() == ".cti":  # some installers list the file itself
            candidates.append(folder)
        elif folder.is_dir():
            try:
                candidates.extend(sorted(p for p in folder.iterdir() if p.suffix.lower() == ".cti"))
            except OSError as exc:  # unreadable folder: skip it, the others may still hold producers
                log.warning("gentl: cannot list %s: %s", folder, exc)
    if include_simulated:
        candidates.extend(_bundled_producers())
    found: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if resolved.is_file() and resolved not in found:
            found.append(resolved)
    return found


# --------------------------------------------------------------------------- system
class GenTLSystem:
    """The process's one harvesters `Harvester`: producers, discovery and acquirers.

    Use as a context manager. Cameras share it; it serialises access to the Harvester.
    Close the cameras before the system: closing it destroys their acquirers.

    Args:
        producers: ``*.cti`` files to load (default: `find_producers`).
    """

    def __init__(self, producers: Iterable[Path | str] | None = None) -> None:
        self.producers = [Path(p) for p in (find_producers() if producers is None else producers)]
        self._harvester: Harvester | None = None
        self._acquirers: list[Any] = []
        self._lock = threading.RLock()

    def open(self) -> None:
        """Load the producers and enumerate devices."""
        _require_harvesters()
        with self._lock:
            if self._harvester is not None:
                return
            self._harvester = Harvester()
            for path in self.producers:
                self._harvester.add_file(str(path))
            self._harvester.update()
            log.info("gentl: %d producer(s), %d device(s)", len(self.producers), len(self._harvester.device_info_list))

    def close(self) -> None:
        """Destroy every acquirer and unload the producers."""
        with self._lock:
            for ia in list(self._acquirers):
                self.release_acquirer(ia)
            if self._harvester is not None:
                self._harvester.reset()
                self._harvester = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._harvester is not None

    def _require(self) -> Harvester:
        if self._harvester is None:
            raise RuntimeError("GenTL system is not open: use `with GenTLSystem() as system:`")
        return self._harvester

    def update(self) -> None:
        """Enumerate devices again (after plugging cameras in).

        harvesters' ``update`` destroys every existing acquirer, so it is refused while
        cameras are open.
        """
        with self._lock:
            harvester = self._require()
            if self._acquirers:
                raise RuntimeError(
                    f"gentl: cannot re-enumerate while {len(self._acquirers)} camera(s) are open; close them first"
                )
            harvester.update()

    def devices(self) -> list[CameraInfo]:
        """The devices the producers report, as `CameraInfo` (id is ``model-serial``)."""
        with self._lock:
            return [_device_info(d) for d in self._require().device_info_list]

    def find(self, key: str) -> CameraInfo | None:
        """The device whose serial, device id or `CameraInfo` id is ``key``, or None."""
        with self._lock:
            device = self._find(key)
            return _device_info(device) if device is not None else None

    def _find(self, key: str) -> Any | None:
        matches = [
            d
            for d in self._require().device_info_list
            if key in (d.property_dict.get("serial_number"), d.property_dict.get("id_"), _device_info(d).id)
        ]
        if len(matches) > 1:
            raise LookupError(f"GenTL camera {key!r} is ambiguous ({len(matches)} devices match); use its device id")
        return matches[0] if matches else None

    def create_acquirer(self, key: str) -> Any:
        """Open the device whose serial, device id or `CameraInfo` id is ``key``.

        Returns:
            A harvesters ``ImageAcquirer``; give it back with `release_acquirer`.

        Raises:
            LookupError: No (or more than one) device matches.
            RuntimeError: The device exists but cannot be opened (e.g. in use).
        """
        with self._lock:
            harvester = self._require()
            device = self._find(key)
            if device is None and not self._acquirers:  # a replugged device may need a fresh list
                harvester.update()
                device = self._find(key)
            if device is None:
                raise LookupError(f"GenTL camera {key!r} not found; `inspector cameras list` shows the connected ones")
            # harvesters installs a SIGINT handler (that destroys the acquirer) when created on
            # the main thread; the engine owns Ctrl-C, so the previous handler is put back.
            on_main = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGINT) if on_main else None
            try:
                ia = harvester.create(device)
            except _DEVICE_ERRORS as exc:
                raise RuntimeError(
                    f"GenTL camera {key!r} cannot be opened (in use by another camera or program?): {_short(exc)}"
                ) from None
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
            self._acquirers.append(ia)
            return ia

    def release_acquirer(self, ia: Any) -> None:
        """Destroy an acquirer from `create_acquirer` (stops it, closes the device)."""
        with self._lock:
            if ia in self._acquirers:
                self._acquirers.remove(ia)
            try:
                ia.destroy()
            except _DEVICE_ERRORS as exc:  # a lost device may fail to close; it is gone anyway
                log.warning("gentl: destroying an acquirer failed: %s", _short(exc))
            harvester = self._harvester
            # harvesters keeps destroyed acquirers in its list; drop ours so reconnects don't pile up
            if harvester is not None and ia in harvester.image_acquirers:
                harvester.image_acquirers.remove(ia)


def _device_info(d: Any) -> CameraInfo:
    props = d.property_dict
    model = str(props.get("model") or "")
    serial = str(props.get("serial_number") or "")
    device_id = str(props.get("id_") or "")
    ident = re.sub(r"\s+", "_", f"{model}-{serial}") if model and serial else device_id
    try:
        producer = str(d.parent.parent.parent.path_name)  # Interface -> System -> Producer
    except (AttributeError, _GenApiError, _GenTLError):
        producer = ""
    return CameraInfo(
        id=ident, kind="gentl", vendor=str(props.get("vendor") or ""), model=model, serial=serial, producer=producer
    )


def _short(exc: BaseException) -> str:
    """GenApi messages carry the C++ file and line; keep the first sentence."""
    return str(exc).split(" : ")[0].strip()


# --------------------------------------------------------------------------- feature tree
_TYPES: dict[int, FeatureType] = {2: "int", 3: "bool", 4: "command", 5: "float", 6: "str", 9: "enum"}  # EInterfaceType
_CATEGORY = 8  # EInterfaceType.intfICategory
_VISIBILITIES: tuple[Visibility, ...] = ("Beginner", "Expert", "Guru", "Invisible")  # EVisibility 0..3
_NI, _NA, _WO, _RO, _RW = range(5)  # EAccessMode


class GenICamFeatureTree:
    """A GenICam node map as a `FeatureTree`.

    The feature list (a walk of the category tree from ``Root``) is cached; values,
    ranges and access modes are read live. `rebind` points the tree at a new node map
    of the same device (after a reconnect).

    Args:
        node_map: The remote device's node map, or None while the camera is closed.
        owner: Name used in error messages (the camera id).
    """

    def __init__(self, node_map: Any | None = None, *, owner: str = "camera") -> None:
        self._node_map = node_map
        self._owner = owner
        self._features: list[Feature] | None = None
        self._category_of: dict[str, str] = {}

    def rebind(self, node_map: Any | None) -> None:
        """Use another node map (same device re-opened, or None when closed)."""
        self._node_map = node_map

    def refresh(self) -> None:
        """Forget the cached feature list (ranges and access modes change with settings)."""
        self._features = None

    def features(self) -> list[Feature]:
        if self._features is None:
            root = self._lookup("Root")
            features: list[Feature] = []
            self._walk(root, "Root", features, set())
            self._features = features
            self._category_of = {f.name: f.category for f in features}
        return list(self._features)

    def _walk(self, category: Any, name: str, out: list[Feature], seen: set[str]) -> None:
        for child in category.features:
            node = child.node
            if node.name in seen:  # a feature may be listed in several categories: first wins
                continue
            seen.add(node.name)
            kind = int(node.principal_interface_type)
            if kind == _CATEGORY:
                self._walk(child, node.name, out, seen)
            elif kind in _TYPES:
                out.append(_describe(child, name))

    def get(self, name: str) -> Any:
        node = self._lookup(name)
        kind = _TYPES.get(int(node.node.principal_interface_type))
        if kind is None:
            raise FeatureError(f"{name}: not a value feature")
        if kind == "command":
            return None
        if int(node.node.get_access_mode()) not in (_RO, _RW):
            raise FeatureError(f"{name}: not readable now")
        try:
            return node.value
        except _DEVICE_ERRORS as exc:
            raise FeatureError(f"{name}: read failed: {_short(exc)}") from None

    def set(self, name: str, value: Any) -> Any:
        """Validate (range, increment, enum entries) and write; return the device's value."""
        node = self._lookup(name)
        v = self.describe(name).validate(value)  # live: ranges and access follow other settings
        try:
            if v is None:  # command
                node.execute()
                return None
            node.value = v
            return node.value if int(node.node.get_access_mode()) in (_RO, _RW) else v
        except _DEVICE_ERRORS as exc:
            raise FeatureError(f"{name}: the device refused {v!r}: {_short(exc)}") from None

    def describe(self, name: str) -> Feature:
        """One feature as the device describes it now (live range, entries, access)."""
        node = self._lookup(name)
        if int(node.node.principal_interface_type) not in _TYPES:
            raise FeatureError(f"{name}: not a value feature")
        if self._features is None:
            self.features()
        return _describe(node, self._category_of.get(name, "Root"))

    def _lookup(self, name: str) -> Any:
        if self._node_map is None:
            raise FeatureError(f"{name}: {self._owner} is not open")
        try:
            if not self._node_map.has_node(name):
                raise FeatureError(f"{name}: no such feature on {self._owner}")
            return self._node_map.get_node(name)
        except _DEVICE_ERRORS as exc:
            raise FeatureError(f"{name}: {_short(exc)}") from None

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features())


def _describe(node: Any, category: str) -> Feature:
    """A `Feature` describing a typed GenApi node as it is now."""
    n = node.node
    kind = _TYPES[int(n.principal_interface_type)]
    access = int(n.get_access_mode())
    vis = int(n.visibility)
    f = Feature(
        name=n.name,
        type=kind,
        category=category,
        display_name=n.display_name or n.name,
        description=n.tooltip or n.description or "",
        visibility=_VISIBILITIES[vis] if 0 <= vis < len(_VISIBILITIES) else "Beginner",
        writable=access in (_WO, _RW),
    )
    if access in (_NI, _NA):
        return f  # ranges/entries of an unavailable node may not be readable
    try:
        if kind in ("int", "float"):
            f.minimum, f.maximum, f.unit = node.min, node.max, node.unit or ""
            fixed_step = int(node.inc_mode) == 1 if kind == "int" else node.has_inc()  # EIncMode.fixedIncrement
            if fixed_step:
                f.increment = node.inc
        elif kind == "enum":
            f.enum_entries = tuple(node.symbolics)  # only the entries available now
    except _DEVICE_ERRORS as exc:
        log.debug("feature %s: limits unavailable: %s", n.name, _short(exc))
    return f


# --------------------------------------------------------------------------- camera
class _IncompleteBufferCounter(_HarvestersCallback):  # type: ignore[misc,valid-type]
    """harvesters discards incomplete buffers itself (``try_fetch`` returns None); count them."""

    def __init__(self, pool: FramePool) -> None:
        self._pool = pool

    def emit(self, context: object | None = None) -> None:
        self._pool.count_invalid()


class GenTLCamera(ThreadedCamera):
    """A GenICam camera through a GenTL producer; the announced buffers are the pool slots.

    Args:
        camera_id: Station-unique id.
        system: The process's open `GenTLSystem`.
        serial: Device serial number (or give ``device_id``).
        device_id: GenTL device id (e.g. ``VikyTL_DEV_red``).
        pool_slots: Buffers announced to the producer = frames that can be held at once.
        fetch_timeout_s: How long one fetch waits before the loop checks for staleness.
        fps: Written to ``AcquisitionFrameRate`` when the device lets us.
        settings: The recipe: feature values applied (in order) on open and after a reconnect.
    """

    def __init__(
        self,
        camera_id: str,
        system: GenTLSystem,
        *,
        serial: str | None = None,
        device_id: str | None = None,
        pool_slots: int = 6,
        fetch_timeout_s: float = 0.5,
        fps: float | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> None:
        key = serial or device_id
        if not key:
            raise ValueError(f"camera {camera_id}: a GenTL camera needs serial= or device_id=")
        found = system.find(key) if system.is_open else None
        info = CameraInfo(
            id=camera_id,
            kind="gentl",
            vendor=found.vendor if found else "",
            model=found.model if found else "",
            serial=found.serial if found else (serial or ""),
            producer=found.producer if found else "",
        )
        super().__init__(info, FramePool(camera_id, pool_slots), fps or 0.0)
        self.system = system
        self._key = device_id or key  # the device id is unique across producers, serials may not be
        self._requested_fps = fps
        self.settings: dict[str, object] = dict(settings or {})
        self._fetch_timeout_s = fetch_timeout_s
        self._acquirer: Any | None = None
        self._tree = GenICamFeatureTree(owner=f"camera {camera_id}")
        self._buffers_lock = threading.Lock()
        self._generation = 0  # bumped at every start; older buffers were revoked by the producer
        self._armed = False
        self._warned_formats: set[str] = set()

    # ------------------------------------------------------------------ protocol
    @property
    def features(self) -> GenICamFeatureTree:
        return self._tree

    @property
    def nominal_fps(self) -> float:
        if self._acquirer is not None:
            try:
                return float(self._tree.get("AcquisitionFrameRate"))
            except FeatureError:
                pass
        return self._fps

    # ------------------------------------------------------------------ device
    def _open_device(self) -> None:
        ia = self.system.create_acquirer(self._key)
        try:
            self._configure(ia)
        except BaseException:
            self._tree.rebind(None)
            self.system.release_acquirer(ia)
            raise
        self._acquirer = ia

    def _configure(self, ia: Any) -> None:
        self._tree.rebind(ia.remote_device.node_map)
        if self.pool.capacity < ia.min_num_buffers:
            log.warning(
                "camera %s: producer needs %d buffers; pool has %d",
                self.info.id,
                ia.min_num_buffers,
                self.pool.capacity,
            )
        ia.num_buffers = max(self.pool.capacity, ia.min_num_buffers)
        # harvesters waits for buffers in slices of update_event_data(timeout_ms), a GenTL call
        # that keeps the GIL while it waits: longer slices (we tried 20 ms) starve every other
        # thread of the station (measured: viky-demo fell to 2.9 fps). 1 ms slices keep it fair.
        ia.timeout_period_on_client_fetch_call = POLL_S
        ia.timeout_period_on_update_event_data_call = 0
        ia.add_callback(ia.Events.INCOMPLETE_BUFFER, _IncompleteBufferCounter(self.pool))
        for name, value in self.settings.items():
            try:
                self._tree.set(name, value)
            except FeatureError as exc:
                raise FeatureError(f"camera {self.info.id}: recipe setting {exc}") from None
        if self._requested_fps:
            try:
                self._write_if_writable("AcquisitionFrameRateEnable", True)
                if not self._write_if_writable("AcquisitionFrameRate", float(self._requested_fps)):
                    log.info("camera %s: AcquisitionFrameRate is not writable; the device sets the rate", self.info.id)
            except FeatureError as exc:
                raise FeatureError(f"camera {self.info.id}: fps {exc}") from None
        self._fps = self.nominal_fps

    def _write_if_writable(self, name: str, value: object) -> bool:
        try:
            if not self._tree.describe(name).writable:
                return False
        except FeatureError:  # the device has no such node
            return False
        self._tree.set(name, value)
        return True

    def _close_device(self) -> None:
        ia, self._acquirer = self._acquirer, None
        self._tree.rebind(None)
        if ia is not None:
            self.system.release_acquirer(ia)

    def _start_device(self) -> None:
        if self._acquirer is None:
            raise RuntimeError(f"camera {self.info.id}: not connected")
        with self._buffers_lock:
            self._generation += 1
            self._armed = True
        self._acquirer.start()

    def _stop_device(self) -> None:
        self.pool.flush()  # the pool's own references go back while the buffers are still announced
        with self._buffers_lock:
            self._armed = False  # later releases must not queue buffers the producer revoked
        if self._acquirer is not None:
            self._acquirer.stop()

    # ------------------------------------------------------------------ acquisition
    def _acquire_once(self) -> bool:
        ia = self._acquirer
        if ia is None:
            raise ConnectionError(f"camera {self.info.id}: not connected")
        # poll without waiting inside the GenTL call (it keeps the GIL) and sleep in between
        deadline = time.monotonic() + self._fetch_timeout_s
        while True:
            buffer = ia.try_fetch(timeout=POLL_S)  # device errors raise: the device is lost
            if buffer is not None or time.monotonic() >= deadline:
                break
            if self._stop.wait(POLL_S):
                break
        if buffer is None:  # timeout (or an incomplete buffer harvesters already requeued)
            return False
        try:
            view, pixel_format = self._frame_view(buffer)
        except _DEVICE_ERRORS as exc:  # buffer info unreadable: this frame is lost, not the device
            log.debug("camera %s: unreadable buffer: %s", self.info.id, _short(exc))
            view, pixel_format = None, ""
        if view is None:
            self.pool.count_invalid()
            self._queue_quietly(buffer)
            return False
        self.pool.publish_external(
            view,
            self._next_sequence(),
            self._requeue_later(buffer),
            pixel_format=pixel_format,
            acquired_ns=time.perf_counter_ns(),
        )
        return True

    def _frame_view(self, buffer: Any) -> tuple[np.ndarray | None, str]:
        """The buffer's pixels as an HxW / HxWxC view (no copy), or None if unusable."""
        payload = buffer.payload
        component = payload.components[0] if payload is not None and payload.components else None
        if component is None or component.data is None or not buffer.module.is_complete():
            log.debug("camera %s: buffer without a complete image component", self.info.id)
            return None, ""
        fmt = component.data_format
        channels = PIXEL_FORMAT_CHANNELS.get(fmt)
        if channels is None:
            if fmt not in self._warned_formats:
                self._warned_formats.add(fmt)
                log.warning(
                    "camera %s: pixel format %s is not supported; set PixelFormat to one of %s",
                    self.info.id,
                    fmt,
                    ", ".join(PIXEL_FORMAT_CHANNELS),
                )
            return None, fmt
        data: np.ndarray = component.data
        width, height = int(component.width), int(component.height)
        line = width * channels
        if width <= 0 or height <= 0 or data.dtype != np.uint8:
            return None, fmt
        if data.size == height * line:
            rows = data.reshape(height, line)
        elif component.x_padding and data.size == height * (line + component.x_padding):
            rows = data.reshape(height, line + component.x_padding)[:, :line]  # strided view skips the padding
        else:
            log.debug("camera %s: %d bytes for %dx%d %s", self.info.id, data.size, width, height, fmt)
            return None, fmt
        # splitting the contiguous last axis is always a view: the pixels are not copied
        return (rows if channels == 1 else rows.reshape(height, width, channels)), fmt

    def _requeue_later(self, buffer: Any) -> Callable[[], None]:
        generation = self._generation

        def requeue() -> None:
            with self._buffers_lock:
                if self._armed and generation == self._generation:
                    self._queue_quietly(buffer)

        return requeue

    def _queue_quietly(self, buffer: Any) -> None:
        try:
            buffer.queue()
        except _DEVICE_ERRORS as exc:  # buffer revoked (device lost or stopping): nothing to hand back
            log.debug("camera %s: queue buffer failed: %s", self.info.id, _short(exc))

    # ------------------------------------------------------------------ recovery
    def _on_acquisition_error(self, exc: Exception) -> None:
        """Re-open the device with capped exponential backoff; re-apply the recipe."""
        wait = RECONNECT_FIRST_WAIT_S
        self._drop_acquirer()
        while not self._stop.wait(wait):
            try:
                self._open_device()
                self._start_device()
            except Exception as err:  # noqa: BLE001 - any failure means: not back yet, try later
                self._drop_acquirer()
                log.warning(
                    "camera %s: reconnect failed (%s); next try in %.1f s",
                    self.info.id,
                    err,
                    min(wait * 2, RECONNECT_MAX_WAIT_S),
                )
                wait = min(wait * 2, RECONNECT_MAX_WAIT_S)
                continue
            log.info("camera %s: reconnected", self.info.id)
            return

    def _drop_acquirer(self) -> None:
        try:
            self._stop_device()
        except Exception as exc:  # noqa: BLE001 - a lost device may fail to stop in any way
            log.debug("camera %s: stop after failure: %s", self.info.id, exc)
        self._close_device()
