"""Prometheus metrics of a running station, on an opt-in HTTP port.

Counters and gauges are read from the station when Prometheus scrapes (no cost per
frame); only the latency histograms are fed per result. Enable with ``[metrics]
port = 9108`` in the station config or ``inspector run --metrics-port 9108``; the
endpoint binds to 127.0.0.1 unless ``[metrics] bind`` says otherwise.

Exported (labels in braces):

* ``inspector_frames_{received,inspected,dropped,invalid}_total{camera}``,
  ``inspector_frames_in_flight{camera}``, ``inspector_ng_total{camera}``
* ``inspector_camera_fps{camera}`` (inspected, last 5 s), ``inspector_camera_received_fps{camera}``
* ``inspector_camera_state{camera,state}`` (1 for the current state),
  ``inspector_camera_transitions_total{camera,state}``, ``inspector_camera_frame_age_seconds{camera}``
* ``inspector_defects_total{camera,class}`` (defects the verdict rules counted)
* ``inspector_latency_seconds{camera}`` and ``inspector_inference_seconds{camera}`` histograms (the
  latency's buckets fine around ``[health] latency_budget_ms``, see `budget_buckets`)
* ``inspector_db_queue_depth``, ``inspector_db_spool_records``, ``inspector_db_spool_bytes``,
  ``inspector_db_rows_written_total``, ``inspector_db_skipped_total``
* ``inspector_archive_bytes``, ``inspector_archive_alarm``, ``inspector_archive_dropped_disk_full_total``
* ``inspector_db_bytes``, ``inspector_disk_budget_used_ratio`` (database and archive against the disk budget)
* triggered lines: ``inspector_parts_triggered_total``, ``inspector_parts_total{verdict}`` (OK, NG,
  incomplete: NG for lack of an image), ``inspector_part_late_frames_total``,
  ``inspector_missed_triggers_total``, ``inspector_trigger_overruns_total``,
  ``inspector_part_budget_seconds`` and the ``inspector_part_trigger_to_verdict_seconds`` histogram
  (buckets 2.5% apart from 40% to 125% of ``[line] budget_ms``)
* with ``[mqtt]``: ``inspector_mqtt_connected``, ``inspector_mqtt_published_total``,
  ``inspector_mqtt_dropped_total``, ``inspector_mqtt_outbox_depth``, ``inspector_mqtt_outbox_peak``,
  ``inspector_mqtt_disconnects_total``
* ``inspector_worker_errors_total{worker}``, ``inspector_alarm`` (1 while health is not OK),
  ``inspector_health_level`` (0 OK, 1 DEGRADED, 2 ALARM), ``inspector_drop_rate`` and
  ``inspector_window_latency_p99_seconds`` (over the ``[health]`` window)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from camera.protocol import CameraState
from inspector.ops.health import HealthLevel
from inspector.pipeline.results import InspectionResult, PartResult

if TYPE_CHECKING:  # pragma: no cover
    from inspector.ops.view import StationView

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: Near a budget the buckets are this much wider than the one before: Prometheus interpolates
#: linearly inside a bucket, so ``histogram_quantile`` is off by at most one bucket's width, 2.5%
#: of the value (5% for the per-frame latency, one histogram per camera).
PART_BUCKET_RATIO = 1.025
FRAME_BUCKET_RATIO = 1.05


def budget_buckets(budget_s: float, ratio: float = PART_BUCKET_RATIO) -> tuple[float, ...]:
    """Histogram bounds for latencies judged against ``budget_s``: geometric steps of ``ratio``
    from 40% to 125% of the budget (where a dashboard's "budget use" is read), coarse below and
    above (5% ... 30%, 1.5 ... 5 times the budget)."""
    fine, x = [], 0.4 * budget_s
    while x < 1.25 * budget_s * ratio:
        fine.append(x)
        x *= ratio
    coarse = [f * budget_s for f in (0.05, 0.1, 0.2, 0.3, 1.5, 2.0, 3.0, 5.0)]
    return tuple(sorted({float(f"{v:.6g}") for v in (*fine, *coarse)}))


class StationMetrics:
    """The station's Prometheus registry, its histograms and (optionally) its HTTP endpoint.

    Args:
        station: The station to describe.
    """

    def __init__(self, station: StationView) -> None:
        self.registry = CollectorRegistry()
        cfg = station.config
        self.latency = Histogram(
            "inspector_latency_seconds",
            "Acquisition to verdict, per inspected frame",
            ["camera"],
            buckets=budget_buckets(cfg.health.latency_budget_ms / 1000, FRAME_BUCKET_RATIO),
            registry=self.registry,
        )
        self.inference = Histogram(
            "inspector_inference_seconds",
            "Inference time of the batch each frame was part of",
            ["camera"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.defects = Counter(
            "inspector_defects",
            "Defects counted by the verdict rules, per camera and class (NG causes)",
            ["camera", "class"],
            registry=self.registry,
        )
        self.part_latency = Histogram(
            "inspector_part_trigger_to_verdict_seconds",
            "Trigger to part verdict, per part (triggered lines)",
            buckets=budget_buckets(cfg.line.budget_ms / 1000),
            registry=self.registry,
        )
        self.registry.register(_StationCollector(station))
        self._server: Any = None
        self.port: int | None = None

    def observe(self, results: Sequence[InspectionResult]) -> None:
        """Feed the histograms (called by the station's fan-out)."""
        for r in results:
            self.latency.labels(r.camera_id).observe(r.times.total_ms / 1000.0)
            self.inference.labels(r.camera_id).observe(r.times.inference_ms / 1000.0)
            for d in r.detections:
                self.defects.labels(r.camera_id, d.class_name or str(d.class_id)).inc()

    def observe_part(self, part: PartResult) -> None:
        """Feed the part histogram (called when a part is decided)."""
        self.part_latency.observe(part.times.verdict_ms / 1000.0)

    def render(self) -> bytes:
        """The text exposition, as a scrape would return it."""
        return generate_latest(self.registry)

    def serve(self, port: int, bind: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``bind:port`` from a daemon thread; returns the port.

        Raises:
            OSError: The port is taken or the address cannot be bound.
        """
        server, _thread = start_http_server(port, addr=bind, registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])
        log.info("metrics: serving http://%s:%d/metrics", bind, self.port)
        return self.port

    def close(self) -> None:
        """Stop the HTTP endpoint (if serving)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class _StationCollector(Collector):
    """Reads counters, states, queue depths and alarms from the station at scrape time."""

    def __init__(self, station: StationView) -> None:
        self._st = station

    def collect(self) -> Iterator[Metric]:
        st = self._st
        yield from _camera_metrics(st)
        yield from _storage_metrics(st)
        line = getattr(st, "line", None)
        if line is not None:
            yield from _part_metrics(line.report())
        if st.mqtt is not None:
            yield from _mqtt_metrics(st.mqtt.stats())
        errors = CounterMetricFamily("inspector_worker_errors", "Failed inference batches", labels=["worker"])
        for w in st.workers:
            errors.add_metric([str(w.index)], w.stats.errors)
        yield errors
        yield from _health_metrics(st.health())


def _camera_metrics(st: StationView) -> Iterator[Metric]:
    """Frames, NG verdicts, rates, states and transitions, per camera."""
    frames = {
        k: CounterMetricFamily(f"inspector_frames_{k}", f"Frames {k}, per camera", labels=["camera"])
        for k in ("received", "inspected", "dropped", "invalid")
    }
    by_cam = ["camera"]
    in_flight = GaugeMetricFamily("inspector_frames_in_flight", "Frames published, not yet settled", labels=by_cam)
    ng = CounterMetricFamily("inspector_ng", "NG verdicts, per camera", labels=["camera"])
    fps = GaugeMetricFamily("inspector_camera_fps", "Inspected frames per second (last 5 s)", labels=["camera"])
    rfps = GaugeMetricFamily("inspector_camera_received_fps", "Received frames per second (last 5 s)", labels=by_cam)
    state = GaugeMetricFamily("inspector_camera_state", "1 for the camera's current state", labels=[*by_cam, "state"])
    age = GaugeMetricFamily("inspector_camera_frame_age_seconds", "Seconds since the last frame", labels=["camera"])
    trans = CounterMetricFamily(
        "inspector_camera_transitions", "Camera state transitions, by new state", labels=["camera", "state"]
    )
    for cid, cam in st.cameras.items():
        c = cam.pool.snapshot()
        for k, fam in frames.items():
            fam.add_metric([cid], getattr(c, k))
        in_flight.add_metric([cid], c.in_flight)
        ng.add_metric([cid], st.stats.camera(cid).ng)
        rates = st.watchdog.rates(cid)
        fps.add_metric([cid], rates["inspected"])
        rfps.add_metric([cid], rates["received"])
        for s in CameraState:
            state.add_metric([cid, s.value], 1.0 if cam.state is s else 0.0)
        frame_age = getattr(cam, "frame_age", None)
        if frame_age is not None:
            age.add_metric([cid], frame_age())
    for (cid, new_state), n in sorted(st.transitions.items()):
        trans.add_metric([cid, new_state], n)
    yield from frames.values()
    yield from (in_flight, ng, fps, rfps, state, age, trans)


def _storage_metrics(st: StationView) -> Iterator[Metric]:
    """The database writer, the NG archive and the disk budget."""
    if st.db_writer is not None:
        d = st.db_writer.stats()
        yield GaugeMetricFamily(
            "inspector_db_queue_depth", "Results waiting for the DB writer", value=d["queue_depth"]
        )
        yield GaugeMetricFamily("inspector_db_spool_records", "Records waiting in the spool", value=d["spool_size"])
        yield GaugeMetricFamily(
            "inspector_db_spool_bytes", "Size of the spool file", value=st.db_writer.spool.size_bytes
        )
        yield CounterMetricFamily("inspector_db_rows_written", "Inspections committed", value=d["rows_written"])
        yield CounterMetricFamily(
            "inspector_db_skipped", "Results not queued for the DB (queue full)", value=d["skipped_full"]
        )
    if st.archive is not None:
        a = st.archive.stats()
        yield GaugeMetricFamily("inspector_archive_bytes", "Bytes of NG images kept", value=a["archive_bytes"])
        yield GaugeMetricFamily("inspector_archive_alarm", "1 while NG images cannot be written", value=a["alarm"])
        yield CounterMetricFamily(
            "inspector_archive_dropped_disk_full", "NG images dropped: disk full", value=a["dropped_disk_full"]
        )
    retention = getattr(st, "retention", None)  # inspector.storage.retention.StorageRetention
    if retention is not None:
        u = retention.usage()
        yield GaugeMetricFamily("inspector_db_bytes", "Size of the database on disk", value=u["db_bytes"])
        yield GaugeMetricFamily("inspector_disk_budget_used_ratio",
                                "Database and NG archive against [storage] disk_budget_gb", value=u["budget_used"])


def _health_metrics(h: Any) -> Iterator[Metric]:
    """The health verdict and its window (`inspector.ops.health.Health`)."""
    yield GaugeMetricFamily("inspector_alarm", "1 while the station's health is not OK", value=float(not h["ok"]))
    yield GaugeMetricFamily(
        "inspector_health_level", "0 OK, 1 DEGRADED, 2 ALARM", value=float(HealthLevel[h["level"]])
    )
    w = h["window"]
    yield GaugeMetricFamily(
        "inspector_drop_rate", "Share of received frames dropped over the health window", value=w["drop_rate"]
    )
    yield GaugeMetricFamily(
        "inspector_window_latency_p99_seconds", "p99 latency over the health window",
        value=w["latency_ms"]["p99"] / 1000,
    )


def _part_metrics(rep: dict[str, Any]) -> Iterator[Metric]:
    """The counters of a triggered line (its report's ``parts`` section)."""
    yield CounterMetricFamily("inspector_parts_triggered", "Parts triggered", value=rep["triggered"])
    parts = CounterMetricFamily("inspector_parts", "Part verdicts (incomplete: NG, an image missing)", labels=["verdict"])
    parts.add_metric(["OK"], rep["ok"])
    parts.add_metric(["NG"], rep["ng"] - rep["incomplete"])
    parts.add_metric(["incomplete"], rep["incomplete"])
    yield parts
    yield CounterMetricFamily("inspector_part_late_frames", "Frames after their part's verdict", value=rep["late_frames"])
    yield CounterMetricFamily("inspector_missed_triggers", "Triggers that gave no frame", value=rep["missed_triggers"])
    yield CounterMetricFamily("inspector_trigger_overruns", "Triggers during an exposure", value=rep["trigger_overruns"])
    yield GaugeMetricFamily("inspector_part_budget_seconds", "Trigger-to-verdict budget", value=rep["budget_ms"] / 1000)


def _mqtt_metrics(m: dict[str, float]) -> Iterator[Metric]:
    """The MQTT publisher's outbox (`inspector.plant.mqtt.MqttPublisher.stats`)."""
    yield GaugeMetricFamily("inspector_mqtt_connected", "1 while connected to the MQTT broker", value=m["connected"])
    yield CounterMetricFamily("inspector_mqtt_published", "Part messages the broker acknowledged", value=m["published"])
    yield CounterMetricFamily("inspector_mqtt_dropped", "Parts dropped: the MQTT outbox was full", value=m["dropped"])
    yield GaugeMetricFamily("inspector_mqtt_outbox_depth", "Parts not yet acknowledged by the broker",
                            value=m["outbox_depth"])
    yield GaugeMetricFamily("inspector_mqtt_outbox_peak", "Deepest the MQTT outbox was in this run",
                            value=m["outbox_peak"])
    yield CounterMetricFamily("inspector_mqtt_disconnects", "Connections to the MQTT broker lost",
                              value=m["disconnects"])
