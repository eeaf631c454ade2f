"""The run report (``inspector run --report FILE``) and the one-line status, read from a view of the station.

The report is typed: `RunReport` holds a `CameraReport` per camera and a `WorkerReport` per
inference worker, frozen; `RunReport.to_dict` is the one place its JSON keys come from (the
field names). The sections that other parts of the engine keep as their own counters (the
database writer's, the archive's, the line's, the PLC links') are carried as they report them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from camera.protocol import CameraState
from inspector.ops.health import health_text
from inspector.ops.run_stats import percentiles
from inspector.ops.view import StationView

#: the counters a camera's pool keeps that the totals add up
_TOTALS = ("received", "inspected", "dropped", "invalid")


class ReportView(StationView, Protocol):
    """What the report reads of a station beyond health's view."""

    @property
    def card(self) -> Any: ...  # ModelCard: name, sha256s, threshold, input size

    @property
    def backend_name(self) -> str: ...

    @property
    def db_url(self) -> str | None: ...

    @property
    def plc_modbus(self) -> Any: ...  # ModbusPlc or None: ``.stats()``

    @property
    def plc_opcua(self) -> Any: ...  # OpcUaPlc or None: ``.stats()``

    @property
    def recipes(self) -> Any: ...  # RecipeSwitch or None: ``.current``, ``.switches``

    @property
    def fan_out(self) -> Any: ...  # SinkFanOut: ``.visible_ms``

    def elapsed(self) -> float: ...


@dataclass(frozen=True)
class CameraReport:
    """One camera over the run."""

    id: str
    kind: str
    state: str
    received: int
    inspected: int
    dropped: int
    dropped_pool_exhausted: int  # the rest: replaced before a worker claimed them
    in_flight: int
    invalid: int
    ng: int
    fps: float
    nominal_fps: float
    latency_ms: dict[str, float]
    accuracy: dict[str, Any] | None


@dataclass(frozen=True)
class WorkerReport:
    """One inference worker over the run."""

    worker: int
    device: str
    cameras: list[str]
    batches: int
    mean_batch: float
    busy_fraction: float
    errors: int
    loaded_batches: int  # batches that ran on the two-stream graph of streams = "auto" (the station was loaded)


@dataclass(frozen=True)
class RunReport:
    """The whole run; `to_dict` gives the JSON of ``--report``."""

    station: str
    duration_s: float
    backend: str
    devices: list[str]
    precision: list[str]  # what each worker's runtime runs: "auto" resolved
    precision_reason: list[str]  # why: "measured: int8 294 fps > bf16 257 > f32 149 ..." or "rule: ..."
    model: dict[str, Any]
    cameras: list[CameraReport]
    totals: dict[str, float]
    latency_ms: dict[str, float]
    stages_ms: dict[str, dict[str, float]]
    scheduler: list[WorkerReport]
    db: dict[str, Any]
    archive: dict[str, Any] | None
    lost: int  # accepted results never made durable (DbWriter.lost); non-zero: `inspector run` exits 3
    accuracy: dict[str, Any]
    health: dict[str, Any]
    parts: dict[str, Any] | None = None
    plc: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    mqtt: dict[str, Any] | None = None  # the MQTT outbox: published, dropped, peak depth
    extra: dict[str, Any] = field(default_factory=dict)  # sections added by a caller (the CLI's)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["cameras"] = [dataclasses.asdict(c) for c in self.cameras]
        out["scheduler"] = [dataclasses.asdict(w) for w in self.scheduler]
        for optional in ("parts", "plc", "recipe", "mqtt"):
            if out[optional] is None:
                del out[optional]
        out.update(self.extra)
        return out


def camera_reports(st: ReportView, elapsed: float) -> list[CameraReport]:
    out = []
    for cid, cam in st.cameras.items():
        c = cam.pool.snapshot()
        cs = st.stats.camera(cid)
        out.append(CameraReport(
            id=cid, kind=cam.info.kind, state=cam.state.value, received=c.received, inspected=c.inspected,
            dropped=c.dropped, dropped_pool_exhausted=c.pool_exhausted, in_flight=c.in_flight, invalid=c.invalid,
            ng=cs.ng, fps=c.inspected / elapsed, nominal_fps=cam.nominal_fps, latency_ms=percentiles(cs.latency_ms),
            accuracy=cs.accuracy.as_dict() if cs.accuracy.parts else None,
        ))
    return out


def worker_reports(workers: Sequence[Any], elapsed: float) -> list[WorkerReport]:
    return [
        WorkerReport(
            worker=w.index, device=w.backend.device, cameras=[lane.camera_id for lane in w.lanes],
            batches=w.stats.batches, mean_batch=w.stats.items / w.stats.batches if w.stats.batches else 0.0,
            busy_fraction=w.stats.busy_s / elapsed, errors=w.stats.errors,
            loaded_batches=int(getattr(w.backend, "loaded_batches", 0)),  # OpenVINO's streams = "auto" only
        )
        for w in workers
    ]


def run_report(st: ReportView) -> RunReport:
    """The run report of ``st`` now."""
    el = st.elapsed()
    cams = camera_reports(st, el)
    tot: dict[str, float] = {k: sum(getattr(c, k) for c in cams) for k in _TOTALS}
    tot["ng"] = sum(c.ng for c in cams)
    tot["fps"] = tot["inspected"] / el
    writer, card = st.db_writer, st.card
    plc: dict[str, Any] = {}
    if st.plc_modbus is not None:
        plc["modbus"] = st.plc_modbus.stats()
    if st.plc_opcua is not None:
        plc["opcua"] = st.plc_opcua.stats()
    parts = None
    if st.line is not None:
        parts = st.line.report()
        # verdict -> the PLC links and the GUI have it: the wait for the part to be durable
        parts["verdict_to_visible_ms"] = percentiles(list(st.fan_out.visible_ms))
    recipes = st.recipes
    return RunReport(
        station=st.config.name,
        duration_s=el,
        backend=st.backend_name,
        devices=list(st.config.model.devices),
        precision=[getattr(w.backend, "precision", st.config.model.precision) for w in st.workers],
        precision_reason=[precision_reason(w.backend, st.config.model.precision) for w in st.workers],
        model={"name": card.name, "sha256": card.sha256, "card_sha256": card.card_sha256,
               "threshold": card.threshold, "input": [card.input_width, card.input_height]},
        cameras=cams,
        totals=tot,
        latency_ms=percentiles(st.stats.latency_ms()),
        stages_ms=st.stats.stage_percentiles(),
        scheduler=worker_reports(st.workers, el),
        db={"url": redact(st.db_url), "rows_written": writer.rows_written if writer is not None else 0,
            **(dict(writer.stats()) if writer is not None else {})},
        archive=st.archive.stats() if st.archive is not None else None,
        lost=int(writer.lost) if writer is not None else 0,
        accuracy=st.stats.accuracy.as_dict(),
        health=st.health().to_dict(),
        parts=parts,
        plc=plc or None,
        recipe=({"current": recipes.current.label if recipes.current else None, "switches": recipes.switches}
                if recipes is not None else None),
        mqtt=st.mqtt.stats() if st.mqtt is not None else None,
    )


def status_line(st: ReportView) -> str:
    """One line: totals, then per camera fps/drops/NG (and a state when not streaming)."""
    el = st.elapsed()
    cams = []
    tot_in = tot_drop = 0
    for cid, cam in st.cameras.items():
        c = cam.pool.snapshot()
        tot_in += c.inspected
        tot_drop += c.dropped
        flag = "" if cam.state is CameraState.STREAMING else f" {cam.state.value.upper()}"
        cams.append(f"{cid} {c.inspected / el:4.1f}fps d{c.dropped} ng{st.stats.camera(cid).ng}{flag}")
    db = f" db {st.db_writer.rows_written}" if st.db_writer is not None else ""
    head = f"[{el:6.1f}s] {tot_in / el:5.1f} fps, {tot_drop} dropped, {st.stats.total_ng()} NG{db}"
    return f"{head} | health: {health_text(st.health())} | " + " | ".join(cams)


def precision_reason(backend: Any, configured: str) -> str:
    """Why ``backend`` runs its precision: the reason ``auto`` gave (measured, or the rule until then),
    else the configured one."""
    choice = getattr(backend, "precision_choice", None)  # OpenVINO's, when it resolved auto
    return str(choice.reason) if choice is not None else f"configured: precision = {configured!r}"


def precision_status(st: Any) -> tuple[str, str]:
    """The status bar's ``precision: int8`` (the first worker's; each worker's where they differ) and, as its
    tooltip, why; empty where the station shows no workers (a window attached over the control link)."""
    workers = list(getattr(st, "workers", ()))
    if not workers:
        return "", ""
    configured = st.config.model.precision
    names = [str(getattr(w.backend, "precision", configured)) for w in workers]
    text = "precision: " + (names[0] if len(set(names)) == 1 else " / ".join(names))
    return text, "\n".join(f"{w.backend.device}: {precision_reason(w.backend, configured)}" for w in workers)


def redact(url: str | None) -> str | None:
    """A database URL with its credentials hidden."""
    if url is None or "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
