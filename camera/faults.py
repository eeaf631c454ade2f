"""Fault injection for simulated cameras: what a real camera does on a bad day.

A `FaultPlan` holds at most one active fault with an optional end time. Tests and the
soak script call `FaultPlan.inject` directly; integrators reach the same plan through
the simulated camera's Guru features ``FaultMode`` and ``FaultDuration``.

Modes, and what the engine must do about them:

* ``stall``: the camera delivers nothing (no error): STALE, then OFFLINE, then
  STREAMING again when frames come back.
* ``disconnect``: acquisition raises like a lost device and re-opening fails until the
  fault ends: OFFLINE at once, reconnect with backoff, settings re-applied.
* ``corrupt``: buffers arrive incomplete (like GenTL incomplete buffers): counted
  invalid, never published, never inferred.
* ``wrong_size``: frames are published whose shape does not fit their pixel format
  (zero-size or mis-strided): the scheduler counts them invalid and skips them.
* ``hang``: the acquisition call blocks inside the "driver" and ignores stop requests
  until the fault ends: the station watchdog must notice, the rest of the station
  must go on, and shutdown must stay bounded.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from dataclasses import dataclass


class FaultMode(str, enum.Enum):
    """A simulated camera fault."""

    NONE = "none"
    STALL = "stall"
    DISCONNECT = "disconnect"
    CORRUPT = "corrupt"
    WRONG_SIZE = "wrong_size"
    HANG = "hang"


@dataclass(frozen=True)
class FaultRecord:
    """One injected fault: mode and monotonic start/end (end None while open-ended)."""

    mode: FaultMode
    started_at: float
    ends_at: float | None


class FaultPlan:
    """The active fault of one camera; thread-safe.

    A fault with a duration ends by itself; ``inject(mode)`` without one lasts until
    `clear`. Injecting replaces the active fault.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mode = FaultMode.NONE
        self._ends_at: float | None = None
        self._changed = threading.Condition(self._lock)
        self.history: list[FaultRecord] = []

    def inject(self, mode: FaultMode | str, duration_s: float | None = None) -> FaultRecord:
        """Start ``mode`` now, for ``duration_s`` seconds (None or <= 0: until `clear`)."""
        mode = FaultMode(mode)
        now = time.monotonic()
        ends = now + duration_s if duration_s is not None and duration_s > 0 else None
        record = FaultRecord(mode, now, ends)
        with self._lock:
            self._mode = mode
            self._ends_at = ends if mode is not FaultMode.NONE else None
            if mode is not FaultMode.NONE:
                self.history.append(record)
            self._changed.notify_all()
        return record

    def set_duration(self, duration_s: float) -> FaultRecord | None:
        """Make the active fault last ``duration_s`` from its start (<= 0: until `clear`); returns its
        record, or None when no fault is active. A duration set after the mode counts as well."""
        with self._lock:
            if self._active_locked(time.monotonic()) is FaultMode.NONE or not self.history:
                return None
            record = self.history[-1]
            ends = record.started_at + duration_s if duration_s > 0 else None
            self._ends_at = ends
            self.history[-1] = record = dataclasses.replace(record, ends_at=ends)
            self._changed.notify_all()
        return record

    def clear(self) -> None:
        """End the active fault now."""
        self.inject(FaultMode.NONE)

    def active(self) -> FaultMode:
        """The fault in force now (an expired one is cleared)."""
        with self._lock:
            return self._active_locked(time.monotonic())

    def _active_locked(self, now: float) -> FaultMode:
        if self._ends_at is not None and now >= self._ends_at:
            self._mode, self._ends_at = FaultMode.NONE, None
        return self._mode

    def block_while(self, mode: FaultMode) -> None:
        """Block the calling thread while ``mode`` is in force (a hung driver call).

        Deliberately deaf to the camera's stop request: only the end of the fault
        (its duration, `clear` or another `inject`) releases it.
        """
        with self._lock:
            while self._active_locked(time.monotonic()) is mode:
                left = None if self._ends_at is None else max(0.0, self._ends_at - time.monotonic())
                self._changed.wait(left if left is None else left + 0.001)


#: Faults `inspector run --inject` knows: a rate for missed_trigger, seconds for the others.
INJECTABLE = ("missed_trigger", *(m.value for m in FaultMode if m is not FaultMode.NONE))


@dataclass(frozen=True)
class Injection:
    """``CAMERA:FAULT[:VALUE][@SECONDS]``: a fault for a simulated camera, ``at_s`` after the start."""

    camera: str
    fault: str
    value: float | None = None
    at_s: float = 0.0


def parse_injection(spec: str) -> Injection:
    """Parse ``line-cam3:missed_trigger:0.05`` or ``line-cam2:stall:5@10``.

    Raises:
        ValueError: One line naming what is wrong with ``spec``.
    """
    head, _, at = spec.partition("@")
    bits = head.split(":")
    if len(bits) not in (2, 3) or not all(bits[:2]):
        raise ValueError(f"--inject {spec!r}: expected CAMERA:FAULT[:VALUE][@SECONDS]")
    camera, fault = bits[0], bits[1]
    if fault not in INJECTABLE:
        raise ValueError(f"--inject {spec!r}: unknown fault {fault!r} ({', '.join(INJECTABLE)})")
    try:
        value = float(bits[2]) if len(bits) == 3 else None
        at_s = float(at) if at else 0.0
    except ValueError:
        raise ValueError(f"--inject {spec!r}: VALUE and SECONDS must be numbers") from None
    if value is not None and not (value >= 0 and value < float("inf")):
        raise ValueError(f"--inject {spec!r}: VALUE must be a finite number >= 0")
    if not (0 <= at_s < float("inf")):
        raise ValueError(f"--inject {spec!r}: @SECONDS must be a finite number >= 0")
    if fault == "missed_trigger" and (value is None or value > 1):
        raise ValueError(f"--inject {spec!r}: missed_trigger needs a rate in 0..1 (e.g. missed_trigger:0.05)")
    return Injection(camera, fault, value, at_s)
