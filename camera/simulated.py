"""`SimulatedLineCamera`: parts from the synthetic renderer at a set rate and size.

Rendering costs ~10-20 ms a frame, too much to do live for 8 cameras on two cores
next to inference. The camera therefore renders each part once into a bank and
publishes the banked frame (read-only, in place of a DMA'd buffer) at the nominal rate, holding a
pool slot as a real frame would; a station fills the banks
with `prerender` before its cameras start (otherwise the first pass renders on use).
Every frame carries its ground truth.

Free-running (``fps`` 0, the saturation benchmarks' source), the next banked frame is there as soon as the
last one is taken: the claim that takes it publishes the next one, on the claiming thread (`_FreeRunningPool`),
instead of waking the camera's thread for it. Woken by every claim, that thread took two wake-ups a frame (the
claim, then the GIL the claiming thread still held) at one camera on two cores, where each wake-up of a sleeping
thread costs ~0.1 core-ms of cold caches beside the runtime; a real camera's thread wakes at its own frame rate,
whatever the consumer does. The thread still publishes the first frame, and any frame while a fault is injected.

Triggered (SFNC ``TriggerMode=On``, `configure_trigger`), the camera takes one picture
per trigger: `fire` starts the exposure, the frame is published exposure + readout later
and carries the trigger's id. On a line (``faces`` > 0) camera ``face`` renders that face
of the part the trigger belongs to (`camera.renderer.render_face`), so every camera sees
the same part. A trigger while the sensor is still exposing is an overrun (ignored and
counted, as a real sensor does); ``missed_trigger_rate`` loses triggers on purpose.

The camera can misbehave on purpose (`camera.faults`): ``camera.faults.inject(...)``
from tests and scripts, or the Guru features ``FaultMode`` / ``FaultDuration``. Like a
real device it forgets its settings when it is lost; the reconnect re-applies the
feature tree (the recipe).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from camera.bank_cache import BankCache
from camera.base import ThreadedCamera
from camera.faults import FaultMode, FaultPlan
from camera.features import DictFeatureTree, Feature, FeatureError
from camera.frame_pool import FrameHandle, FramePool
from camera.protocol import CameraInfo
from camera.renderer import GroundTruth, render_face, render_part
from camera.trigger import TriggerCounters, TriggerSettings, apply_sfnc_trigger

log = logging.getLogger(__name__)

#: Features that steer the simulation's faults, not the device: never re-applied.
_FAULT_FEATURES = ("FaultMode", "FaultDuration")


class SimulatedLineCamera(ThreadedCamera):
    """A simulated line-scan station camera.

    Args:
        camera_id: Station-unique id.
        fps: Nominal frame rate (free-running when 0: as fast as consumers claim).
        width: Frame width.
        height: Frame height.
        mono: Mono8 output instead of BGR8.
        seed: First part seed; part *i* uses ``seed + i % bank_size``.
        bank_size: Distinct parts before the sequence repeats.
        ok_share: Share of defect-free parts.
        pool_slots: Frame pool capacity.
        face: Which face of each part this camera sees (its place on the line).
        faces: Faces per part on a line (0: free-running parts, one per frame).
        readout_ms: Sensor readout after the exposure (triggered frames).
    """

    def __init__(
        self,
        camera_id: str,
        *,
        fps: float = 5.0,
        width: int = 320,
        height: int = 320,
        mono: bool = False,
        seed: int = 2_000_000,
        bank_size: int = 64,
        ok_share: float = 0.6,
        pool_slots: int = 6,
        face: int = 0,
        faces: int = 0,
        readout_ms: float = 8.0,
    ) -> None:
        check_bank_budget(camera_id, width, height, mono, bank_size)
        shape = (height, width) if mono else (height, width, 3)
        pool = _FreeRunningPool(camera_id, pool_slots, shape)
        super().__init__(
            CameraInfo(id=camera_id, kind="simulated", vendor="inspector", model="SimulatedLineCamera",
                       serial=simulated_serial(camera_id)),
            pool,
            fps,
        )
        # held while a free-running frame is published, by this camera's thread or by a claim (never both)
        self._publish_lock = threading.Lock()
        pool.after_claim = self._publish_after_claim
        self.seed = seed
        self.bank_size = max(1, bank_size)
        self.ok_share = ok_share
        self._bank: dict[tuple[int, int, int, bool], tuple[np.ndarray, GroundTruth]] = {}
        self._next_due = 0.0
        self.face = face
        self.faces = faces
        self.readout_ms = readout_ms
        self.missed_trigger_rate = 0.0
        self._random = random.Random(zlib.crc32(camera_id.encode()))
        self._triggers: collections.deque[tuple[int, int]] = collections.deque()  # (trigger id, fired ns)
        self._trigger_cv = threading.Condition()
        self._busy_until_ns = 0
        self._trigger_counters = TriggerCounters()
        #: the digital output (reject gate wire): its level, and who listens to it
        self.output_high = False
        self.output_listeners: list[Any] = []
        self.faults = FaultPlan()
        self._connected = True
        self._tree = DictFeatureTree(on_write=self._apply_feature)
        self._build_tree(width, height, mono, fps)
        # what the "device" runs with; a lost device falls back to these factory values
        self._factory = dict(self._tree.values)
        self._device: dict[str, Any] = dict(self._factory)

    # ------------------------------------------------------------------ features
    def _build_tree(self, width: int, height: int, mono: bool, fps: float) -> None:
        t = self._tree
        t.add(Feature("DeviceVendorName", "str", "DeviceControl", "Vendor", writable=False), "inspector")
        t.add(Feature("DeviceModelName", "str", "DeviceControl", "Model", writable=False), "SimulatedLineCamera")
        t.add(Feature("DeviceSerialNumber", "str", "DeviceControl", "Serial", writable=False), self.info.serial)
        t.add(Feature("Width", "int", "ImageFormatControl", "Width", minimum=64, maximum=4096, increment=16, unit="px"), width)
        t.add(Feature("Height", "int", "ImageFormatControl", "Height", minimum=64, maximum=4096, increment=16, unit="px"), height)
        t.add(
            Feature("PixelFormat", "enum", "ImageFormatControl", "Pixel format", enum_entries=("BGR8", "Mono8")),
            "Mono8" if mono else "BGR8",
        )
        t.add(
            Feature("AcquisitionFrameRate", "float", "AcquisitionControl", "Frame rate", minimum=0.0, maximum=200.0, unit="Hz"),
            float(fps),
        )
        t.add(
            Feature("ExposureTime", "float", "AcquisitionControl", "Exposure", minimum=20.0, maximum=100000.0, unit="us", visibility="Expert"),
            5000.0,
        )
        t.add(Feature("Gain", "float", "AnalogControl", "Gain", minimum=0.0, maximum=24.0, unit="dB", visibility="Expert"), 0.0)
        t.add(Feature("TriggerSelector", "enum", "AcquisitionControl", "Trigger selector", enum_entries=("FrameStart",)), "FrameStart")
        t.add(Feature("TriggerMode", "enum", "AcquisitionControl", "Trigger mode", enum_entries=("Off", "On")), "Off")
        t.add(
            Feature("TriggerSource", "enum", "AcquisitionControl", "Trigger source", enum_entries=("Software", "Line0", "Line1")),
            "Software",
        )
        t.add(
            Feature("TriggerActivation", "enum", "AcquisitionControl", "Trigger activation",
                    enum_entries=("RisingEdge", "FallingEdge"), visibility="Expert"),
            "RisingEdge",
        )
        t.add(Feature("TriggerSoftware", "command", "AcquisitionControl", "Software trigger"), None)
        # a digital output wired to the line's reject gate (SFNC DigitalIOControl)
        t.add(Feature("LineSelector", "enum", "DigitalIOControl", "Line selector", enum_entries=("Line1", "Line2"),
                      visibility="Expert"),
              "Line1")
        t.add(Feature("LineMode", "enum", "DigitalIOControl", "Line mode", enum_entries=("Input", "Output"),
                      visibility="Expert"), "Input")
        t.add(Feature("LineSource", "enum", "DigitalIOControl", "Line source",
                      enum_entries=("Off", "UserOutput1", "UserOutput2"), visibility="Expert"), "Off")
        t.add(Feature("UserOutputSelector", "enum", "DigitalIOControl", "User output",
                      enum_entries=("UserOutput1", "UserOutput2"), visibility="Expert"), "UserOutput1")
        t.add(Feature("UserOutputValue", "bool", "DigitalIOControl", "User output value",
                      visibility="Expert"), False)
        t.add(
            Feature("PartOkShare", "float", "Simulation", "Share of OK parts", minimum=0.0, maximum=1.0, visibility="Guru"),
            self.ok_share,
        )
        t.add(Feature("PartSeed", "int", "Simulation", "First part seed", minimum=0, maximum=2**31 - 1, visibility="Guru"), self.seed)
        t.add(
            Feature(
                "FaultMode",
                "enum",
                "Simulation",
                "Injected fault",
                "Make the camera misbehave: stall, disconnect, corrupt, wrong_size or hang",
                visibility="Guru",
                enum_entries=tuple(m.value for m in FaultMode),
            ),
            FaultMode.NONE.value,
        )
        t.add(
            Feature(
                "FaultDuration",
                "float",
                "Simulation",
                "Fault duration",
                "Seconds an injected fault lasts (0: until FaultMode is set to none)",
                minimum=0.0,
                maximum=86400.0,
                unit="s",
                visibility="Guru",
            ),
            10.0,
        )

    @property
    def features(self) -> DictFeatureTree:
        return self._tree

    def _apply_feature(self, name: str, value: Any) -> None:
        if name in _FAULT_FEATURES:
            if name == "FaultMode":
                self.faults.inject(value, float(self._tree.values["FaultDuration"]))
            else:  # FaultDuration: also for the fault already on (the settings dialog writes the mode first)
                self.faults.set_duration(float(value))
            return
        if not self._connected:
            raise FeatureError(f"{name}: camera {self.info.id} is not connected")
        self._device[name] = value
        if name in ("Width", "Height", "PixelFormat"):
            w = self._device["Width"]
            h = self._device["Height"]
            mono = self._device["PixelFormat"] == "Mono8"
            self.pool.reshape((h, w) if mono else (h, w, 3))
        elif name == "AcquisitionFrameRate":
            self._fps = float(value)
        elif name == "PartOkShare":
            if float(value) != self.ok_share:
                self.ok_share = float(value)
                self._bank.clear()
        elif name == "PartSeed":
            if int(value) != self.seed:
                self.seed = int(value)
                self._bank.clear()
        elif name == "TriggerMode":
            self.pool.triggered = value == "On"
        elif name == "TriggerSoftware":
            self.fire(self._trigger_counters.fired + 1)
        elif name == "UserOutputValue":
            wired = self._device.get("LineMode") == "Output" and self._device.get("LineSource") != "Off"
            self.output_high = bool(value) and wired
            for listener in list(self.output_listeners):
                listener(self.output_high)
        elif name in ("LineSelector", "LineMode", "LineSource", "UserOutputSelector"):
            pass
        elif name in ("ExposureTime", "Gain", "TriggerSelector", "TriggerSource", "TriggerActivation"):
            pass  # accepted; the renderer's lighting drift stands in for exposure and gain
        else:  # pragma: no cover - read-only nodes never reach here
            raise FeatureError(f"{name}: not writable")

    # ------------------------------------------------------------------ triggers
    @property
    def triggered(self) -> bool:
        return self._device.get("TriggerMode") == "On"

    def configure_trigger(self, settings: TriggerSettings) -> None:
        """FrameStart triggers from ``settings.source`` (the simulated device has them all)."""
        apply_sfnc_trigger(self.info.id, self._tree, settings)

    def trigger_counters(self) -> TriggerCounters:
        return TriggerCounters(**self._trigger_counters.__dict__)

    def fire(self, trigger_id: int) -> None:
        """Start an exposure for trigger ``trigger_id`` (its frame carries the id).

        Ignored and counted as an overrun while the previous exposure is still running;
        lost on purpose at ``missed_trigger_rate``.
        """
        now = time.perf_counter_ns()
        c = self._trigger_counters
        with self._trigger_cv:
            c.fired += 1
            if now < self._busy_until_ns:
                c.overruns += 1
                return
            if self.missed_trigger_rate > 0 and self._random.random() < self.missed_trigger_rate:
                c.missed += 1
                return
            self._busy_until_ns = now + int(float(self._device["ExposureTime"]) * 1000)
            self._triggers.append((trigger_id, now))
            self._trigger_cv.notify()

    def _next_trigger(self) -> tuple[int, int] | None:
        with self._trigger_cv:
            if not self._triggers:
                self._trigger_cv.wait(0.1)
            return self._triggers.popleft() if self._triggers else None

    # ------------------------------------------------------------------ acquisition
    @property
    def banked_parts(self) -> int:
        """Parts rendered and held in the bank for the current size and pixel format."""
        w, h = self._device["Width"], self._device["Height"]
        mono = self._device["PixelFormat"] == "Mono8"
        return sum(1 for (_seed, bw, bh, bm) in list(self._bank) if (bw, bh, bm) == (w, h, mono))

    def prerender(self, cache: BankCache | None = None) -> bool:
        """Render the whole bank now (a station does this before its cameras start).

        With a ``cache`` the bank is loaded from disk when it was rendered before with the
        same renderer and settings, and saved after rendering otherwise. Returns True when it
        came from the cache.
        """
        w, h = self._device["Width"], self._device["Height"]
        mono = self._device["PixelFormat"] == "Mono8"
        key = cache.key(seed=self.seed, width=w, height=h, mono=mono, ok_share=self.ok_share, face=self.face,
                        faces=self.faces, bank_size=self.bank_size) if cache is not None else ""
        bank = cache.load(key) if cache is not None else None
        if bank is not None and len(bank) == self.bank_size:
            self._bank = {(self.seed + i, w, h, mono): hit for i, hit in enumerate(bank)}
            return True
        for i in range(self.bank_size):
            self.frame_for(i)
        if cache is not None:
            cache.save(key, [self.frame_for(i) for i in range(self.bank_size)])
        return False

    def frame_for(self, index: int) -> tuple[np.ndarray, GroundTruth]:
        """The banked frame for part ``index`` (rendered on first use)."""
        w, h = self._device["Width"], self._device["Height"]
        mono = self._device["PixelFormat"] == "Mono8"
        seed = self.seed + index % self.bank_size
        key = (seed, w, h, mono)
        hit = self._bank.get(key)
        if hit is None:
            if self.faces > 0:
                fr = render_face(seed, self.face, self.faces, w, h, mono=mono, ok_share=self.ok_share)
            else:
                fr = render_part(seed, w, h, mono=mono, ok_share=self.ok_share)
            hit = (fr.image, fr.truth)
            if len(self._bank) >= self.bank_size:
                self._bank.pop(next(iter(self._bank)))
            self._bank[key] = hit
        return hit

    def _start_device(self) -> None:
        if not self._connected:  # stopped while it was lost: it comes back with the recipe
            self._restore()
        # free-running cameras are not in phase with each other; a per-camera phase keeps a
        # station's cameras from all rendering and delivering in the same instant
        phase = (zlib.crc32(self.info.id.encode()) % 1000) / 1000.0
        self._next_due = time.monotonic() + (phase / self._fps if self._fps > 0 else 0.0)

    def _pace(self) -> bool:
        """Wait until the next frame is due; False when stopping or nothing was claimed."""
        if self._fps > 0:
            delay = self._next_due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return False
            self._next_due = max(self._next_due + 1.0 / self._fps, time.monotonic() - 1.0 / self._fps)
            return True
        # free-running: produce as soon as the last frame was taken (saturation benchmarks); the claim that takes
        # it publishes the next one itself (`_publish_after_claim`), this thread only when nothing is pending
        if self.pool.has_pending():
            self._stop.wait(0.1)
            return False
        return True

    def _publish_after_claim(self) -> None:
        """A free-running camera's frame was claimed: publish the next one now, on the claiming thread (the
        camera thread does it while a fault is injected, and before the first claim)."""
        if self._fps > 0 or self.triggered or not self._connected or self._stop.is_set():
            return
        if self.faults.active() is not FaultMode.NONE:
            return
        try:
            with self._publish_lock:
                if self._stop.is_set() or self.pool.has_pending():
                    return
                self._publish_next(None)
        except Exception:  # noqa: BLE001 - not the consumer's failure: the camera's thread publishes (and reports) it
            return
        self._frame_arrived()

    def _publish_next(self, fault: FaultMode | None) -> None:
        """Publish the next banked frame (``fault``: WRONG_SIZE publishes a misfit buffer); a frame that finds every
        slot held is counted as dropped by the pool."""
        seq = self._next_sequence()
        image, truth = self.frame_for(seq - 1)
        t_acq = time.perf_counter_ns()
        got = self.pool.acquire_slot()
        if got is None:
            return
        slot, arr = got
        if arr.shape != image.shape:  # reconfigured between render and read-out
            self.pool.abandon_slot(slot)
            return
        frame = _sensor_buffer(image)
        fmt = "Mono8" if image.ndim == 2 else "BGR8"
        if fault is FaultMode.WRONG_SIZE:
            frame = _misfit(frame, seq)
        self.pool.publish(slot, seq, pixel_format=fmt, truth=truth, acquired_ns=t_acq, image=frame)

    def stop(self) -> None:
        self._stop.set()
        with self._publish_lock:  # a claim publishing right now finishes before the pool is flushed
            pass
        super().stop()

    def _acquire_once(self) -> bool:
        fault = self.faults.active()
        if self._tree.values["FaultMode"] != fault.value:
            self._tree.values["FaultMode"] = fault.value  # the fault ended by itself
        if fault is FaultMode.HANG:
            self.faults.block_while(FaultMode.HANG)  # stuck in the "driver"; deaf to stop()
            return False
        if fault is FaultMode.DISCONNECT:
            raise ConnectionError(f"camera {self.info.id}: device lost (simulated)")
        if self.triggered:
            return self._acquire_triggered(fault)
        if not self._pace():
            return False
        if fault is FaultMode.STALL:
            return False
        if fault is FaultMode.CORRUPT:  # an incomplete buffer: counted, never published
            self.pool.count_invalid()
            return False
        if self._fps <= 0:
            with self._publish_lock:  # a claim may have published the next frame meanwhile
                if self.pool.has_pending():
                    return False
                self._publish_next(fault)
            return True
        self._publish_next(fault)
        return True

    def _acquire_triggered(self, fault: FaultMode) -> bool:
        """Wait for a trigger, expose and read out, publish the frame of that trigger's part."""
        got_trigger = self._next_trigger()
        if got_trigger is None:
            return False
        trigger_id, fired_ns = got_trigger
        exposure_ns = int(float(self._device["ExposureTime"]) * 1000)
        ready_ns = fired_ns + exposure_ns + int(self.readout_ms * 1e6)
        delay = (ready_ns - time.perf_counter_ns()) / 1e9
        if delay > 0 and self._stop.wait(delay):
            return False
        if fault in (FaultMode.STALL, FaultMode.CORRUPT):
            self._trigger_counters.missed += 1
            if fault is FaultMode.CORRUPT:
                self.pool.count_invalid()
            return False
        seq = self._next_sequence()
        image, truth = self.frame_for(trigger_id)
        got = self.pool.acquire_slot()
        if got is None:
            return True
        slot, arr = got
        if arr.shape != image.shape:
            self.pool.abandon_slot(slot)
            return True
        fmt = "Mono8" if image.ndim == 2 else "BGR8"
        self._trigger_counters.answered += 1
        frame = _sensor_buffer(image)
        if fault is FaultMode.WRONG_SIZE:  # the trigger is answered with a buffer no image fits: counted invalid
            frame = _misfit(frame, seq)
        self.pool.publish(slot, seq, pixel_format=fmt, truth=truth, acquired_ns=fired_ns + exposure_ns // 2,
                          trigger_id=trigger_id, image=frame)
        return True

    # ------------------------------------------------------------------ device loss
    def _on_acquisition_error(self, exc: Exception) -> None:
        """The device is gone: it forgets its settings; re-open with backoff and re-apply them."""
        self._connected = False
        self._device = dict(self._factory)
        self._fps = float(self._factory["AcquisitionFrameRate"])
        self._reconnect(self._reopen)

    def _reopen(self) -> None:
        if self.faults.active() is FaultMode.DISCONNECT:
            raise ConnectionError(f"camera {self.info.id}: device not found (simulated)")
        self._start_device()

    def _restore(self) -> None:
        """Connect again and re-apply every writable feature (the recipe) to the device."""
        self._connected = True
        for feature in self._tree.features():
            if feature.writable and feature.name not in _FAULT_FEATURES:
                self._apply_feature(feature.name, self._tree.values[feature.name])


class _FreeRunningPool(FramePool):
    """A simulated camera's frame pool: ``after_claim`` runs after every claim that took a frame, on the claiming
    thread, outside the pool's lock (the free-running camera publishes its next frame there)."""

    after_claim: Callable[[], None] | None = None

    def claim(self) -> FrameHandle | None:
        h = super().claim()
        hook = self.after_claim
        if h is not None and hook is not None:
            hook()
        return h


def simulated_serial(camera_id: str) -> str:
    """A simulated camera's serial number: its own per camera id (the cameras of a line share a seed)."""
    return f"SIM-{zlib.crc32(camera_id.encode()):08X}"


#: Memory a camera's bank of rendered parts may take (all cameras of a station together
#: are checked by the station against the machine's memory).
BANK_BUDGET_BYTES = 4 * 1024**3


class BankTooLarge(ValueError):
    """A camera's bank of rendered parts would not fit in memory (one line, names the camera)."""


def bank_bytes(width: int, height: int, mono: bool, bank_size: int) -> int:
    """Bytes a bank of ``bank_size`` rendered frames takes (renderer scratch not counted)."""
    return width * height * (1 if mono else 3) * bank_size


def check_bank_budget(camera_id: str, width: int, height: int, mono: bool, bank_size: int,
                      budget: int = BANK_BUDGET_BYTES) -> None:
    """Refuse, before allocating, a bank that cannot fit in ``budget`` bytes.

    Raises:
        BankTooLarge: Naming the camera, the bank's size and the largest bank_size that fits.
    """
    need = bank_bytes(width, height, mono, bank_size)
    if need > budget:
        fits = max(1, budget // max(1, bank_bytes(width, height, mono, 1)))
        raise BankTooLarge(
            f"camera {camera_id}: bank of {bank_size} {width}x{height} parts needs {need / 1024**3:.1f} GiB "
            f"(limit {budget / 1024**3:.0f} GiB); use bank_size <= {fits}"
        )


def _sensor_buffer(image: np.ndarray) -> np.ndarray:
    """The banked frame as the pool publishes it: a read-only view, no copy. A real camera's frame
    reaches the pool by DMA without host CPU (GenTL and Aravis buffers are published in place); the
    slot the frame holds keeps the pool's back-pressure as it is. Copying 300 KB into the slot cost
    the camera threads 0.078 instead of 0.035 core-ms a frame at 8-camera saturation
    (`benchmarks/host_cpu.py`), taken from inference on two cores."""
    view = image.view()
    view.flags.writeable = False
    return view


def _misfit(slot: np.ndarray, sequence: int) -> np.ndarray:
    """A view of ``slot`` that does not fit the frame's pixel format (a wrong-size buffer).

    Cycles through no pixels at all, a flat buffer without rows, and (for colour frames)
    rows whose stride lost the channel axis.
    """
    variants = [slot[:0], slot.reshape(-1)]
    if slot.ndim == 3:
        variants.append(slot.reshape(slot.shape[0], -1)[:, :-1])
    return variants[sequence % len(variants)]
