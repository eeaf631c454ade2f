"""The JSON a plant receives: one message per part, and the station's state.

The part message's layout is fixed by ``part.schema.json`` beside this file (JSON Schema,
draft 2020-12); a change to `part_message` changes the schema and its ``version``.
Times are ISO 8601 in UTC with milliseconds; durations are milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any

from inspector.pipeline.results import InspectionResult, PartResult

#: Bumped with every change of the part message's layout (and of part.schema.json).
PART_MESSAGE_VERSION = 1


def iso_time(epoch_s: float) -> str:
    """``1733450000.123`` -> ``"2024-12-06T01:53:20.123Z"``."""
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _camera(cid: str, frame: InspectionResult | None) -> dict[str, Any]:
    if frame is None:  # owed a frame and had none by the deadline: the part is NG "incomplete"
        return {"id": cid, "verdict": None, "missing": True, "rule": "", "defects": []}
    return {
        "id": cid,
        "verdict": frame.verdict.value,
        "missing": False,
        "rule": frame.rule,
        "acquired_at": iso_time(frame.acquired_at),
        "model": frame.provenance.model_name,
        "defects": [
            {"class": d.class_name or str(d.class_id), "score": round(d.score, 4),
             "box": [round(d.x1, 1), round(d.y1, 1), round(d.x2, 1), round(d.y2, 1)]}
            for d in frame.detections
        ],
        "times_ms": {k: round(v, 2) for k, v in frame.times.as_dict().items()},
    }


def part_message(part: PartResult, station: str, sequence: int) -> dict[str, Any]:
    """The message of one decided part (see ``part.schema.json``).

    Args:
        part: The decided part.
        station: The station's name.
        sequence: The message's number in this run (1, 2, ...): a gap is a part the outbox dropped.
    """
    frames = {f.camera_id: f for f in part.frames}
    cameras = [_camera(cid, frames.get(cid)) for cid in part.expected]
    cameras += [_camera(f.camera_id, f) for f in part.frames if f.camera_id not in part.expected]
    models: dict[str, dict[str, str]] = {}
    for f in part.frames:
        p = f.provenance
        models.setdefault(p.model_name, {"name": p.model_name, "sha256": p.model_sha256,
                                         "card_sha256": p.card_sha256, "backend": p.backend})
    return {
        "version": PART_MESSAGE_VERSION,
        "station": station,
        "sequence": sequence,
        "part_id": part.part_id,
        "trigger_id": part.trigger_id,
        "verdict": part.verdict.value,
        "reason": part.reason,
        "deciding_camera": part.deciding_camera,
        "incomplete": part.incomplete,
        "missing": list(part.missing),
        "recipe": part.recipe,
        "triggered_at": iso_time(part.triggered_at),
        "budget_ms": part.budget_ms,
        "deadline_met": part.deadline_met,
        "times_ms": {k: round(v, 2) for k, v in part.times.as_dict().items()},
        "cameras": cameras,
        "models": list(models.values()),
    }


def state_message(station: str, state: str, health: str, summary: str, recipe: str, at: float) -> dict[str, Any]:
    """The station's state (retained): ``starting``, ``running``, ``paused``, ``stopping`` or ``stopped``, and its health."""
    return {"station": station, "state": state, "health": health, "summary": summary, "recipe": recipe,
            "at": iso_time(at)}


def encode(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def part_schema() -> dict[str, Any]:
    """The JSON Schema of the part message (shipped as ``inspector/plant/part.schema.json``)."""
    text = (resources.files("inspector.plant") / "part.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema
