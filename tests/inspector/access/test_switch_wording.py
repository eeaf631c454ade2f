"""`switch_wording`: how a product recipe switch is said, the same in the GUI's selector and Recipes… dialog and in
``inspector recipe select``: parts on a triggered line, frames on a free-running station."""

from __future__ import annotations

import pytest

from inspector.access.control import switch_wording


@pytest.mark.parametrize(("triggered", "unit", "finishing"), [
    (True, "part", "parts already triggered"),
    (False, "frame", "frames already taken"),  # free-running: no trigger, a part is a frame
], ids=["triggered line", "free-running station"])
def test_a_switch_is_said_in_parts_on_a_triggered_line_and_in_frames_on_a_free_running_station(
        triggered: bool, unit: str, finishing: str) -> None:
    w = switch_wording(triggered=triggered)
    assert (w.unit, w.finishing) == (unit, finishing)
    assert w.switching("cover v1") == f"switching to cover v1 at the next {unit}…"
    assert w.switched("cover v1", "housing v1") == (
        f"recipe cover v1 from the next {unit}; {finishing} finish on housing v1")
