"""Station health: one verdict over cameras, database and archive.

Used by the status line of ``inspector run`` (``health: OK``), the ``health`` section of
the run report and the ``inspector_alarm`` metric.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from camera.protocol import CameraState

if TYPE_CHECKING:  # pragma: no cover
    from inspector.station import Station


def assess(station: Station) -> dict[str, Any]:
    """``ok``, ``summary``, ``issues`` and per-part details of a station's health.

    ``summary`` is ``"OK"`` or the issues joined, e.g. ``"1 camera OFFLINE (line-cam3),
    db spooling 120, archive ALARM (disk full)"``. While the station runs, every camera
    that is not STREAMING is an issue, and so is a camera whose frames were invalid
    within the watchdog's window; after the station stopped only the database and the
    archive count.
    """
    running = station.running
    by_state: dict[str, list[str]] = collections.defaultdict(list)
    cams: dict[str, Any] = {}
    issues: list[str] = []
    for cid, cam in station.cameras.items():
        state = cam.state
        rates = station.watchdog.rates(cid)
        cams[cid] = {
            "state": state.value,
            "reason": getattr(cam, "state_reason", ""),
            "offline_events": station.transitions[(cid, CameraState.OFFLINE.value)],
            "stale_events": station.transitions[(cid, CameraState.STALE.value)],
            "fps": rates["inspected"],
            "invalid_fps": rates["invalid"],
        }
        if running and state is not CameraState.STREAMING:
            by_state[state.value.upper()].append(cid)
    for state_name, ids in sorted(by_state.items()):
        n = len(ids)
        issues.append(f"{n} camera{'s' if n > 1 else ''} {state_name} ({', '.join(ids)})")
    bad_frames = [cid for cid, c in cams.items() if running and c["invalid_fps"] > 0]
    if bad_frames:
        issues.append(f"invalid frames from {', '.join(bad_frames)}")
    db: dict[str, Any] = {}
    if station.db_writer is not None:
        d = station.db_writer.stats()
        db = {"spool_size": int(d["spool_size"]), "queue_depth": int(d["queue_depth"]),
              "skipped_full": int(d["skipped_full"]), "rejected": int(d["rejected"])}
        if db["spool_size"]:
            issues.append(f"db spooling {db['spool_size']}")
    archive: dict[str, Any] = {}
    if station.archive is not None:
        a = station.archive.stats()
        archive = {"alarm": bool(a["alarm"]), "dropped_disk_full": int(a["dropped_disk_full"]),
                   "archive_bytes": int(a["archive_bytes"])}
        if archive["alarm"]:
            issues.append("archive ALARM (disk full)")
    if running and station.paused:
        issues.append("paused")
    return {
        "ok": not issues,
        "summary": ", ".join(issues) if issues else "OK",
        "issues": issues,
        "cameras": cams,
        "db": db,
        "archive": archive,
    }
