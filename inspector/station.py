"""`Station`: the one composition root. Builds everything in named steps, stops it in reverse.

`Station.__init__` reads as its table of contents: model (card checked, one backend per device,
warmed) -> storage -> cameras, the triggered line and the PLC links -> part banks -> inference
workers -> recipes -> watchdog -> metrics. Anything that can fail because of the user's input
fails here, before a camera streams. `start` starts sinks, workers, cameras and line; `stop`
undoes it in reverse.

Every camera state transition is logged (by the camera), counted (`Station.transitions`,
metrics), stored (``camera_events`` through the DB writer) and re-emitted as
`StationEvents.camera_state_changed`. `Station.health` condenses cameras, database
and archive into one verdict for the status line, the report and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from camera.features import settings_digest
from camera.protocol import Camera, CameraState
from inspector.anomaly.station import StationAnomaly, detector_rules
from inspector.config import StationConfig
from inspector.ops.health import Health, assess
from inspector.ops.report import redact, run_report, status_line
from inspector.ops.run_stats import RunStats
from inspector.ops.watchdog import CameraWatchdog
from inspector.pipeline.backends import create_backend
from inspector.pipeline.backends.base import Backend
from inspector.pipeline.backends.precision_choice import measure_pending
from inspector.pipeline.model_repo import ModelCard, load_card
from inspector.pipeline.preprocess import share_the_cores_with_the_runtime
from inspector.pipeline.results import InspectionResult, PartResult, Provenance
from inspector.pipeline.scheduler import CameraLane, InferenceWorker, shard_cameras
from inspector.pipeline.sinks import SinkFanOut
from inspector.station_cameras import StationCameras, prerender_banks
from inspector.station_events import StationError, StationEvents

if TYPE_CHECKING:  # the switch is imported where recipes are configured
    from inspector.recipes.switch import RecipeSelection

__all__ = ["Station", "StationError", "StationEvents"]

log = logging.getLogger(__name__)


class Station:
    """A running inspection station.

    Args:
        config: The station's configuration.
        db_url: Overrides ``config.storage.db_url`` ("none" disables the database).
        backend: Overrides ``config.model.backend``.
        archive: Save NG images.
        metrics_port: Overrides ``config.metrics.port`` (serve Prometheus metrics there).
        progress: Told each stage of the build in a few words ("warming up"), on the
            constructing thread (a start-up window shows them).
    """

    def __init__(
        self,
        config: StationConfig,
        *,
        db_url: str | None = None,
        backend: str | None = None,
        archive: bool = True,
        metrics_port: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        say = progress if progress is not None else _no_progress
        self.config = config
        self.events = StationEvents()
        self.stats = RunStats()
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._stopped = threading.Event()
        #: (camera id, new state) -> how many transitions into that state
        self.transitions: Counter[tuple[str, str]] = Counter()
        self._transitions_lock = threading.Lock()  # cameras and the watchdog report from their threads
        self.metrics: Any = None
        #: frames to the database and the archive; parts stored first, then to the PLC links and the GUI
        self.fan_out = SinkFanOut(on_published=self.events.part_ready.emit)
        self.backend_name = backend or config.model.backend
        self._load_model(say)
        self._open_storage(db_url, archive, say)
        self._open_cameras(say)
        prerender_banks(self.cameras, say)
        self._connect_cameras()
        self._build_workers()
        self._setup_recipes()
        self.watchdog = CameraWatchdog(self.cameras, window_s=config.health.window_s)
        self._serve_metrics(metrics_port if metrics_port is not None else config.metrics.port)

    # ------------------------------------------------------------------ building, in order
    def _load_model(self, say: Callable[[str], None]) -> None:
        say(f"loading model {self.config.model.name}")
        self.card: ModelCard = load_card(self.config.model.name)
        say(f"compiling the model for {', '.join(self.config.model.devices)}")
        self.backends: list[Backend] = self.make_backends(self.card)
        self.anomaly_models = StationAnomaly()  # each model loaded once; recipes' too; heat maps of results
        self.anomaly = self.anomaly_models.load_cameras(self.config.cameras, say)  # sha256s checked before start
        if any(be.device == "CPU" for be in self.backends):  # host letterbox beside the runtime
            share_the_cores_with_the_runtime()
        say("warming up")  # not beside the bank load: a refused config's exit aborts a warm-up in OpenVINO
        for be in self.backends:
            be.warmup()

    def make_backends(self, card: ModelCard) -> list[Backend]:
        """One backend per configured device for ``card`` (the station's model, or a recipe's)."""
        mc, sc = self.config.model, self.config.scheduler
        batch = -(-len(self.config.cameras) // len(mc.devices))  # a saturated worker's batch: `auto` is timed at it
        return [
            create_backend(self.backend_name, card, max_batch=sc.max_batch, device=dev, threads=mc.threads,
                           precision=mc.precision, depth=sc.in_flight, streams=mc.streams, nms_iou=mc.iou_threshold,
                           batch=min(batch, sc.max_batch))
            for dev in mc.devices
        ]

    def _open_storage(self, db_url: str | None, archive: bool, say: Callable[[str], None]) -> None:
        self.db_writer: Any = None
        self.engine: Any = None  # the database's, when there is one
        self.archive: Any = None
        self.retention: Any = None
        url = db_url if db_url is not None else self.config.storage.db_url
        self.db_url: str | None = None
        if url == "none":
            return
        say("opening the database")
        from sqlalchemy.exc import OperationalError

        from inspector.access.card_audit import audit_card_change
        from inspector.storage.station_storage import open_station_storage

        storage = open_station_storage(url, self.config.storage, archive=archive)
        self.db_url, self.engine, self.db_writer = storage.url, storage.engine, storage.writer
        self.archive, self.retention = storage.archive, storage.retention
        if self.archive is not None:  # NG results of anomaly models keep a heat map beside the image
            self.archive.heat_map_for = self.anomaly_models.heat_map
        try:
            audit_card_change(self.engine, self.card)
        except OperationalError as exc:  # the disk filled after the spool was reserved: one line, not a traceback
            storage.writer.on_stopped()
            raise StationError(f"database {redact(storage.url)}: cannot write the start's audit row "
                               f"({exc.orig}); free disk space there") from exc
        storage.attach(self.fan_out)

    def _open_cameras(self, say: Callable[[str], None]) -> None:
        """The cameras, the triggered line over them and the part links (closed again if one fails)."""
        from inspector.plc.modbus_server import PlcError

        cfgs = self.config.cameras
        self._camera_set = StationCameras(faces=len(cfgs) if self.config.line.mode == "triggered" else 0)
        self.cameras: dict[str, Camera] = self._camera_set.cameras
        self.line: Any = None  # inspector.line.runner.Line on a triggered line
        try:
            for face, cfg in enumerate(cfgs):
                say(f"camera {cfg.id}: opening ({face + 1} of {len(cfgs)})")
                try:
                    self._camera_set.open(cfg, face)
                except (ValueError, MemoryError) as exc:  # a bad replay file, a bank too big: one line
                    msg = str(exc)
                    raise StationError(msg if msg.startswith(f"camera {cfg.id}") else f"camera {cfg.id}: {msg}") from None
            if self.config.line.mode == "triggered":
                self.line = self._make_line()
            self._open_links()
        except (PlcError, ValueError) as exc:  # a PLC link without a database, MQTT's password_env or TLS files
            self._camera_set.close()
            raise StationError(str(exc)) from None
        except Exception:
            self._camera_set.close()
            raise

    def _open_links(self) -> None:
        """The PLC links and the plant's MQTT publisher, each a part sink (None where not configured)."""
        from inspector.plant.mqtt import make_mqtt
        from inspector.plc.links import make_modbus, make_opcua

        self.plc_modbus: Any = make_modbus(self, self.engine)
        self.plc_opcua: Any = make_opcua(self, self.engine)
        self.mqtt: Any = make_mqtt(self.config, self)
        if self.mqtt is not None:
            self.events.paused_changed.connect(lambda _paused: self.mqtt.state_changed())
        for link in (self.plc_modbus, self.plc_opcua, self.mqtt):
            if link is not None:
                self.fan_out.add_part_sink(link)

    def _make_line(self) -> Any:
        from inspector.line.build import build_line
        from inspector.line.runner import LineError

        try:
            return build_line(self.config, self.cameras, self._deliver_part, self._results_not_durable)
        except LineError as exc:
            raise StationError(str(exc)) from None

    def _connect_cameras(self) -> None:  # each camera's transitions to the station, its row in the database
        for cam in self.cameras.values():
            cam.events.state_changed.connect(self._on_camera_state)
            if self.db_writer is not None:
                i = cam.info
                self.db_writer.register_camera(i.id, kind=i.kind, vendor=i.vendor, model=i.model, serial=i.serial)

    def _build_workers(self) -> None:
        """One lane per camera, the cameras sharded over one inference worker per backend."""
        cfg = self.config
        self.lanes = {c.id: self._make_lane(c) for c in cfg.cameras}
        pinned = {c.id: c.device for c in cfg.cameras if c.device is not None}
        shards = shard_cameras([c.id for c in cfg.cameras], len(self.backends), pinned)
        self.workers = [
            InferenceWorker(i, be, [self.lanes[c] for c in shard], self._fan_out,
                            max_wait_s=cfg.scheduler.max_wait_ms / 1000, iou_threshold=cfg.model.iou_threshold,
                            in_flight=cfg.scheduler.in_flight)
            for i, (be, shard) in enumerate(zip(self.backends, shards))
            if shard
        ]

    def _make_lane(self, cfg: Any) -> CameraLane:
        rules = detector_rules(cfg.verdict.rules(self.card.threshold, self.card.class_thresholds), cfg.detector,
                               self.card.classes)
        return CameraLane(
            camera_id=cfg.id, pool=self.cameras[cfg.id].pool, rules=rules,
            provenance=self.provenance_for(cfg.id, rules, self.card), tiling=cfg.tiling.mode == "auto",
            min_defect_px=cfg.tiling.min_defect_px, min_resolvable_px=cfg.tiling.min_resolvable_px,
            tile_overlap=cfg.tiling.overlap, anomaly=self.anomaly.get(cfg.id),
        )

    def _setup_recipes(self) -> None:
        from inspector.config import ConfigError
        from inspector.quality.gate import GateRefused
        from inspector.recipes.switch import RecipeError, RecipeSwitch

        self.recipes: Any = None
        if not self.config.recipes.dir:
            return
        try:
            self.recipes = RecipeSwitch(self, Path(self.config.recipes.dir).expanduser())
            if self.config.recipes.select is not None:
                self.recipes.select(self.config.recipes.select)
        except (ConfigError, RecipeError, GateRefused) as exc:
            self._camera_set.close()
            raise StationError(str(exc)) from None

    def _serve_metrics(self, port: int | None) -> None:
        from inspector.ops.metrics import StationMetrics

        if port is None:
            return
        self.metrics, bind = StationMetrics(self), self.config.metrics.bind
        try:
            self.metrics.serve(port, bind)
        except OSError as exc:
            self.metrics = None
            self._camera_set.close()
            raise StationError(f"metrics: cannot serve on {bind}:{port} ({exc.strerror or exc}); "
                               "choose another [metrics] port") from None

    # ------------------------------------------------------------------ commands
    def select_recipe(self, key: int | str, *, override_gate_by: str | None = None, reason: str = "") -> str:
        """Switch to a product recipe at the next part boundary; returns its label ("housing-a v3").

        As `switch_recipe`, less the gate note (the PLC's and the tests' form).
        """
        return str(self.switch_recipe(key, override_gate_by=override_gate_by, reason=reason).label)

    def switch_recipe(self, key: int | str, *, override_gate_by: str | None = None,
                      reason: str = "") -> RecipeSelection:
        """Switch to a product recipe at the next part boundary; returns its `RecipeSelection` (label, gate note).

        ``override_gate_by``: an admin (checked by `StationControl`) selecting a detector without a passing
        promotion gate, for ``reason`` (see `RecipeSwitch.select`).

        Raises:
            GateRefused: Its detector has no passing promotion gate (`inspector.quality.gate.GateRefused`,
                typed: the control API offers the admin's override).
            StationError: No recipes configured, or this one cannot be selected.
        """
        from inspector.recipes.switch import RecipeError

        if self.recipes is None:
            raise StationError("select_recipe: this station has no recipes ([recipes] dir)")
        try:
            return self.recipes.select(key, override_gate_by=override_gate_by, reason=reason)
        except RecipeError as exc:
            raise StationError(str(exc)) from None

    @property
    def recipe_number(self) -> int:
        return int(self.recipes.number) if self.recipes is not None else 0

    def take_stats(self) -> RunStats:
        """The statistics so far, and a fresh start for them (a benchmark's windows)."""
        stats, self.stats = self.stats, RunStats()
        return stats

    def adopt_model(self, card: ModelCard, backends: list[Backend]) -> None:
        """A product recipe's model becomes the station's own (`RecipeSwitch`, once the old one retired)."""
        self.card, self.backends = card, backends

    def provenance_for(self, camera_id: str, rules: Any, card: ModelCard) -> Provenance:
        """The provenance a camera's results get under ``card`` and ``rules`` (a recipe's)."""
        try:
            digest = settings_digest(self.cameras[camera_id].features)
        except Exception:  # noqa: BLE001 - a device that cannot be read yet: digest stays empty
            digest = ""
        return Provenance(card.name, card.sha256, self.backend_name, rules.as_pairs(), digest, card.card_sha256)

    def refresh_provenance(self, camera_id: str) -> None:
        """Recompute a camera's settings digest (after a settings change)."""
        lane = self.lanes[camera_id]
        lane.provenance = self.provenance_for(camera_id, lane.rules, self.card)

    def trigger_part(self, part_id: str | None = None) -> str:
        """Open a part now and trigger every camera (a PLC command, `StationControl.trigger_part`)."""
        if self.line is None:
            raise StationError("trigger_part: this station is free-running ([line] mode is not triggered)")
        if self.paused:  # nobody inspects: the part would be scrapped NG incomplete at its deadline
            raise StationError("trigger_part: the station is stopped (paused); no part is opened")
        return str(self.line.trigger_part(part_id))

    def inject_fault(self, camera_id: str, fault: str, value: float | None = None) -> None:
        """Make a simulated camera misbehave (`StationCameras.inject_fault`).

        Raises:
            StationError: No such camera, or not a simulated one.
        """
        try:
            self._camera_set.inject_fault(camera_id, fault, value)
        except ValueError as exc:
            raise StationError(f"--inject: {exc}") from None

    def pause(self, paused: bool) -> None:
        """Pause or resume inspection (cameras keep streaming; frames are dropped, counted).

        On a triggered line the belt holds too: no part enters while nobody inspects it.
        """
        if self.line is not None:
            self.line.pause(paused)
        for w in self.workers:
            w.pause(paused)
        self.events.paused_changed.emit(paused)

    @property
    def paused(self) -> bool:
        return any(w.paused for w in self.workers)

    # ------------------------------------------------------------------ running
    def _fan_out(self, results: list[InspectionResult]) -> None:
        """A worker's results: on a triggered line tied to their parts first, then to the frame
        sinks; the parts they complete follow, in trigger order (`_deliver_part`)."""
        if self.line is not None:
            self.line.tracker.add_frames(results, self._hand_on_frames)
        else:
            self._hand_on_frames(results)

    def _hand_on_frames(self, results: list[InspectionResult]) -> None:
        self.stats.add(results)
        if self.metrics is not None:
            self.metrics.observe(results)
        self.fan_out.frames(results)
        ready = self.events.result_ready
        if len(ready):  # a headless station has no listener; emitting to none still cost ~3 us a result
            for r in results:
                ready.emit(r)

    def _deliver_part(self, part: PartResult) -> None:
        """The ordered part stream: each decided part, in trigger order (the tracker's one callback)."""
        if self.line is not None:
            self.line.part_decided(part)  # the reject pulse first: it is the one with a deadline
        if self.metrics is not None:
            self.metrics.observe_part(part)
        self.fan_out.part(part)  # stored, then to the PLC links and the GUI once durable

    def _results_not_durable(self) -> str | None:
        """Why a part's results could not be kept (then the line rejects it: fail safe), or None."""
        return self.db_writer.not_durable_reason() if self.db_writer is not None else None

    def _on_camera_state(self, camera_id: str, old: CameraState, new: CameraState) -> None:
        # runs on the thread that made the transition (camera, watchdog, caller): no blocking
        with self._transitions_lock:
            self.transitions[(camera_id, new.value)] += 1
        if self.db_writer is not None:
            cam = self.cameras.get(camera_id)
            reason = cam.state_reason if cam is not None else ""
            self.db_writer.record_camera_event(camera_id, old.value, new.value, reason=reason)
        self.events.camera_state_changed.emit(camera_id, old, new)

    def start(self) -> None:
        """Start sinks, workers, then cameras (so no frame waits for a consumer), then the line."""
        from inspector.plc.modbus_server import PlcError

        try:
            self.fan_out.start()
        except PlcError as exc:
            self.stop()
            raise StationError(str(exc)) from None
        for w in self.workers:
            w.start()
        self.started_at = time.monotonic()
        failures = []
        for cam in self.cameras.values():
            try:
                cam.start()
            except Exception as exc:  # noqa: BLE001 - one camera's driver failing must not stop the others
                failures.append(f"{cam.info.id}: {exc}")
                log.error("camera %s failed to start: %s", cam.info.id, exc)
        if failures and len(failures) == len(self.cameras):
            self.stop()
            raise StationError("no camera could start: " + "; ".join(failures))
        if self.line is not None:
            self.line.start()
        self.watchdog.start()
        measure_pending()  # `auto` on a CPU not measured yet: timed in the background, run from the next start

    def stop(self) -> None:
        """Line, watchdog, cameras, workers, sinks that hold frames, then the database writer; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.line is not None:  # no new parts; the ones on the belt get their verdicts first
            self.line.stop_triggers()
            self.line.finish()
        self.stopped_at = time.monotonic()
        self.watchdog.stop()
        # ask every camera first: their threads wind down in parallel, a hung one costs its timeout once
        for cam in self.cameras.values():
            cam.request_stop()
        if self.workers and not self.paused:  # what arrived before the stop is inspected (bounded)
            self._camera_set.wait_inspected(timeout=2.0)
        for cam in self.cameras.values():
            try:
                cam.stop()
            except Exception as exc:  # noqa: BLE001 - a driver failing at stop: the others still stop
                log.warning("camera %s: stop failed: %s", cam.info.id, exc)
        for w in self.workers:
            w.stop()
        # the store hands on its last parts, then frame holders give the buffers back before cameras close
        self.fan_out.stop(timeout=30)
        self._camera_set.close()
        self.fan_out.stop_store(timeout=30)  # last, so it also stores the cameras' final transitions
        for be in self.backends:
            be.close()
        if self.metrics is not None:
            self.metrics.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ reporting
    @property
    def running(self) -> bool:
        return self.started_at is not None and not self._stopped.is_set()

    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.stopped_at if self.stopped_at is not None else time.monotonic()
        return max(1e-9, end - self.started_at)

    def status_line(self) -> str:
        """One line: totals, then per camera fps/drops/NG (`inspector.ops.report.status_line`)."""
        return status_line(self)

    def health(self) -> Health:
        """One verdict over cameras, database and archive (see `inspector.ops.health.assess`)."""
        return assess(self)

    def report(self) -> dict[str, Any]:
        """The run report (``--report FILE``; `inspector.ops.report.RunReport`)."""
        return run_report(self).to_dict()


def _no_progress(_text: str) -> None:
    """A build nobody watches."""
