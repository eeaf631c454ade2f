"""`AravisCamera`: a GigE Vision camera through Aravis (PyGObject), free-running or software-triggered.

A second acquisition path next to `camera.gentl`, for GigE Vision cameras without a GenTL
producer. Aravis owns its stream buffers; each one is copied (or converted: RGB8 and Bayer
to BGR8) into a pool slot and handed straight back. A triggered frame is tied to its trigger
by the device's frame id (`TriggerLedger.match_frame_id`), never by arrival order; a frame
that fits no trigger is counted and not published. Aravis' system timestamp is host
CLOCK_REALTIME (not perf_counter): it only dates the frame (``acquired_ns``).

PyGObject and ``gir1.2-aravis-0.8`` are optional: they are imported when a camera opens,
so this module imports everywhere. Quirks of Aravis 0.8.26 and ``arv-fake-gv-camera-0.8``
are noted where they are handled.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from camera.base import ThreadedCamera
from camera.features import Feature, FeatureError, FeatureType, Visibility
from camera.frame_pool import FramePool
from camera.protocol import CameraInfo
from camera.trigger import TriggerCounters, TriggerLedger, TriggerSettings, apply_sfnc_trigger

log = logging.getLogger(__name__)

#: How long one buffer pop waits, in microseconds (stop() is answered within this).
POP_TIMEOUT_US = 100_000
#: Minimum spacing of software triggers: a device takes one trigger per frame and merges
#: (or ignores) triggers that come sooner, which would shift every later frame id by one.
#: The fake camera polls its trigger register at 25 Hz, so 40 ms plus a margin.
TRIGGER_HOLDOFF_S = 0.05
#: SFNC names looked up under their older GigE Vision names when the device lacks them.
ALIASES = {"ExposureTime": "ExposureTimeAbs", "AcquisitionFrameRate": "AcquisitionFrameRateAbs"}
#: PFNC pixel format -> (published format, OpenCV conversion to BGR8 or None, input channels).
#: GenICam names the Bayer pattern by its first row (OpenCV's *RGGB* aliases say the same).
PIXEL_FORMATS: dict[int, tuple[str, int | None, int]] = {
    0x01080001: ("Mono8", None, 1),
    0x02180015: ("BGR8", None, 3),
    0x02180014: ("BGR8", cv2.COLOR_RGB2BGR, 3),  # RGB8
    0x01080009: ("BGR8", cv2.COLOR_BayerRGGB2BGR, 1),  # BayerRG8
    0x01080008: ("BGR8", cv2.COLOR_BayerGRBG2BGR, 1),  # BayerGR8
    0x0108000A: ("BGR8", cv2.COLOR_BayerGBRG2BGR, 1),  # BayerGB8
    0x0108000B: ("BGR8", cv2.COLOR_BayerBGGR2BGR, 1),  # BayerBG8
}
#: Features some devices (the fake camera) leave outside the ``Root`` category tree.
_UNCATEGORISED = ("Gain", "GainRaw", "AcquisitionFrameRate", "AcquisitionFrameRateAbs", "ExposureTime")
_GEV1_BLOCK_ID_MAX = 0xFFFF  # GigE Vision 1.x block ids are 16 bits and skip 0 when they wrap


def aravis() -> Any:
    """The ``Aravis`` GObject-introspection module; a one-line RuntimeError when it is missing."""
    try:
        import gi  # type: ignore[import-untyped]

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis  # type: ignore[import-untyped]
    except (ImportError, ValueError) as exc:
        raise RuntimeError(
            f"Aravis (PyGObject + gir1.2-aravis-0.8) is not installed: {exc}; "
            "install them (apt-get install gir1.2-aravis-0.8; pip install 'PyGObject<3.50')"
        ) from None
    return Aravis


@dataclasses.dataclass(frozen=True)
class AravisDeviceInfo:
    """One camera Aravis discovered (`discover`)."""

    device_id: str
    serial: str
    vendor: str
    model: str
    address: str
    protocol: str


def discover() -> list[AravisDeviceInfo]:
    """The cameras Aravis finds now (GigE Vision broadcast, USB3 Vision)."""
    ar = aravis()
    ar.update_device_list()
    return [
        AravisDeviceInfo(ar.get_device_id(i), ar.get_device_serial_nbr(i) or "", ar.get_device_vendor(i) or "",
                         ar.get_device_model(i) or "", ar.get_device_address(i) or "", ar.get_device_protocol(i) or "")
        for i in range(ar.get_n_devices())
    ]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _FrameIdLedger(TriggerLedger):
    """A `TriggerLedger` anchored on the trigger fired last before the first frame arrived.

    A device may ignore a trigger (the fake camera drops one sent right after
    AcquisitionStart); anchoring frame ids on trigger 0 would then give every later frame
    the previous trigger's id. Needs the trigger holdoff to exceed the trigger-to-frame latency.
    """

    def anchor(self, frame_id: int, arrival_ns: int) -> None:
        with self._lock:
            before = [f.trigger_id for f in self._fired if f.fired_ns <= arrival_ns]
            if self._frame_id_offset is None and before:
                number = max(n for n, t in self._numbers.items() if t == before[-1])
                self._frame_id_offset = frame_id - number


class AravisFeatureTree:
    """An open Aravis device's GenICam features as a `FeatureTree` (the whole ``Root`` category)."""

    _KINDS: tuple[tuple[str, FeatureType], ...] = (
        ("GcCommand", "command"), ("GcEnumeration", "enum"), ("GcBoolean", "bool"),
        ("GcFloat", "float"), ("GcInteger", "int"), ("GcString", "str"),
    )

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._device: Any | None = None

    def rebind(self, device: Any | None) -> None:
        self._device = device

    def _resolve(self, name: str) -> tuple[Any, str, FeatureType]:
        dev = self._device
        if dev is None:
            raise FeatureError(f"{name}: {self._owner} is not open")
        for real in (name, ALIASES.get(name)):
            node = dev.get_feature(real) if real else None
            if node is not None and node.is_implemented():
                ar = aravis()
                for cls, kind in self._KINDS:
                    if isinstance(node, getattr(ar, cls)):
                        return node, str(real), kind
        raise FeatureError(f"{name}: no such feature")

    def features(self) -> list[Feature]:
        if self._device is None:
            return []
        out: list[Feature] = []
        seen: set[str] = set()
        gc = self._device.get_genicam()
        ar = aravis()

        def walk(category: str) -> None:
            node = gc.get_node(category)
            for name in node.get_features() if isinstance(node, ar.GcCategory) else ():
                if name in seen:
                    continue
                seen.add(name)
                if isinstance(gc.get_node(name), ar.GcCategory):
                    walk(name)
                    continue
                try:
                    out.append(self.describe(name, category))
                except Exception:  # noqa: BLE001, S112 - a node the device cannot describe now is left out
                    continue

        walk("Root")
        for name in _UNCATEGORISED:
            if name not in seen and self._device.get_feature(name) is not None:
                out.append(self.describe(name))
        return out

    def describe(self, name: str, category: str = "Root") -> Feature:
        node, real, kind = self._resolve(name)
        dev: Any = self._device
        ar = aravis()
        vis: dict[Any, Visibility] = {ar.GcVisibility.EXPERT: "Expert", ar.GcVisibility.GURU: "Guru",
                                      ar.GcVisibility.INVISIBLE: "Invisible"}
        f = Feature(real, kind, category, node.get_display_name() or real, node.get_description() or "",
                    vis.get(node.get_visibility(), "Beginner"),
                    writable=node.get_actual_access_mode() in (ar.GcAccessMode.RW, ar.GcAccessMode.WO)
                    and not node.is_locked())
        if kind == "int":
            f.minimum, f.maximum = (float(v) for v in dev.get_integer_feature_bounds(real))
            f.increment = float(dev.get_integer_feature_increment(real))
        elif kind == "float":
            f.minimum, f.maximum = dev.get_float_feature_bounds(real)
            f.unit = node.get_unit() or ""
        elif kind == "enum":
            f.enum_entries = tuple(dev.dup_available_enumeration_feature_values_as_strings(real))
        return f

    def get(self, name: str) -> Any:
        _node, real, kind = self._resolve(name)
        dev: Any = self._device
        getters = {"enum": dev.get_string_feature_value, "str": dev.get_string_feature_value,
                   "int": dev.get_integer_feature_value, "float": dev.get_float_feature_value,
                   "bool": dev.get_boolean_feature_value}
        if kind == "command":
            return None
        try:
            return getters[kind](real)
        except Exception as exc:  # noqa: BLE001 - GLib.Error: unreadable now (device lost, write-only)
            raise FeatureError(f"{name}: {getattr(exc, 'message', exc)}") from None

    def set(self, name: str, value: Any) -> Any:
        """Validate and write; return the value the device reports afterwards."""
        feature = self.describe(name)
        v = feature.validate(value)
        dev: Any = self._device
        setters = {"enum": dev.set_string_feature_value, "str": dev.set_string_feature_value,
                   "int": dev.set_integer_feature_value, "float": dev.set_float_feature_value,
                   "bool": dev.set_boolean_feature_value}
        try:
            if feature.type == "command":
                dev.execute_command(feature.name)
                return None
            setters[feature.type](feature.name, v)
        except Exception as exc:  # noqa: BLE001 - GLib.Error: the device refused the value
            raise FeatureError(f"{name}: {getattr(exc, 'message', exc)}") from None
        return self.get(feature.name)


class AravisCamera(ThreadedCamera):
    """A GigE Vision (or USB3 Vision) camera through Aravis; free-running or software-triggered.

    Args:
        camera_id: Station-unique id.
        device_id: Aravis device id (``Aravis-Fake-GV01``), serial (``GV01``) or IP address;
            None opens the first camera found.
        pool_slots: Frame pool capacity (Aravis gets as many stream buffers, at least 4).
        fps: Written to ``AcquisitionFrameRate`` when the device lets us (free-run).
        settings: The recipe: feature values applied (in order) on open and after a reconnect.
        trigger_holdoff_s: Software triggers closer than this (or than the exposure) to the
            previous one are overruns: counted, not sent (see `TRIGGER_HOLDOFF_S`).
    """

    def __init__(
        self,
        camera_id: str,
        *,
        device_id: str | None = None,
        pool_slots: int = 6,
        fps: float = 5.0,
        settings: Mapping[str, object] | None = None,
        trigger_holdoff_s: float = TRIGGER_HOLDOFF_S,
    ) -> None:
        super().__init__(CameraInfo(id=camera_id, kind="aravis", serial=device_id or ""),
                         FramePool(camera_id, pool_slots), fps)
        self._key = device_id
        self.settings: dict[str, object] = dict(settings or {})
        self._tree = AravisFeatureTree(owner=f"camera {camera_id}")
        self._cam: Any | None = None
        self._stream: Any | None = None
        self._lost = threading.Event()  # the device's heartbeat failed ("control-lost")
        self._trigger: TriggerSettings | None = None
        self._ledger = _FrameIdLedger()
        self._fire_lock = threading.Lock()
        self._fired_any = False  # frames before the first trigger of a ledger answer none
        self._last_fire_ns = 0
        self._holdoff_ns = int(trigger_holdoff_s * 1e9)
        self._min_holdoff_s = trigger_holdoff_s
        self._overruns = 0
        self._incomplete = 0  # matched a trigger but arrived incomplete: the trigger is missed
        self._last_raw_id: int | None = None
        self._id_wraps = 0
        self._warned_formats: set[int] = set()

    # ------------------------------------------------------------------ protocol
    @property
    def features(self) -> AravisFeatureTree:
        return self._tree

    @property
    def triggered(self) -> bool:
        return self.pool.triggered

    def configure_trigger(self, settings: TriggerSettings) -> None:
        """Switch the device to FrameStart triggers (opens it if needed); one-line `TriggerUnsupported`."""
        if self._cam is None:
            self.open()
        apply_sfnc_trigger(self.info.id, self._tree, settings)
        self._trigger = settings
        self.pool.triggered = True
        self._clock_paced = False  # an idle line sends no frames: not a health problem
        self._new_ledger()

    def fire(self, trigger_id: int) -> None:
        """Execute ``TriggerSoftware``; the frame it produces carries ``trigger_id``.

        A trigger within the holdoff of the previous one is an overrun: counted, not sent.
        A trigger the device never answers expires in the ledger as missed.
        """
        now = time.perf_counter_ns()
        with self._fire_lock:
            if self._fired_any and now - self._last_fire_ns < self._holdoff_ns:
                self._overruns += 1
                return
            self._last_fire_ns = now
            self._ledger.fired(trigger_id, now)
            self._fired_any = True
            try:
                self._tree.set("TriggerSoftware", None)
            except FeatureError as exc:
                log.warning("camera %s: software trigger %d failed: %s", self.info.id, trigger_id, exc)

    def trigger_counters(self) -> TriggerCounters:
        c = dataclasses.replace(self._ledger.counters)
        c.fired += self._overruns
        c.overruns = self._overruns
        c.answered -= self._incomplete
        c.missed += self._incomplete
        return c

    def _new_ledger(self) -> None:
        """A fresh frame-id anchor (new stream or device); unanswered triggers count as missed."""
        with self._fire_lock:
            old = self._ledger.counters
            old.missed += max(0, old.fired - old.answered - old.missed)
            self._ledger = _FrameIdLedger(counters=old)
            self._fired_any = False
            self._last_raw_id, self._id_wraps = None, 0

    # ------------------------------------------------------------------ device
    def _open_device(self) -> None:
        ar = aravis()
        key = self._key
        try:
            address: str = key if key and _is_loopback(key) else ""
            if key and not address:
                found = [d for d in discover() if key in (d.device_id, d.serial, d.address)]
                address = str(found[0].address) if found and _is_loopback(found[0].address) else ""
            if address:  # discovery answers loopback cameras through another interface: go direct
                lo = _inet(address)
                device = ar.GvDevice.new(lo, lo)
                device.set_stream_options(ar.GvStreamOption.PACKET_SOCKET_DISABLED)  # no packet socket on lo
                cam = ar.Camera.new_with_device(device)
            else:
                cam = ar.Camera.new(key)
        except Exception as exc:  # noqa: BLE001 - GLib.Error (gi is imported lazily)
            raise ConnectionError(f"camera {self.info.id}: Aravis device {key or '(first found)'!r} "
                                  f"cannot be opened: {getattr(exc, 'message', exc)}") from None
        self._cam = cam
        self._lost.clear()
        cam.get_device().connect("control-lost", lambda *_: self._lost.set())
        self._tree.rebind(cam.get_device())
        self.info = dataclasses.replace(self.info, vendor=cam.get_vendor_name() or "",
                                        model=cam.get_model_name() or "", serial=cam.get_device_serial_number() or "")
        try:
            self._configure()
        except BaseException:
            self._close_device()
            raise

    def _configure(self) -> None:
        t = self._tree
        if self._trigger is None:  # the device keeps its last trigger mode: free-run is explicit
            for feature, state in (("TriggerSelector", "FrameStart"), ("TriggerMode", "Off")):
                try:
                    t.set(feature, state)
                except FeatureError:
                    pass
        for name, value in self.settings.items():
            try:
                t.set(name, value)
            except FeatureError as exc:
                raise FeatureError(f"camera {self.info.id}: recipe setting {exc}") from None
        if self._fps:
            try:
                t.set("AcquisitionFrameRate", float(self._fps))
            except FeatureError as exc:
                log.info("camera %s: frame rate not set (%s); the device sets the rate", self.info.id, exc)
        if self._trigger is not None:
            apply_sfnc_trigger(self.info.id, t, self._trigger)
        try:
            self.pool.triggered = str(t.get("TriggerMode")) == "On"
        except FeatureError:
            self.pool.triggered = False

    def _close_device(self) -> None:
        self._tree.rebind(None)
        self._stream = self._cam = None

    def _start_device(self) -> None:
        cam = self._cam
        if cam is None:
            raise ConnectionError(f"camera {self.info.id}: not connected")
        ar = aravis()
        stream = cam.create_stream(None, None)
        payload = cam.get_payload()
        if isinstance(stream, ar.GvStream):  # the kernel's default UDP buffer loses packets of every frame
            stream.set_property("socket-buffer", ar.GvStreamSocketBuffer.FIXED)
            stream.set_property("socket-buffer-size", min(2**26, 4 * payload))  # capped by net.core.rmem_max
        for _ in range(max(4, self.pool.capacity)):
            stream.push_buffer(ar.Buffer.new_allocate(payload))
        try:
            exposure_s = float(self._tree.get("ExposureTime")) / 1e6
        except (FeatureError, TypeError, ValueError):
            exposure_s = 0.0
        self._holdoff_ns = int(max(self._min_holdoff_s, exposure_s) * 1e9)
        self._new_ledger()
        cam.set_acquisition_mode(ar.AcquisitionMode.CONTINUOUS)
        cam.start_acquisition()
        self._stream = stream

    def _stop_device(self) -> None:
        cam, self._stream = self._cam, None  # dropping the stream joins Aravis' receive thread
        if cam is not None:
            cam.stop_acquisition()

    # ------------------------------------------------------------------ acquisition
    def _acquire_once(self) -> bool:
        if self._lost.is_set():
            raise ConnectionError(f"camera {self.info.id}: device lost (no heartbeat answer)")
        stream = self._stream
        if stream is None:
            raise ConnectionError(f"camera {self.info.id}: not streaming")
        buffer = stream.timeout_pop_buffer(POP_TIMEOUT_US)  # PyGObject releases the GIL while it waits
        if buffer is None:
            return False
        try:
            return self._deliver(buffer)
        finally:
            stream.push_buffer(buffer)  # the pixels were copied out

    def _deliver(self, buffer: Any) -> bool:
        ar = aravis()
        complete = buffer.get_status() == ar.BufferStatus.SUCCESS
        trigger_id: int | None = None
        if self.pool.triggered:
            if not self._fired_any:  # a free-run leftover, or a trigger we did not send
                self._ledger.counters.unmatched += 1
                return False
            # every buffer with a frame id is matched, complete or not, so a lost frame
            # never shifts the anchor between frame ids and trigger numbers
            frame_id = self._unwrap(int(buffer.get_frame_id()))
            self._ledger.anchor(frame_id, _arrival_ns(buffer))
            trigger_id = self._ledger.match_frame_id(frame_id)
            if trigger_id is None:
                return False
            if not complete:
                self._incomplete += 1
        if not complete:  # incomplete buffers report no geometry (Aravis logs CRITICALs if asked)
            self.pool.count_invalid()
            return False
        fmt = int(buffer.get_image_pixel_format())
        spec = PIXEL_FORMATS.get(fmt)
        width, height = int(buffer.get_image_width()), int(buffer.get_image_height())
        data = np.frombuffer(buffer.get_image_data() or b"", np.uint8)
        if spec is None or width <= 0 or height <= 0 or data.size < width * height * spec[2]:
            if spec is None and fmt not in self._warned_formats:
                self._warned_formats.add(fmt)
                log.warning("camera %s: pixel format 0x%08x is not supported; set PixelFormat to Mono8, "
                            "RGB8, BGR8 or Bayer*8", self.info.id, fmt)
            self.pool.count_invalid()
            return False
        name, conversion, channels = spec
        src = data[: width * height * channels].reshape((height, width, channels) if channels == 3 else (height, width))
        self.pool.reshape((height, width) if name == "Mono8" else (height, width, 3))
        got = self.pool.acquire_slot()
        if got is None:  # every slot is held: counted by the pool
            return True
        slot, arr = got
        if conversion is None:
            np.copyto(arr, src)
        else:
            cv2.cvtColor(src, conversion, dst=arr)
        self.pool.publish(slot, self._next_sequence(), pixel_format=name, acquired_ns=_arrival_ns(buffer),
                          trigger_id=trigger_id)
        return True

    def _unwrap(self, raw: int) -> int:
        """Frame ids as one rising count across GigE Vision 1.x's 16-bit wrap (65535 -> 1)."""
        last, self._last_raw_id = self._last_raw_id, raw
        if last is not None and last <= _GEV1_BLOCK_ID_MAX and raw < last - _GEV1_BLOCK_ID_MAX // 2:
            self._id_wraps += 1
        return raw + self._id_wraps * _GEV1_BLOCK_ID_MAX

    # ------------------------------------------------------------------ recovery
    def _on_acquisition_error(self, exc: Exception) -> None:
        """Drop the device, re-open it with backoff, re-apply the recipe and trigger mode."""
        try:
            self._stop_device()
        except Exception as err:  # noqa: BLE001 - a lost device may fail to stop in any way
            log.debug("camera %s: stop after failure: %s", self.info.id, err)
        self._close_device()

        def reopen() -> None:
            self._open_device()
            self._start_device()

        self._reconnect(reopen)


def _arrival_ns(buffer: Any) -> int:
    """When the frame's leader packet arrived, in perf_counter ns (Aravis stamps it in CLOCK_REALTIME)."""
    age_ns = time.time_ns() - int(buffer.get_system_timestamp())
    return time.perf_counter_ns() - (age_ns if 0 <= age_ns < 10**10 else 0)


def _inet(address: str) -> Any:
    from gi.repository import Gio  # type: ignore[import-untyped]

    return Gio.InetAddress.new_from_string(address)
