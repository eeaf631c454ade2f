"""Triggered acquisition: the SFNC trigger features, and tying each frame to its trigger.

A camera's acquisition mode is ``free_run`` (frames at its own rate, newest wins) or
``triggered``: SFNC ``TriggerSelector=FrameStart``, ``TriggerMode=On``,
``TriggerSource=Software|LineN``, ``TriggerActivation``; a software trigger is the
``TriggerSoftware`` command. A triggered camera's frames belong to parts, so each one is
tied to the trigger it answers by the device's frame id or timestamp (`TriggerLedger`),
never by the order in which buffers happen to arrive.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from camera.features import FeatureError, FeatureTree

AcquisitionMode = Literal["free_run", "triggered"]

#: The SFNC features a triggered camera must have (TriggerActivation is optional: some
#: devices trigger on the rising edge only and do not offer it).
REQUIRED_TRIGGER_FEATURES = ("TriggerSelector", "TriggerMode", "TriggerSource")


class TriggerUnsupported(RuntimeError):
    """The device has no (or not all) SFNC trigger features; the message is one line."""


@dataclass(frozen=True)
class TriggerSettings:
    """How a camera is triggered.

    Args:
        source: ``Software`` (the station or a PLC command fires it) or ``Line0``..``LineN``
            (a photo-eye or encoder wired to the camera).
        activation: ``RisingEdge``, ``FallingEdge`` ... (hardware lines only).
    """

    source: str = "Software"
    activation: str = "RisingEdge"


def apply_sfnc_trigger(camera_id: str, tree: FeatureTree, settings: TriggerSettings) -> None:
    """Put ``tree``'s device into FrameStart trigger mode.

    Raises:
        TriggerUnsupported: The device lacks a trigger feature, or refuses the source;
            the message names the camera and what is missing.
    """
    present = {f.name for f in tree.features()}
    missing = [n for n in REQUIRED_TRIGGER_FEATURES if n not in present]
    if settings.source == "Software" and "TriggerSoftware" not in present:
        missing.append("TriggerSoftware")
    if missing:
        raise TriggerUnsupported(
            f"camera {camera_id}: no trigger features ({', '.join(missing)} missing): free-run only"
        )
    try:
        tree.set("TriggerSelector", "FrameStart")
        tree.set("TriggerMode", "On")
        tree.set("TriggerSource", settings.source)
        if settings.source != "Software" and "TriggerActivation" in present:
            tree.set("TriggerActivation", settings.activation)
    except FeatureError as exc:
        raise TriggerUnsupported(f"camera {camera_id}: trigger settings refused: {exc}") from exc


@dataclass
class TriggerCounters:
    """Per-camera trigger accounting (the report's ``missed_triggers`` / ``trigger_overruns``)."""

    fired: int = 0
    answered: int = 0  # frames tied to a trigger
    missed: int = 0  # a trigger that never produced a frame (device or simulated fault)
    overruns: int = 0  # a trigger while the sensor was still busy with the previous one
    unmatched: int = 0  # frames that fit no trigger (never given to a part)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Fired:
    trigger_id: int
    fired_ns: int


@dataclass
class TriggerLedger:
    """The triggers a camera was sent, and which of them a buffer answers.

    A buffer is tied to a trigger by its timestamp when the device stamps buffers in the
    host clock (``match_timestamp``: the newest trigger fired at or before the exposure,
    within ``max_latency_ns``), or else by its frame id (``match_frame_id``: a triggered
    device counts one frame per accepted trigger, so the offset between frame ids and
    trigger numbers is fixed by the first frame). Triggers older than ``max_latency_ns``
    with no frame are counted as missed.
    """

    max_latency_ns: int = 2_000_000_000
    counters: TriggerCounters = field(default_factory=TriggerCounters)
    _fired: collections.deque[_Fired] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _frame_id_offset: int | None = None
    _numbers: dict[int, int] = field(default_factory=dict)  # trigger number (0, 1, ...) -> trigger id
    _next_number: int = 0

    def fired(self, trigger_id: int, fired_ns: int | None = None) -> None:
        with self._lock:
            self._fired.append(_Fired(trigger_id, fired_ns if fired_ns is not None else time.perf_counter_ns()))
            self._numbers[self._next_number] = trigger_id
            self._next_number += 1
            self.counters.fired += 1
            self._expire(time.perf_counter_ns())

    def match_timestamp(self, exposure_ns: int) -> int | None:
        """The trigger a buffer exposed at ``exposure_ns`` (host clock) answers, or None."""
        with self._lock:
            best = None
            for f in self._fired:
                if f.fired_ns <= exposure_ns <= f.fired_ns + self.max_latency_ns:
                    best = f
            if best is None:
                self.counters.unmatched += 1
                return None
            self._fired.remove(best)
            self.counters.answered += 1
            return best.trigger_id

    def match_frame_id(self, frame_id: int) -> int | None:
        """The trigger a buffer with device frame id ``frame_id`` answers, or None."""
        with self._lock:
            if self._frame_id_offset is None:
                self._frame_id_offset = frame_id - min(self._numbers, default=0)
            trigger_id = self._numbers.pop(frame_id - self._frame_id_offset, None)
            if trigger_id is None:
                self.counters.unmatched += 1
                return None
            for f in self._fired:
                if f.trigger_id == trigger_id:
                    self._fired.remove(f)
                    break
            self.counters.answered += 1
            return trigger_id

    def _expire(self, now_ns: int) -> None:
        while self._fired and now_ns - self._fired[0].fired_ns > self.max_latency_ns:
            self._fired.popleft()
            self.counters.missed += 1


@runtime_checkable
class TriggeredCamera(Protocol):
    """A camera that can be put into trigger mode and fired (simulated, GenTL, Aravis)."""

    def configure_trigger(self, settings: TriggerSettings) -> None:
        """Switch the device to FrameStart triggers; raises `TriggerUnsupported` (one line)."""
        ...

    def fire(self, trigger_id: int) -> None:
        """Send a software trigger; the frame it produces carries ``trigger_id``."""
        ...

    @property
    def triggered(self) -> bool: ...

    def trigger_counters(self) -> TriggerCounters: ...
