"""The control link's wire format: JSON lines over a local Unix socket.

Each line is one JSON object. The client sends requests ``{"id": 7, "op": "pause",
"args": {"paused": true}}``; the server answers each with ``{"id": 7, "ok": true,
"result": ...}`` or ``{"id": 7, "ok": false, "error": "one line", "kind": "PermissionDenied"}``
and, between answers, pushes events ``{"event": "part", ...}`` (parts, results with their
display image, camera states, pause, health and counters). Images are JPEG, downscaled to
`DISPLAY_MAX_SIDE` (`display_size`), base64 in the line; detections stay in frame pixels
and the client scales them with the same `display_size`. A client that asked for lossless
images (``images`` with ``lossless``: the Teach dialog collecting good parts) gets the same
pixels as PNG (``png`` in place of ``jpeg``). A result scored by an anomaly model carries its
u8 heat map over the whole frame (``heat``: base64 PNG, grey = score x 127.5, as the archive's
``*.heat.png``).

A switch the promotion gate refused answers with ``"kind": "GateRefused"`` and its fields besides
the line, ``"gate": {"model", "reason", "recipe", "in_force", "overridable"}``: the client raises
`inspector.quality.gate.GateRefused` with them (the same line).

This module is shared by the engine's server and the GUI's client: it imports neither.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.pipeline.results import (
    Detection,
    InspectionResult,
    PartResult,
    PartTimes,
    Provenance,
    StageTimes,
    Verdict,
)

#: Protocol version: the client refuses a server that speaks another.
VERSION = 1
#: A request line longer than this closes the connection (a password and a path fit easily).
MAX_REQUEST_BYTES = 64 * 1024
#: Display images are at most this many pixels on their longer side.
DISPLAY_MAX_SIDE = 640
#: Environment variable naming the socket (overrides the default place; the CLI's --socket overrides it).
ENV_SOCKET = "INSPECTOR_SOCKET"
#: Where a system service puts its socket (systemd's RuntimeDirectory=inspector).
SYSTEM_RUN_DIR = Path("/run/inspector")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ProtocolError(ValueError):
    """A line that is not a request or an answer of this protocol; one line."""


def socket_candidates(station_name: str) -> list[Path]:
    """Where a station's socket may be, most specific first (the GUI tries each)."""
    name = _SAFE.sub("_", station_name) or "station"
    out: list[Path] = []
    env = os.environ.get(ENV_SOCKET)
    if env:
        out.append(Path(env))
    out.append(SYSTEM_RUN_DIR / f"{name}.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        out.append(Path(runtime) / "inspector" / f"{name}.sock")
    out.append(Path("/tmp") / f"inspector-{os.getuid()}" / f"{name}.sock")
    return out


def default_socket(station_name: str) -> Path:
    """Where the service binds its socket: `ENV_SOCKET`, else the first candidate folder it may write."""
    cands = socket_candidates(station_name)
    if os.environ.get(ENV_SOCKET):
        return cands[0]
    for path in cands:
        parent = path.parent
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return path
    return cands[-1]


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line (compact JSON, ``\\n`` ended)."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """One line as a message.

    Raises:
        ProtocolError: Not a JSON object.
    """
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message is a JSON object")
    return msg


def display_size(width: int, height: int) -> tuple[int, int]:
    """The size a ``width x height`` frame is sent at (never larger than the frame)."""
    scale = min(1.0, DISPLAY_MAX_SIDE / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


# ---------------------------------------------------------------------------- results on the wire
def result_to_wire(r: InspectionResult) -> dict[str, Any]:
    """What the GUI shows of one frame's result (no pixels: they travel as an image event)."""
    return {
        "camera_id": r.camera_id, "sequence": r.sequence, "acquired_at": r.acquired_at, "verdict": r.verdict.value,
        "rule": r.rule, "detections": [_det(d) for d in r.detections], "total_ms": r.times.total_ms,
        "frame_width": r.frame_width, "frame_height": r.frame_height, "trigger_id": r.trigger_id,
        "part_id": r.part_id, "late": r.late,
        "anomaly_score": r.anomaly_score if r.anomaly_score is None or math.isfinite(r.anomaly_score) else None,
    }


def part_to_wire(p: PartResult) -> dict[str, Any]:
    """What the GUI shows of one decided part."""
    return {
        "part_id": p.part_id, "line": p.line, "trigger_id": p.trigger_id, "triggered_at": p.triggered_at,
        "verdict": p.verdict.value, "reason": p.reason, "frames": [result_to_wire(f) for f in p.frames],
        "expected": list(p.expected), "missing": list(p.missing), "deciding_camera": p.deciding_camera,
        "budget_ms": p.budget_ms, "deadline_met": p.deadline_met, "verdict_ms": p.times.verdict_ms,
        "recipe": p.recipe,
    }


_REMOTE = Provenance(model_name="(station)", model_sha256="", backend="")


def result_from_wire(d: dict[str, Any], *, display: bool = True) -> InspectionResult:
    """An `InspectionResult` from its wire form; with ``display`` its boxes in display-image pixels.

    Raises:
        ProtocolError: A field is missing or malformed.
    """
    try:
        fw, fh = int(d["frame_width"]), int(d["frame_height"])
        scale = display_size(fw, fh)[0] / fw if display and fw > 0 else 1.0
        dets = tuple(
            Detection(x[0] * scale, x[1] * scale, x[2] * scale, x[3] * scale, int(x[4]), float(x[5]), str(x[6]))
            for x in d["detections"]
        )
        size = display_size(fw, fh) if display and fw > 0 else (fw, fh)
        return InspectionResult(
            camera_id=str(d["camera_id"]), sequence=int(d["sequence"]), acquired_at=float(d["acquired_at"]),
            verdict=Verdict(d["verdict"]), rule=str(d["rule"]), detections=dets,
            times=StageTimes(total_ms=float(d["total_ms"])), provenance=_REMOTE, frame_width=size[0],
            frame_height=size[1], trigger_id=d.get("trigger_id"), part_id=d.get("part_id"), late=bool(d.get("late")),
            anomaly_score=float(d["anomaly_score"]) if d.get("anomaly_score") is not None else None,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(f"result: {exc}") from None


def part_from_wire(d: dict[str, Any]) -> PartResult:
    """A `PartResult` from its wire form (its frames' boxes in display-image pixels).

    Raises:
        ProtocolError: A field is missing or malformed.
    """
    try:
        return PartResult(
            part_id=str(d["part_id"]), line=str(d["line"]), trigger_id=int(d["trigger_id"]),
            triggered_at=float(d["triggered_at"]), verdict=Verdict(d["verdict"]), reason=str(d["reason"]),
            frames=tuple(result_from_wire(f) for f in d["frames"]), expected=tuple(d["expected"]),
            missing=tuple(d["missing"]), deciding_camera=d.get("deciding_camera"), budget_ms=float(d["budget_ms"]),
            deadline_met=bool(d["deadline_met"]), times=PartTimes(verdict_ms=float(d.get("verdict_ms", 0.0))),
            recipe=str(d.get("recipe", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"part: {exc}") from None


def recipes_to_wire(switch: Any) -> dict[str, Any] | None:
    """A station's product recipes as the attached window's selector reads them (None: it has none).

    ``{"folder": str, "current": number or None, "recipes": [{"number", "name", "version", "label",
    "product_id"}]}``; ``switch`` is the station's `inspector.recipes.switch.RecipeSwitch` (or None).
    """
    if switch is None:
        return None
    cur = switch.current
    return {
        "folder": str(switch.folder),
        "current": cur.recipe.number if cur is not None else None,
        "recipes": [{"number": r.recipe.number, "name": r.recipe.name, "version": r.recipe.version,
                     "label": r.label, "product_id": r.recipe.product_id} for r in list(switch.recipes)],
    }


def _det(d: Detection) -> list[Any]:
    return [d.x1, d.y1, d.x2, d.y2, d.class_id, d.score, d.class_name]


@dataclass(frozen=True)
class CameraLiveWire:
    """One camera's numbers as the status event carries them (the GUI's ``CameraLive``)."""

    camera_id: str
    state: str
    fps: float
    inspected_fps: float
    latency_p50_ms: float | None
    dropped: int
    inspected: int
    ng: int
    last_verdict: str
    last_result_age_s: float | None
    newest_frame_wall: float | None
