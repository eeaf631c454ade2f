"""An injected fault lasts the duration it was given, whichever way it was given."""

from __future__ import annotations

import pytest

from camera.faults import FaultMode, FaultPlan
from camera.simulated import SimulatedLineCamera


def _duration(plan: FaultPlan) -> float | None:
    rec = plan.history[-1]
    return None if rec.ends_at is None else rec.ends_at - rec.started_at


def test_a_duration_written_after_the_mode_is_the_faults_duration() -> None:
    """The settings dialog writes in tree order: FaultMode, then FaultDuration (was: 10 s, the old duration)."""
    cam = SimulatedLineCamera("c1", fps=1, width=32, height=32, bank_size=1)
    cam.features.set("FaultMode", "disconnect")
    cam.features.set("FaultDuration", 20.0)
    assert cam.faults.active() is FaultMode.DISCONNECT
    assert _duration(cam.faults) == pytest.approx(20.0)
    cam.features.set("FaultDuration", 0.0)  # 0: until FaultMode is set to none
    assert _duration(cam.faults) is None and cam.faults.active() is FaultMode.DISCONNECT
    cam.features.set("FaultMode", "none")
    assert cam.faults.active() is FaultMode.NONE


def test_a_duration_written_first_still_counts_and_without_a_fault_changes_nothing() -> None:
    cam = SimulatedLineCamera("c1", fps=1, width=32, height=32, bank_size=1)
    cam.features.set("FaultDuration", 20.0)
    assert cam.faults.history == [] and cam.faults.active() is FaultMode.NONE
    cam.features.set("FaultMode", "stall")
    assert _duration(cam.faults) == pytest.approx(20.0)
    assert FaultPlan().set_duration(5.0) is None
