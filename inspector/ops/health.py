"""Station health: one verdict (OK, DEGRADED, ALARM) over cameras, throughput, database and archive.

Used by the status line of ``inspector run`` (``health: DEGRADED (37% of frames dropped
...)``), the ``health`` section of the run report, the GUI's status bar and the
``inspector_health_level`` / ``inspector_alarm`` metrics.

Throughput problems are judged over the last ``[health] window_s`` seconds, never over
the whole run, so a station that falls behind says so within one window and recovers
when the cause is gone: the share of received frames dropped, and the latency of the
results of that window against ``latency_budget_ms`` (p99 over it: DEGRADED, p50 over it,
i.e. most frames late: ALARM).
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from camera.protocol import CameraState
from inspector.config import HealthConfig
from inspector.ops.plc_health import assess_plc
from inspector.ops.run_stats import percentiles

if TYPE_CHECKING:  # pragma: no cover
    from inspector.ops.view import StationView


class HealthLevel(enum.IntEnum):
    """How bad the worst issue is (the metric's value)."""

    OK = 0
    DEGRADED = 1
    ALARM = 2


#: Frames received in a window before the drop rate counts (a camera that just started).
_MIN_FRAMES = 5

#: A missed reject (an NG part that went on with the good parts) or a part decided after its
#: budget keeps a running station at ALARM this long after it happened (seconds); there is no
#: acknowledgement: the alarm names the part, and a run that had one ends ALARM.
MISSED_ALARM_HOLD_S = 60.0


class _Issues:
    """Issues in the order found, each with its level."""

    def __init__(self) -> None:
        self.items: list[tuple[HealthLevel, str]] = []

    def add(self, level: HealthLevel, text: str) -> None:
        self.items.append((level, text))

    @property
    def level(self) -> HealthLevel:
        return max((lvl for lvl, _ in self.items), default=HealthLevel.OK)


@dataclass(frozen=True)
class Health:
    """A station's health now: the worst level, the issues in the order found, and the figures
    they were judged from, by part of the station.

    Frozen; read its fields (``health.level``, ``health.issues``). It is also a read-only
    mapping of those same fields, so the run report's JSON (`to_dict`) and the service's wire
    carry them under one set of names, defined here once.
    """

    ok: bool
    level: str  # a `HealthLevel` name
    summary: str  # "OK", or the issues joined
    issues: list[str]
    window: dict[str, Any]  # seconds, drop_rate, latency_ms (p50/p99) over the window
    cameras: dict[str, dict[str, Any]]
    db: dict[str, Any]
    archive: dict[str, Any]
    storage: dict[str, Any]
    parts: dict[str, Any]
    plc: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        if key not in _HEALTH_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_HEALTH_FIELDS)

    def __len__(self) -> int:
        return len(_HEALTH_FIELDS)

    def keys(self) -> tuple[str, ...]:
        return _HEALTH_FIELDS

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _HEALTH_FIELDS else default

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the report's ``health`` section and the service's status."""
        return {k: getattr(self, k) for k in _HEALTH_FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Health:
        """A health read back from its JSON (the service's wire); missing sections are empty."""
        return cls(**{k: d.get(k, {} if k not in ("ok", "level", "summary", "issues") else None)
                      for k in _HEALTH_FIELDS})


_HEALTH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Health))
Mapping.register(Health)


def assess(station: StationView) -> Health:
    """A station's health (`Health`).

    ``summary`` is ``"OK"`` or the issues joined, e.g. ``"1 camera OFFLINE (line-cam3),
    37% of frames dropped (last 10 s), db spooling 120"``; ``level`` the worst of them.
    While the station runs, every camera that is not STREAMING is an issue (OFFLINE an
    alarm), and so are invalid frames, dropped frames and latency within the window, and a
    missed reject or deadline for `MISSED_ALARM_HOLD_S`; after the station stopped the
    database, the archive and the run's missed rejects and deadlines count.
    """
    cfg: HealthConfig = getattr(getattr(station, "config", None), "health", None) or HealthConfig()
    running = station.running
    issues = _Issues()
    cams = _cameras(station, running, issues)
    window = _throughput(station, cams, running, cfg, issues)
    db = _database(station, cfg, issues)
    archive = _archive(station, issues)
    storage = _storage(station, issues)
    parts = _parts(station, running, cfg, issues)
    plc = assess_plc(station, running, issues, HealthLevel)  # the Modbus result FIFO (inspector.ops.plc_health)
    if running and station.paused:
        issues.add(HealthLevel.DEGRADED, "paused")
    texts = [t for _, t in issues.items]
    return Health(ok=not texts, level=issues.level.name, summary=", ".join(texts) if texts else "OK",
                  issues=texts, window=window, cameras=cams, db=db, archive=archive, storage=storage,
                  parts=parts, plc=plc)


def _cameras(station: StationView, running: bool, issues: _Issues) -> dict[str, dict[str, Any]]:
    """Each camera's state and rates; cameras not STREAMING (OFFLINE: ALARM) and invalid frames."""
    by_state: dict[str, list[str]] = collections.defaultdict(list)
    cams: dict[str, dict[str, Any]] = {}
    for cid, cam in station.cameras.items():
        state = cam.state
        rates = station.watchdog.rates(cid)
        cams[cid] = {
            "state": state.value,
            "reason": cam.state_reason,
            "offline_events": station.transitions[(cid, CameraState.OFFLINE.value)],
            "stale_events": station.transitions[(cid, CameraState.STALE.value)],
            "fps": rates["inspected"],
            "invalid_fps": rates["invalid"],
            "dropped_fps": rates.get("dropped", 0.0),
        }
        if running and state is not CameraState.STREAMING:
            by_state[state.value.upper()].append(cid)
    for state_name, ids in sorted(by_state.items()):
        n = len(ids)
        level = HealthLevel.ALARM if state_name == CameraState.OFFLINE.value.upper() else HealthLevel.DEGRADED
        issues.add(level, f"{n} camera{'s' if n > 1 else ''} {state_name} ({', '.join(ids)})")
    bad_frames = [cid for cid, c in cams.items() if running and c["invalid_fps"] > 0]
    if bad_frames:
        issues.add(HealthLevel.DEGRADED, f"invalid frames from {', '.join(bad_frames)}")
    return cams


def _throughput(station: StationView, cams: dict[str, dict[str, Any]], running: bool, cfg: HealthConfig,
                issues: _Issues) -> dict[str, Any]:
    """Frames dropped (the line, and each camera) and latency, over the window."""
    window = f"last {cfg.window_s:g} s"
    span = station.watchdog.window_s
    received = sum(station.watchdog.rates(cid)["received"] for cid in cams)
    dropped = sum(c["dropped_fps"] for c in cams.values())
    drop_rate = dropped / received if received * span >= _MIN_FRAMES else 0.0
    # one camera far behind is as real as the whole line behind: judge each camera too
    behind = sorted(
        ((c["dropped_fps"] / rates_in, cid) for cid, c in cams.items()
         if (rates_in := c["fps"] + c["dropped_fps"]) * span >= _MIN_FRAMES),
        reverse=True,
    )
    worst = max(drop_rate, behind[0][0] if behind else 0.0)
    if running and not station.paused and worst >= cfg.drop_rate_degraded and worst > 0:
        level = HealthLevel.ALARM if worst >= cfg.drop_rate_alarm else HealthLevel.DEGRADED
        named = [f"{cid} {r:.0%}" for r, cid in behind if r >= cfg.drop_rate_degraded]
        detail = f"; {', '.join(named[:3])}" if 0 < len(named) < len(cams) else ""
        issues.add(level, f"{drop_rate:.0%} of frames dropped ({window}{detail})")
    lat = percentiles(station.stats.recent_latency_ms(cfg.window_s)) if running else {"p50": 0.0, "p99": 0.0}
    budget = cfg.latency_budget_ms
    if lat["p50"] > budget:
        issues.add(HealthLevel.ALARM, f"frame p50 latency {lat['p50']:.0f} ms > budget {budget:g} ms "
                                      f"(frame latency budget, {window})")
    elif lat["p99"] > budget:
        issues.add(HealthLevel.DEGRADED, f"frame p99 latency {lat['p99']:.0f} ms > budget {budget:g} ms "
                                      f"(frame latency budget, {window})")
    return {"seconds": cfg.window_s, "drop_rate": drop_rate, "latency_ms": lat}


def _database(station: StationView, cfg: HealthConfig, issues: _Issues) -> dict[str, Any]:
    """The writer: backlog, results not stored or lost, spooling."""
    if station.db_writer is None:
        return {}
    d = station.db_writer.stats()
    db = {"spool_size": int(d["spool_size"]), "queue_depth": int(d["queue_depth"]),
          "skipped_full": int(d["skipped_full"]), "rejected": int(d["rejected"]),
          "lost": int(d.get("lost", 0)), "backlog": int(d.get("backlog", 0)),
          "spool_reserve_used": float(d.get("spool_reserve_used", 0.0))}
    if db["queue_depth"] >= cfg.db_backlog_degraded:
        level = HealthLevel.ALARM if db["queue_depth"] >= cfg.db_backlog_alarm else HealthLevel.DEGRADED
        issues.add(level, f"db backlog {db['queue_depth']}")
    if db["skipped_full"]:
        issues.add(HealthLevel.ALARM, f"db queue full: {db['skipped_full']} results not stored")
    if db["lost"]:  # accepted, never made durable (DbWriter.lost): `inspector run` exits 3
        issues.add(HealthLevel.ALARM, f"db: {db['lost']} results LOST")
    if db["backlog"]:
        issues.add(HealthLevel.ALARM, f"db spool full: {db['backlog']} results only in memory")
    if db["spool_size"]:
        spool_mb = getattr(station.db_writer.spool, "size_bytes", 0) / 1e6
        used = db["spool_reserve_used"]
        alarm = spool_mb >= cfg.spool_alarm_mb or used >= 0.9  # the reserve nearly used up
        level = HealthLevel.ALARM if alarm else HealthLevel.DEGRADED
        issues.add(level, f"db spooling {db['spool_size']} (reserve {used:.0%} used)")
    return db


def _archive(station: StationView, issues: _Issues) -> dict[str, Any]:
    if station.archive is None:
        return {}
    a = station.archive.stats()
    archive = {"alarm": bool(a["alarm"]), "dropped_disk_full": int(a["dropped_disk_full"]),
               "archive_bytes": int(a["archive_bytes"])}
    if archive["alarm"]:
        issues.add(HealthLevel.ALARM, "archive ALARM (disk full)")
    return archive


def _parts(station: StationView, running: bool, cfg: HealthConfig, issues: _Issues) -> dict[str, Any]:
    """A triggered line's parts over the window, and its missed rejects and deadlines."""
    line = station.line
    if line is None:
        return {}
    parts: dict[str, Any] = {}
    if running:
        window = f"last {cfg.window_s:g} s"
        budget = line.tracker.budget_ms
        parts = {**line.tracker.stats.window(cfg.window_s), "budget_ms": budget}
        if parts["incomplete"]:
            share = parts["incomplete"] / max(1, parts["parts"])
            level = HealthLevel.ALARM if share >= cfg.part_incomplete_alarm else HealthLevel.DEGRADED
            issues.add(level, f"{parts['incomplete']} of {parts['parts']} parts incomplete, NG ({window})")
        if parts["p99_ms"] > cfg.part_budget_degraded * budget:
            issues.add(HealthLevel.DEGRADED,
                       f"parts p99 {parts['p99_ms']:.0f} ms near the {budget:g} ms budget (part budget, {window})")
    parts.update(_missed_parts(line, running, issues))
    return parts


def _missed_parts(line: Any, running: bool, issues: _Issues) -> dict[str, Any]:
    """Missed rejects and deadlines: ALARM, naming the part, for `MISSED_ALARM_HOLD_S` while the
    station runs; after it stopped, the whole run's (a run that had either never ends OK)."""
    stats, gate = line.tracker.stats, line.gate
    now = time.monotonic()
    hold = f"last {MISSED_ALARM_HOLD_S:g} s"
    rejects = [m for m in list(gate.misses) if not running or now - m[0] <= MISSED_ALARM_HOLD_S]
    late = [m for m in list(stats.missed) if not running or now - m[0] <= MISSED_ALARM_HOLD_S]
    if running and rejects:
        _t, pid, what = rejects[-1]
        issues.add(HealthLevel.ALARM, f"MISSED REJECT part {pid}: {what} ({len(rejects)} in the {hold})")
    elif not running and gate.missed:
        _t, pid, _what = gate.misses[-1]
        issues.add(HealthLevel.ALARM, f"{gate.missed} NG parts not rejected at the gate (last: part {pid})")
    if running and late:
        issues.add(HealthLevel.ALARM, f"deadline missed: part {late[-1][1]} decided after its budget "
                                      f"({len(late)} in the {hold})")
    elif not running and stats.deadline_missed:
        last = f" (last: part {stats.missed[-1][1]})" if stats.missed else ""
        issues.add(HealthLevel.ALARM, f"{stats.deadline_missed} parts decided after their deadline{last}")
    return {"deadline_missed": stats.deadline_missed, "reject_missed": gate.missed,
            "missed_rejects_recent": len(rejects), "deadline_missed_recent": len(late)}


def _storage(station: StationView, issues: _Issues) -> dict[str, Any]:
    """Database size and the disk budget (`inspector.storage.retention`): DEGRADED before a limit is
    reached, as retention then purges results for space before their age."""
    retention = getattr(station, "retention", None)
    if retention is None:
        return {}
    u: dict[str, Any] = retention.usage()
    warn = u["warn_fraction"]
    if u["budget_bytes"] and u["budget_used"] >= warn:
        issues.add(HealthLevel.DEGRADED,
                   f"disk budget {u['budget_used']:.0%} used (database {u['db_used_bytes'] / 1e9:.2f} GB, "
                   f"images {u['archive_bytes'] / 1e9:.2f} GB of {u['budget_bytes'] / 1e9:g} GB)")
    elif u["db_max_bytes"] and u["db_used"] >= warn:
        issues.add(HealthLevel.DEGRADED,
                   f"database {u['db_used']:.0%} of db_max_gb ({u['db_used_bytes'] / 1e9:.2f} of "
                   f"{u['db_max_bytes'] / 1e9:g} GB)")
    return u


def health_text(health: Health | Mapping[str, Any]) -> str:
    """``OK`` or ``DEGRADED: 37% of frames dropped (last 10 s)``: the level first, then why."""
    if health["ok"]:
        return "OK"
    return f"{health['level']}: {health['summary']}"
