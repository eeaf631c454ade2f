"""`GenTLCamera`: a GenICam camera through harvesters; the announced buffers are pool slots.

A fetched buffer is published zero-copy with `FramePool.publish_external` and queued
back to the producer when its last holder releases it. Discovery and producers live in
`camera.gentl_system`, the node map as a `FeatureTree` in `camera.genicam_tree`. Quirks
of harvesters 1.4.3 and genicam's ``viky.cti`` are noted where they are handled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from camera.base import ThreadedCamera
from camera.features import FeatureError
from camera.frame_pool import FramePool
from camera.genicam_tree import DEVICE_ERRORS, GenICamFeatureTree, short_error
from camera.gentl_system import GenTLSystem
from camera.protocol import CameraInfo
from camera.trigger import TriggerCounters, TriggerLedger, TriggerSettings, apply_sfnc_trigger

try:
    from harvesters.core import Callback as _HarvestersCallback  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - harvesters is a runtime dependency
    _HarvestersCallback = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

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

#: How often a GenTL camera polls for a buffer (the wait in between releases the GIL).
POLL_S = 0.002
#: Reconnect backoff after a lost device: first wait, then doubling up to the cap.
RECONNECT_FIRST_WAIT_S = 0.5
RECONNECT_MAX_WAIT_S = 5.0


def _frame_id(buffer: Any) -> int:
    """The GenTL frame id of a harvesters buffer (on its GenTL module; -1 when the producer has none)."""
    for holder in (buffer, getattr(buffer, "module", None)):
        try:
            value = getattr(holder, "frame_id", None)
        except DEVICE_ERRORS:  # the producer does not implement BUFFER_INFO_FRAMEID
            value = None
        if value is not None:
            return int(value)
    return -1


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
        self._ledger: TriggerLedger | None = None  # set by configure_trigger: frames answer triggers

    # ------------------------------------------------------------------ triggers
    @property
    def triggered(self) -> bool:
        return self._ledger is not None

    def configure_trigger(self, settings: TriggerSettings) -> None:
        """FrameStart triggers where the device has the SFNC features (opens it to look).

        The trigger settings join the recipe, so a reconnect puts them back.

        Raises:
            TriggerUnsupported: The device has no trigger features (viky.cti: free-run only).
        """
        if self._acquirer is None:
            self.open()
        apply_sfnc_trigger(self.info.id, self._tree, settings)
        self.settings.update({"TriggerSelector": "FrameStart", "TriggerMode": "On", "TriggerSource": settings.source})
        self._ledger = TriggerLedger()
        self.pool.triggered = True

    def fire(self, trigger_id: int) -> None:
        """Execute ``TriggerSoftware``; the frame that answers it carries ``trigger_id``."""
        if self._ledger is None:
            raise RuntimeError(f"camera {self.info.id}: not in trigger mode")
        self._ledger.fired(trigger_id)
        self._tree.set("TriggerSoftware", None)

    def trigger_counters(self) -> TriggerCounters:
        return TriggerCounters(**self._ledger.counters.__dict__) if self._ledger is not None else TriggerCounters()

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
        except DEVICE_ERRORS as exc:  # buffer info unreadable: this frame is lost, not the device
            log.debug("camera %s: unreadable buffer: %s", self.info.id, short_error(exc))
            view, pixel_format = None, ""
        if view is None:
            self.pool.count_invalid()
            self._queue_quietly(buffer)
            return False
        trigger_id = None
        if self._ledger is not None:  # tie the buffer to its trigger by the device's frame id
            trigger_id = self._ledger.match_frame_id(_frame_id(buffer))
            if trigger_id is None:  # fits no trigger: counted (unmatched), never given to a part
                self._queue_quietly(buffer)
                return False
        self.pool.publish_external(
            view,
            self._next_sequence(),
            self._requeue_later(buffer),
            pixel_format=pixel_format,
            acquired_ns=time.perf_counter_ns(),
            trigger_id=trigger_id,
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
        except DEVICE_ERRORS as exc:  # buffer revoked (device lost or stopping): nothing to hand back
            log.debug("camera %s: queue buffer failed: %s", self.info.id, short_error(exc))

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
