"""One verdict per part from its cameras' verdicts.

Default: the part is NG when any camera says NG. A line may group redundant views
(``[[line.groups]] cameras = [...], k = 2``): such a group says NG only when at least ``k``
of its cameras do; cameras in no group keep the any-NG rule. A part missing an image is
NG "incomplete" whatever the others say (fail safe): that is the tracker's decision,
made before this rule is asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inspector.pipeline.results import InspectionResult, Verdict


@dataclass(frozen=True)
class CameraGroup:
    """Redundant views of one feature: NG when at least ``k`` of ``cameras`` say NG."""

    cameras: tuple[str, ...]
    k: int = 1


@dataclass(frozen=True)
class PartRule:
    """How a part's frames decide its verdict."""

    groups: tuple[CameraGroup, ...] = ()

    def decide(self, frames: Mapping[str, InspectionResult]) -> tuple[Verdict, str, str | None]:
        """``(verdict, reason, deciding camera)`` for a complete part (one frame per camera)."""
        grouped = {c for g in self.groups for c in g.cameras}
        for g in self.groups:
            ng = [c for c in g.cameras if c in frames and frames[c].ng]
            if len(ng) >= g.k:
                first = ng[0]
                of = f" ({len(ng)} of {len(g.cameras)} views)" if g.k > 1 else ""
                return Verdict.NG, f"{first}: {frames[first].rule}{of}", first
        for cid in sorted(frames):
            if cid not in grouped and frames[cid].ng:
                return Verdict.NG, f"{cid}: {frames[cid].rule}", cid
        return Verdict.OK, "no defect", None


def incomplete_reason(missing: Sequence[str]) -> str:
    """``"incomplete: line-cam3 no image"`` (cameras named in order)."""
    return f"incomplete: {', '.join(missing)} no image"
