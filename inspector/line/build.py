"""A triggered line from a station's configuration: its part rule, trigger, conveyor and reject gate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from camera.protocol import Camera
from inspector.line.part_verdict import CameraGroup, PartRule
from inspector.line.runner import Line
from inspector.pipeline.results import PartResult


def build_line(config: Any, cameras: Mapping[str, Camera], on_part: Callable[[PartResult], None],
               fail_safe: Callable[[], str | None]) -> Line:
    """The line of ``config`` (a `StationConfig` whose ``[line]`` is triggered) over ``cameras``.

    Raises:
        LineError: The line cannot be built from this configuration (one line).
    """
    lc = config.line
    rule = PartRule(tuple(CameraGroup(tuple(g.cameras), g.k) for g in lc.groups))
    conveyor = (
        {"parts_per_min": lc.parts_per_min, "jitter": lc.jitter, "belt_mm_s": lc.belt_mm_s}
        if lc.trigger == "conveyor" else None
    )
    reject = ({"mm": lc.reject_mm, "camera": lc.reject_camera or config.cameras[-1].id,
               "line": lc.reject_line, "pulse_ms": lc.reject_pulse_ms} if lc.reject_mm is not None else None)
    return Line(
        config.name, cameras, lc.budget_ms, on_part, rule=rule,
        trigger_sources={c.id: c.trigger_source for c in config.cameras},
        positions_mm={c.id: c.position_mm for c in config.cameras},
        conveyor=conveyor, fail_safe=fail_safe, reject=reject,
    )
