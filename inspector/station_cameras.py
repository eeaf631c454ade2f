"""The station's cameras: one per ``[[cameras]]`` entry, of its kind, and their part banks rendered up front.

Part of the composition root (`inspector.station`): the one place that turns a camera's
configuration into a `camera.protocol.Camera`. GenTL cameras share one GenTL system (the
producers loaded once), opened with the first of them and closed with the last.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from camera.protocol import Camera
from inspector.config import AravisCameraConfig, GenTLCameraConfig, ReplayCameraConfig, SimulatedCameraConfig

log = logging.getLogger(__name__)


class StationCameras:
    """Opens the cameras of a station and closes them (and the GenTL system they share).

    Args:
        faces: How many faces of a part the line's cameras see (0 on a free-running station):
            simulated camera ``i`` renders face ``i`` of the same part.
    """

    def __init__(self, faces: int = 0) -> None:
        self.faces = faces
        self.cameras: dict[str, Camera] = {}
        self._gentl_system: Any = None

    def open(self, cfg: Any, face: int = 0) -> Camera:
        """Make the camera of ``cfg`` and keep it.

        Raises:
            ValueError: A camera that cannot be made from this config (one line, naming the camera).
            MemoryError: A simulated part bank too big for the memory.
        """
        cam = self._make(cfg, face)
        self.cameras[cfg.id] = cam
        return cam

    def _make(self, cfg: Any, face: int) -> Camera:
        if isinstance(cfg, SimulatedCameraConfig):
            from camera.simulated import SimulatedLineCamera

            sim = SimulatedLineCamera(
                cfg.id, fps=cfg.fps, width=cfg.width, height=cfg.height, mono=cfg.mono, seed=cfg.seed,
                bank_size=cfg.bank_size, ok_share=cfg.ok_share, pool_slots=cfg.pool_slots, face=face,
                faces=self.faces,
            )
            _apply_settings(sim, cfg.id, cfg.settings)
            return sim
        if isinstance(cfg, AravisCameraConfig):
            from camera.aravis import AravisCamera

            return AravisCamera(cfg.id, device_id=cfg.device_id, pool_slots=cfg.pool_slots, fps=cfg.fps,
                                settings=dict(cfg.settings))
        if isinstance(cfg, ReplayCameraConfig):
            from camera.replay import ReplayCamera

            return ReplayCamera(cfg.id, cfg.source, fps=cfg.fps, loop=cfg.loop, pool_slots=cfg.pool_slots)
        if isinstance(cfg, GenTLCameraConfig):
            from camera.gentl import GenTLCamera

            return GenTLCamera(cfg.id, self._gentl(), serial=cfg.serial, device_id=cfg.device_id,
                               pool_slots=cfg.pool_slots, fps=cfg.fps or None, settings=dict(cfg.settings))
        raise ValueError(f"camera {cfg.id}: unknown kind")  # pragma: no cover - the config forbids it

    def _gentl(self) -> Any:
        if self._gentl_system is None:
            from camera.gentl_system import GenTLSystem

            self._gentl_system = GenTLSystem()
            self._gentl_system.__enter__()
        return self._gentl_system

    def inject_fault(self, camera_id: str, fault: str, value: float | None = None) -> None:
        """Make a simulated camera misbehave: ``missed_trigger`` at a rate, the others for seconds.

        Raises:
            ValueError: No such camera, or not a simulated one (one line).
        """
        from camera.simulated import SimulatedLineCamera

        cam = self.cameras.get(camera_id)
        if cam is None:
            raise ValueError(f"no camera {camera_id!r} (cameras: {', '.join(self.cameras)})")
        if not isinstance(cam, SimulatedLineCamera):
            raise ValueError(f"camera {camera_id} is not simulated; faults go into simulated cameras")  # noqa: TRY004 - a user's camera id, reported as one line
        if fault == "missed_trigger":
            cam.missed_trigger_rate = float(value or 0.0)
        else:
            cam.faults.inject(fault, 10.0 if value is None else value)
        log.warning("camera %s: injected %s%s", camera_id, fault, "" if value is None else f" {value:g}")

    def wait_inspected(self, timeout: float) -> bool:
        """Wait until no camera's pool has a frame in flight (a clean stop drops nothing); False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(c.pool.snapshot().in_flight == 0 for c in self.cameras.values()):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Close every camera (a failure is logged, the others still close), then the GenTL system."""
        for cam in self.cameras.values():
            try:
                cam.close()
            except Exception as exc:  # noqa: BLE001 - a failure is logged, the others still close
                log.warning("camera %s: close failed: %s", cam.info.id, exc)
        if self._gentl_system is not None:
            self._gentl_system.__exit__(None, None, None)
            self._gentl_system = None


def prerender_banks(cameras: Mapping[str, Camera], say: Callable[[str], None]) -> None:
    """Render the simulated cameras' part banks now, on all cores.

    Rendered on first use instead, the first pass through the banks (12.8 s for 64
    parts at 5 fps) costs ~20 ms of CPU per frame next to inference, and on a slow
    2-core machine that delayed batches past a frame period: frames were dropped in the
    first seconds of every run.
    """
    from camera.simulated import SimulatedLineCamera

    banks = [cam for cam in cameras.values() if isinstance(cam, SimulatedLineCamera)]
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


def _apply_settings(cam: Camera, camera_id: str, settings: Mapping[str, object]) -> None:
    """Write a camera's configured ``settings`` in order (a refused value is one line naming it)."""
    from camera.features import FeatureError

    for name, value in settings.items():
        try:
            cam.features.set(name, value)
        except FeatureError as exc:
            raise ValueError(f"camera {camera_id}: settings.{name}: {exc}") from None
