"""Health of the Modbus result FIFO: a PLC that stops taking results is DEGRADED, then ALARM.

A PLC that no longer sends ``dequeue_result`` fills the FIFO within a minute on a busy line
(64 results at 5 parts/s: 13 s); every part after that is not queued for the PLC, which then
misses verdicts it counts on. Judged from `inspector.plc.link_status.ModbusLinkStatus`:

- DEGRADED: the FIFO is more than half full, or its head result has waited longer than
  `WAIT_CYCLES` part cycles (at least `MIN_WAIT_S`): the PLC is falling behind or gone.
- ALARM: a result found the FIFO full (not queued for the PLC) within the last
  `OVERFLOW_HOLD_S` while the station runs; after it stopped, any overflow of the run.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

#: Part cycles the head result may wait before the PLC counts as behind.
WAIT_CYCLES = 3
#: The shortest wait that counts as behind (a PLC's scan and handshake take a few hundred ms).
MIN_WAIT_S = 1.0
#: An overflow keeps a running station at ALARM this long after the last one (seconds).
OVERFLOW_HOLD_S = 60.0


class _Issues(Protocol):
    def add(self, level: Any, text: str) -> None: ...


class _Fifo(Protocol):
    """The fields of `ModbusLinkStatus` judged here."""

    fifo_count: int
    fifo_depth: int
    fifo_overflows: int
    last_overflow_age_s: float | None
    head_wait_s: float | None
    cycle_s: float | None


def wait_limit_s(cycle_s: float | None) -> float:
    """How long the head result may wait: `WAIT_CYCLES` cycles, at least `MIN_WAIT_S`."""
    return max(MIN_WAIT_S, WAIT_CYCLES * cycle_s) if cycle_s else MIN_WAIT_S


def assess_plc(station: Any, running: bool, issues: _Issues, levels: type[enum.IntEnum]) -> dict[str, Any]:
    """Add the result FIFO's issues to ``issues``; returns its numbers for the health dict (empty: no Modbus).

    Args:
        station: The station (its ``plc_modbus``, if any, is read).
        running: Whether the station runs (after a stop: the whole run's overflows).
        issues: Where issues go (``add(level, text)``).
        levels: The health levels (``DEGRADED``, ``ALARM``), passed in so this module needs no import of health.
    """
    modbus = getattr(station, "plc_modbus", None)  # stations and test fakes without a Modbus link
    if modbus is None:
        return {}
    s: _Fifo = modbus.link_status()
    limit = wait_limit_s(s.cycle_s)
    out = {"fifo_count": s.fifo_count, "fifo_depth": s.fifo_depth, "fifo_overflows": s.fifo_overflows,
           "head_wait_s": s.head_wait_s, "wait_limit_s": limit}
    recent = s.last_overflow_age_s is not None and s.last_overflow_age_s <= OVERFLOW_HOLD_S
    if s.fifo_overflows and (recent or not running):
        when = f"last {OVERFLOW_HOLD_S:g} s" if running else "this run"
        issues.add(levels["ALARM"], f"PLC result FIFO full: {s.fifo_overflows} results not queued for the PLC "
                                    f"({when}; is the PLC taking results?)")
    elif running and s.fifo_count * 2 > s.fifo_depth:
        issues.add(levels["DEGRADED"], f"PLC result FIFO {s.fifo_count} of {s.fifo_depth} waiting "
                                       "(is the PLC taking results?)")
    elif running and s.head_wait_s is not None and s.head_wait_s > limit:
        issues.add(levels["DEGRADED"], f"PLC result waiting {s.head_wait_s:.1f} s (> {limit:.1f} s, "
                                       f"{WAIT_CYCLES} part cycles): is the PLC taking results?")
    return out
