"""`Station`: the one composition root. Builds everything in order, stops it in reverse.

Order of construction: model card (checked) -> backends (one per device) -> database
(migrated) and sinks -> cameras and their pools -> inference workers -> watchdog ->
metrics endpoint. Anything that can fail because of the user's input fails here,
before a camera streams.

Every camera state transition is logged (by the camera), counted (`Station.transitions`,
metrics), stored (``camera_events`` through the DB writer) and re-emitted as
`StationEvents.camera_state_changed`. `Station.health` condenses cameras, database
and archive into one verdict for the status line, the report and the metrics.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from psygnal import Signal

from camera.features import settings_digest
from camera.protocol import Camera, CameraState
from inspector.pipeline.backends import create_backend
from inspector.pipeline.backends.base import Backend
from inspector.config import (
    AravisCameraConfig,
    GenTLCameraConfig,
    ReplayCameraConfig,
    SimulatedCameraConfig,
    StationConfig,
)
from inspector.pipeline.model_repo import ModelCard, load_card
from inspector.pipeline.preprocess import share_the_cores_with_the_runtime
from inspector.pipeline.results import InspectionResult, PartResult, Provenance
from inspector.ops.run_stats import RunStats, percentiles
from inspector.pipeline.scheduler import CameraLane, InferenceWorker, shard_cameras
from inspector.pipeline.sinks import SinkFanOut
from inspector.ops.watchdog import CameraWatchdog

log = logging.getLogger(__name__)


class StationError(RuntimeError):
    """The station cannot be built or started (one-line reason)."""


class StationEvents:
    """Engine events; the GUI adapts these to Qt signals."""

    result_ready = Signal(object)  # InspectionResult
    part_ready = Signal(object)  # PartResult (triggered lines)
    camera_state_changed = Signal(str, object, object)  # camera id, old, new CameraState
    paused_changed = Signal(bool)


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
        self._gentl_system: Any = None
        #: (camera id, new state) -> how many transitions into that state
        self.transitions: collections.Counter[tuple[str, str]] = collections.Counter()
        self._transitions_lock = threading.Lock()  # cameras and the watchdog report from their threads
        self.metrics: Any = None
        self.backend_name = backend or config.model.backend
        say(f"loading model {config.model.name}")
        self.card: ModelCard = load_card(config.model.name)
        say(f"compiling the model for {', '.join(config.model.devices)}")
        self.backends: list[Backend] = self.make_backends(self.card)
        if any(be.device == "CPU" for be in self.backends):  # host letterbox beside the runtime
            share_the_cores_with_the_runtime()
        # warmed here, not beside the bank load: a warm-up thread still inside OpenVINO when a later
        # step refuses the config and the process exits aborts it ("terminate called ..."); the
        # overlap saved nothing measurable (median 1.74 s vs 1.83 s)
        say("warming up")
        for be in self.backends:
            be.warmup()
        #: frames to the database and the archive; parts stored first, then to the PLC links and the GUI
        self.fan_out = SinkFanOut(on_published=self.events.part_ready.emit)
        self.db_writer: Any = None
        self.engine: Any = None  # the database's, when there is one
        self.archive: Any = None
        self.db_url = self._setup_storage(db_url, archive, say)
        self.cameras: dict[str, Camera] = {}
        self.line: Any = None  # inspector.line.runner.Line on a triggered line
        try:
            for face, cam_cfg in enumerate(config.cameras):
                say(f"camera {cam_cfg.id}: opening ({face + 1} of {len(config.cameras)})")
                try:
                    self.cameras[cam_cfg.id] = self._make_camera(cam_cfg, face)
                except (ValueError, MemoryError) as exc:  # a bad replay file, a bank too big: one line
                    msg = str(exc)
                    raise StationError(msg if msg.startswith(f"camera {cam_cfg.id}") else f"camera {cam_cfg.id}: {msg}") from None
            if config.line.mode == "triggered":
                self.line = self._make_line()
            self.plc_modbus: Any = self._make_modbus()
            self.plc_opcua: Any = self._make_opcua()
        except Exception:
            self._close_cameras()
            raise
        self._prerender_simulated(say)
        for cam in self.cameras.values():
            cam.events.state_changed.connect(self._on_camera_state)
            if self.db_writer is not None:
                i = cam.info
                self.db_writer.register_camera(i.id, kind=i.kind, vendor=i.vendor, model=i.model, serial=i.serial)
        self.lanes = {c.id: self._make_lane(c) for c in config.cameras}
        pinned = {c.id: c.device for c in config.cameras if c.device is not None}
        shards = shard_cameras([c.id for c in config.cameras], len(self.backends), pinned)
        self.workers = [
            InferenceWorker(
                i,
                be,
                [self.lanes[c] for c in shard],
                self._fan_out,
                max_wait_s=config.scheduler.max_wait_ms / 1000,
                iou_threshold=config.model.iou_threshold,
                in_flight=config.scheduler.in_flight,
            )
            for i, (be, shard) in enumerate(zip(self.backends, shards))
            if shard
        ]
        self.recipes: Any = None
        if config.recipes.dir:
            self._setup_recipes()
        self.watchdog = CameraWatchdog(self.cameras, window_s=config.health.window_s)
        port = metrics_port if metrics_port is not None else config.metrics.port
        if port is not None:
            self._serve_metrics(port)

    def make_backends(self, card: ModelCard) -> list[Backend]:
        """One backend per configured device for ``card`` (the station's model, or a recipe's)."""
        mc, sc = self.config.model, self.config.scheduler
        return [
            create_backend(self.backend_name, card, max_batch=sc.max_batch, device=dev, threads=mc.threads,
                           precision=mc.precision, depth=sc.in_flight, streams=mc.streams, nms_iou=mc.iou_threshold)
            for dev in mc.devices
        ]

    def _setup_recipes(self) -> None:
        from inspector.config import ConfigError
        from inspector.recipes.switch import RecipeError, RecipeSwitch

        try:
            self.recipes = RecipeSwitch(self, Path(self.config.recipes.dir).expanduser())
            if self.config.recipes.select is not None:
                self.recipes.select(self.config.recipes.select)
        except (ConfigError, RecipeError) as exc:
            self._close_cameras()
            raise StationError(str(exc)) from None

    def select_recipe(self, key: int | str) -> str:
        """Switch to a product recipe at the next part boundary; returns its label ("housing-a v3").

        Raises:
            StationError: No recipes configured, or this one cannot be selected.
        """
        from inspector.recipes.switch import RecipeError

        if self.recipes is None:
            raise StationError("select_recipe: this station has no recipes ([recipes] dir)")
        try:
            return str(self.recipes.select(key).label)
        except RecipeError as exc:
            raise StationError(str(exc)) from None

    @property
    def recipe_number(self) -> int:
        return int(self.recipes.number) if self.recipes is not None else 0

    def config_for(self, camera_id: str) -> Any:
        return next(c for c in self.config.cameras if c.id == camera_id)

    def provenance_for(self, camera_id: str, rules: Any, card: ModelCard) -> Provenance:
        """The provenance a camera's results get under ``card`` and ``rules`` (a recipe's)."""
        try:
            digest = settings_digest(self.cameras[camera_id].features)
        except Exception:  # a device that cannot be read yet: digest stays empty
            digest = ""
        return Provenance(card.name, card.sha256, self.backend_name, rules.as_pairs(), digest, card.card_sha256)

    def _serve_metrics(self, port: int) -> None:
        from inspector.ops.metrics import StationMetrics

        self.metrics = StationMetrics(self)
        try:
            self.metrics.serve(port, self.config.metrics.bind)
        except OSError as exc:
            self.metrics = None
            self._close_cameras()
            raise StationError(
                f"metrics: cannot serve on {self.config.metrics.bind}:{port} ({exc.strerror or exc}); "
                "choose another [metrics] port"
            ) from None

    # ------------------------------------------------------------------ building
    def _setup_storage(self, db_url: str | None, archive: bool, say: Callable[[str], None]) -> str | None:
        url = db_url if db_url is not None else self.config.storage.db_url
        if url == "none":
            return None
        say("opening the database")
        from inspector.archive import NgArchive
        from inspector.storage.db import default_db_url, migrate, open_database, sqlite_path
        from inspector.storage.writer import DbWriter

        url = url or default_db_url()
        engine = open_database(url, durable=True)
        migrate(engine)
        self.engine = engine
        audit_card_change(engine, self.card)
        st = self.config.storage
        if archive:
            base = Path(st.archive_dir) if st.archive_dir else _archive_dir_for(sqlite_path(engine))
            self.archive = NgArchive(
                base,
                fmt=st.archive_format,
                max_age_days=st.archive_max_age_days,
                max_total_bytes=int(st.archive_max_gb * 1e9),
                min_free_bytes=int(st.archive_min_free_mb * 1e6),
            )
            self.fan_out.add_frame_sink(self.archive)
        self.db_writer = DbWriter(
            engine,
            image_path_for=self.archive.path_for if self.archive else None,
            spool_reserve_bytes=int(st.spool_reserve_mb * 2**20),
            linger_s=st.commit_interval_ms / 1000.0,
        )
        self.fan_out.add_store(self.db_writer)
        from inspector.storage.retention import StorageRetention  # database and archive in one disk budget

        self.retention = StorageRetention.for_station(engine, st, self.archive)
        self.fan_out.add_frame_sink(self.retention)
        return url

    def _make_line(self) -> Any:
        from inspector.line.part_verdict import CameraGroup, PartRule
        from inspector.line.runner import Line, LineError

        lc = self.config.line
        rule = PartRule(tuple(CameraGroup(tuple(g.cameras), g.k) for g in lc.groups))
        conveyor = (
            {"parts_per_min": lc.parts_per_min, "jitter": lc.jitter, "belt_mm_s": lc.belt_mm_s}
            if lc.trigger == "conveyor" else None
        )
        try:
            return Line(
                self.config.name,
                self.cameras,
                lc.budget_ms,
                self._deliver_part,
                rule=rule,
                trigger_sources={c.id: c.trigger_source for c in self.config.cameras},
                positions_mm={c.id: c.position_mm for c in self.config.cameras},
                conveyor=conveyor,
                fail_safe=self._results_not_durable,
                reject=({"mm": lc.reject_mm, "camera": lc.reject_camera or self.config.cameras[-1].id,
                         "line": lc.reject_line, "pulse_ms": lc.reject_pulse_ms} if lc.reject_mm is not None else None),
            )
        except LineError as exc:
            raise StationError(str(exc)) from None

    def _results_not_durable(self) -> str | None:
        """Why a part's results could not be kept (then the line rejects it: fail safe), or None."""
        w = self.db_writer
        if w is not None and not w.durable:
            return "results cannot be stored (database and spool full)" if w.lost == 0 else \
                f"{w.lost} results lost (no room to store them)"
        return None

    def _plc_commands(self, name: str, detail: str) -> Any:
        """What a PLC link may do, through an audited service session when there is a database."""
        from inspector.plc.commands import StationCommands

        control = None
        engine = self.engine
        if engine is not None:
            from inspector.access.control import StationControl

            control = StationControl.service(self, engine, name, detail=detail)
        return StationCommands(self, control)

    def _make_modbus(self) -> Any:
        """The Modbus TCP server, when ``[plc] modbus`` is set (a sink of part results)."""
        address = self.config.plc.modbus_address()
        if address is None:
            return None
        from inspector.plc.modbus_server import ModbusPlc

        plc = ModbusPlc(self._plc_commands("plc-modbus", f"modbus {address[0]}:{address[1]}"),
                        host=address[0], port=address[1], fifo_depth=self.config.plc.fifo_depth,
                        cameras=list(self.cameras), **self.config.plc.modbus_options())
        self.fan_out.add_part_sink(plc)
        return plc

    def _make_opcua(self) -> Any:
        """The OPC UA server (OPC 40100-1), when ``[plc] opcua`` is set (a sink of part results)."""
        address = self.config.plc.opcua_address()
        if address is None:
            return None
        from inspector.plc.opcua_server import OpcUaPlc

        users = audit = None
        engine = self.engine
        if engine is not None:
            from inspector.access.audit import AuditLog
            from inspector.access.users import UserStore

            users, audit = UserStore(engine), AuditLog(engine)
        plc = OpcUaPlc(self._plc_commands("plc-opcua", f"opcua {address[0]}:{address[1]}"), host=address[0],
                       port=address[1], users=users, audit=audit, name=self.config.name)
        self.fan_out.add_part_sink(plc)
        return plc

    def trigger_part(self, part_id: str | None = None) -> str:
        """Open a part now and trigger every camera (a PLC command, `StationControl.trigger_part`)."""
        if self.line is None:
            raise StationError("trigger_part: this station is free-running ([line] mode is not triggered)")
        return str(self.line.trigger_part(part_id))

    def inject_fault(self, camera_id: str, fault: str, value: float | None = None) -> None:
        """Make a simulated camera misbehave: ``missed_trigger`` at a rate, the others for seconds.

        Raises:
            StationError: No such camera, or not a simulated one.
        """
        cam = self.cameras.get(camera_id)
        if cam is None:
            raise StationError(f"--inject: no camera {camera_id!r} (cameras: {', '.join(self.cameras)})")
        from camera.simulated import SimulatedLineCamera

        if not isinstance(cam, SimulatedLineCamera):
            raise StationError(f"--inject: camera {camera_id} is not simulated; faults go into simulated cameras")
        if fault == "missed_trigger":
            cam.missed_trigger_rate = float(value or 0.0)
        else:
            cam.faults.inject(fault, 10.0 if value is None else value)
        log.warning("camera %s: injected %s%s", camera_id, fault, "" if value is None else f" {value:g}")

    def _make_camera(self, cfg: Any, face: int = 0) -> Camera:
        line_faces = len(self.config.cameras) if self.config.line.mode == "triggered" else 0
        if isinstance(cfg, SimulatedCameraConfig):
            from camera.simulated import SimulatedLineCamera

            return SimulatedLineCamera(
                cfg.id,
                fps=cfg.fps,
                width=cfg.width,
                height=cfg.height,
                mono=cfg.mono,
                seed=cfg.seed,
                bank_size=cfg.bank_size,
                ok_share=cfg.ok_share,
                pool_slots=cfg.pool_slots,
                face=face,
                faces=line_faces,
            )
        if isinstance(cfg, AravisCameraConfig):
            from camera.aravis import AravisCamera

            return AravisCamera(cfg.id, device_id=cfg.device_id, pool_slots=cfg.pool_slots, fps=cfg.fps,
                                settings=dict(cfg.settings))
        if isinstance(cfg, ReplayCameraConfig):
            from camera.replay import ReplayCamera

            return ReplayCamera(cfg.id, cfg.source, fps=cfg.fps, loop=cfg.loop, pool_slots=cfg.pool_slots)
        if isinstance(cfg, GenTLCameraConfig):
            from camera.gentl import GenTLCamera
            from camera.gentl_system import GenTLSystem

            if self._gentl_system is None:
                self._gentl_system = GenTLSystem()
                self._gentl_system.__enter__()
            return GenTLCamera(
                cfg.id,
                self._gentl_system,
                serial=cfg.serial,
                device_id=cfg.device_id,
                pool_slots=cfg.pool_slots,
                fps=cfg.fps or None,
                settings=dict(cfg.settings),
            )
        raise StationError(f"camera {cfg.id}: unknown kind")  # pragma: no cover - config forbids it

    def _make_lane(self, cfg: Any) -> CameraLane:
        cam = self.cameras[cfg.id]
        rules = cfg.verdict.rules(self.card.threshold)
        return CameraLane(
            camera_id=cfg.id,
            pool=cam.pool,
            rules=rules,
            provenance=self.provenance_for(cfg.id, rules, self.card),
            tiling=cfg.tiling.mode == "auto",
            min_defect_px=cfg.tiling.min_defect_px,
            min_resolvable_px=cfg.tiling.min_resolvable_px,
            tile_overlap=cfg.tiling.overlap,
        )

    def refresh_provenance(self, camera_id: str) -> None:
        """Recompute a camera's settings digest (after a settings change)."""
        lane = self.lanes[camera_id]
        lane.provenance = self.provenance_for(camera_id, lane.rules, self.card)

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
        for r in results:
            self.events.result_ready.emit(r)

    def _deliver_part(self, part: PartResult) -> None:
        """The ordered part stream: each decided part, in trigger order (the tracker's one callback)."""
        if self.line is not None:
            self.line.part_decided(part)  # the reject pulse first: it is the one with a deadline
        if self.metrics is not None:
            self.metrics.observe_part(part)
        self.fan_out.part(part)  # stored, then to the PLC links and the GUI once durable

    def _on_camera_state(self, camera_id: str, old: CameraState, new: CameraState) -> None:
        # runs on the thread that made the transition (camera, watchdog, caller): no blocking
        with self._transitions_lock:
            self.transitions[(camera_id, new.value)] += 1
        if self.db_writer is not None:
            cam = self.cameras.get(camera_id)
            reason = cam.state_reason if cam is not None else ""
            self.db_writer.record_camera_event(camera_id, old.value, new.value, reason=reason)
        self.events.camera_state_changed.emit(camera_id, old, new)

    def _prerender_simulated(self, say: Callable[[str], None]) -> None:
        """Render the simulated cameras' part banks now, on all cores.

        Rendered on first use instead, the first pass through the banks (12.8 s for 64
        parts at 5 fps) costs ~20 ms of CPU per frame next to inference, and on a slow
        2-core machine that delayed batches past a frame period: frames were dropped in the
        first seconds of every run.
        """
        from camera.simulated import SimulatedLineCamera

        banks = [cam for cam in self.cameras.values() if isinstance(cam, SimulatedLineCamera)]
        if not banks:
            return
        from camera.bank_cache import BankCache

        cache = BankCache()
        t0 = time.perf_counter()
        say(f"rendering the frames of {len(banks)} simulated cameras")
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="prerender") as pool:
            jobs = {pool.submit(cam.prerender, cache): cam for cam in banks}
            cached: list[bool] = []
            for done, job in enumerate(as_completed(jobs), 1):  # told here: on the constructing thread
                cached.append(job.result())
                say(f"camera {jobs[job].info.id}: frames ({done} of {len(banks)})")
        log.info("part banks of %d simulated cameras ready in %.1f s (%d from the cache %s)", len(banks),
                 time.perf_counter() - t0, sum(cached), cache.folder)

    def start(self) -> None:
        """Start sinks, workers, then cameras (so no frame waits for a consumer)."""
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
            except Exception as exc:
                failures.append(f"{cam.info.id}: {exc}")
                log.error("camera %s failed to start: %s", cam.info.id, exc)
        if failures and len(failures) == len(self.cameras):
            self.stop()
            raise StationError("no camera could start: " + "; ".join(failures))
        if self.line is not None:
            self.line.start()
        self.watchdog.start()

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

    def stop(self) -> None:
        """Watchdog, cameras, workers, sinks that hold frames, then the database writer; idempotent."""
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
        self._inspect_delivered(timeout=2.0)
        for cam in self.cameras.values():
            try:
                cam.stop()
            except Exception as exc:
                log.warning("camera %s: stop failed: %s", cam.info.id, exc)
        for w in self.workers:
            w.stop()
        # the store hands on its last parts, then frame holders give the buffers back before cameras close
        self.fan_out.stop(timeout=30)
        self._close_cameras()
        self.fan_out.stop_store(timeout=30)  # last, so it also stores the cameras' final transitions
        for be in self.backends:
            be.close()
        if self.metrics is not None:
            self.metrics.close()

    def _inspect_delivered(self, timeout: float) -> None:
        """Let the workers inspect frames that arrived before the stop (bounded), so that a
        clean stop drops nothing; a paused or wedged worker costs at most ``timeout``."""
        if not self.workers or self.paused:
            return
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(c.pool.snapshot().in_flight == 0 for c in self.cameras.values()):
                return
            time.sleep(0.01)

    def _close_cameras(self) -> None:
        for cam in self.cameras.values():
            try:
                cam.close()
            except Exception as exc:
                log.warning("camera %s: close failed: %s", cam.info.id, exc)
        if self._gentl_system is not None:
            self._gentl_system.__exit__(None, None, None)
            self._gentl_system = None

    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ reporting
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.stopped_at if self.stopped_at is not None else time.monotonic()
        return max(1e-9, end - self.started_at)

    def status_line(self) -> str:
        """One line: totals, then per camera fps/drops/NG (and a state when not streaming)."""
        el = self.elapsed()
        parts = []
        tot_in = tot_drop = 0
        for cid, cam in self.cameras.items():
            c = cam.pool.snapshot()
            tot_in += c.inspected
            tot_drop += c.dropped
            cs = self.stats.camera(cid)
            flag = "" if cam.state is CameraState.STREAMING else f" {cam.state.value.upper()}"
            parts.append(f"{cid} {c.inspected / el:4.1f}fps d{c.dropped} ng{cs.ng}{flag}")
        db = f" db {self.db_writer.rows_written}" if self.db_writer is not None else ""
        head = f"[{el:6.1f}s] {tot_in / el:5.1f} fps, {tot_drop} dropped, {self.stats.total_ng()} NG{db}"
        from inspector.ops.health import health_text

        return f"{head} | health: {health_text(self.health())} | " + " | ".join(parts)

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self._stopped.is_set()

    def health(self) -> dict[str, Any]:
        """One verdict over cameras, database and archive (see `inspector.ops.health.assess`)."""
        from inspector.ops.health import assess

        return assess(self)

    def report(self) -> dict[str, Any]:
        """The run report (``--report FILE``)."""
        el = self.elapsed()
        cams = []
        tot = {"received": 0, "inspected": 0, "dropped": 0, "invalid": 0, "ng": 0}
        for cid, cam in self.cameras.items():
            c = cam.pool.snapshot()
            cs = self.stats.camera(cid)
            lat = percentiles(cs.latency_ms)
            cams.append(
                {
                    "id": cid,
                    "kind": cam.info.kind,
                    "state": cam.state.value,
                    "received": c.received,
                    "inspected": c.inspected,
                    "dropped": c.dropped,
                    "dropped_pool_exhausted": c.pool_exhausted,  # the rest: replaced before a worker claimed them
                    "in_flight": c.in_flight,
                    "invalid": c.invalid,
                    "ng": cs.ng,
                    "fps": c.inspected / el,
                    "nominal_fps": cam.nominal_fps,
                    "latency_ms": lat,
                    "accuracy": cs.accuracy.as_dict() if cs.accuracy.parts else None,
                }
            )
            for k in ("received", "inspected", "dropped", "invalid"):
                tot[k] += getattr(c, k)
            tot["ng"] += cs.ng
        all_lat = [v for cs in self.stats.cameras.values() for v in cs.latency_ms]
        report: dict[str, Any] = {
            "station": self.config.name,
            "duration_s": el,
            "backend": self.backend_name,
            "devices": list(self.config.model.devices),
            # what each worker's runtime runs: "auto" resolved to "int8" where the card's INT8 model was chosen
            "precision": [getattr(w.backend, "precision", self.config.model.precision) for w in self.workers],
            "model": {"name": self.card.name, "sha256": self.card.sha256, "card_sha256": self.card.card_sha256,
                      "threshold": self.card.threshold, "input": [self.card.input_width, self.card.input_height]},
            "cameras": cams,
            "totals": {**tot, "fps": tot["inspected"] / el},
            "latency_ms": percentiles(all_lat),
            "stages_ms": self.stats.stage_percentiles(),
            "scheduler": [
                {
                    "worker": w.index,
                    "device": w.backend.device,
                    "cameras": [lane.camera_id for lane in w.lanes],
                    "batches": w.stats.batches,
                    "mean_batch": w.stats.items / w.stats.batches if w.stats.batches else 0.0,
                    "busy_fraction": w.stats.busy_s / el,
                    "errors": w.stats.errors,
                    # batches that ran on the two-stream graph of streams = "auto" (the station was loaded)
                    "loaded_batches": getattr(w.backend, "loaded_batches", 0),
                }
                for w in self.workers
            ],
            "db": {
                "url": _redact(self.db_url),
                "rows_written": self.db_writer.rows_written if self.db_writer is not None else 0,
                **({k: v for k, v in self.db_writer.stats().items()} if self.db_writer is not None else {}),
            },
            "archive": self.archive.stats() if self.archive is not None else None,
            # accepted results never made durable (see DbWriter.lost); non-zero: `inspector run` exits 3
            "lost": int(self.db_writer.lost) if self.db_writer is not None else 0,
            "accuracy": self.stats.accuracy.as_dict(),
            "health": self.health(),
        }
        if self.line is not None:
            report["parts"] = self.line.report()
            # verdict -> the PLC links and the GUI have it: the wait for the part to be durable
            report["parts"]["verdict_to_visible_ms"] = percentiles(list(self.fan_out.visible_ms))
        if self.plc_modbus is not None:
            report["plc"] = {"modbus": self.plc_modbus.stats()}
        if self.plc_opcua is not None:
            report.setdefault("plc", {})["opcua"] = self.plc_opcua.stats()
        if self.recipes is not None:
            report["recipe"] = {"current": self.recipes.current.label if self.recipes.current else None,
                                "switches": self.recipes.switches}
        return report


def _no_progress(_text: str) -> None:
    """A build nobody watches."""


def audit_card_change(engine: Any, card: ModelCard) -> None:
    """Record in the audit trail when this model's card differs from the one the station last used.

    The first start with a model, and every start after its card changed (a new threshold,
    new metrics, a new file), appends a ``model_card_changed`` row (user ``station``) with the
    old and new card digests and thresholds.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from inspector.storage.users_models import AuditRecord
    from inspector.access.users import AuditLog

    with Session(engine) as s:
        last = s.scalar(
            select(AuditRecord.new)
            .where(AuditRecord.action == "model_card_changed", AuditRecord.target == card.name)
            .order_by(AuditRecord.id.desc())
            .limit(1)
        )
    new = card.audit_text
    if last == new:
        return
    AuditLog(engine).record("station", "model_card_changed", card.name, last, new)
    if last is not None:
        log.warning("model %s: its card changed since the last run (%s -> %s)", card.name, last, new)


def _archive_dir_for(p: Path | None) -> Path:
    if p is not None:
        return Path(p).parent / "ng_images"
    import platformdirs

    return Path(platformdirs.user_data_dir("inspector")) / "ng_images"


def _redact(url: str | None) -> str | None:
    if url is None or "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def camera_ids(station: Station) -> Sequence[str]:
    return list(station.cameras)
