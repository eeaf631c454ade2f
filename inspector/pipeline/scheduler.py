"""Dynamic batching across cameras, one worker per inference device.

Each worker owns a shard of cameras. It sleeps until one of its pools has a pending
frame, then waits at most ``max_wait`` for the other cameras of its shard to have one
too, claims the newest frame of every ready camera, and runs them as one batch (tiles
of tiled cameras are batch items of their own). Frames that arrive while the worker
is busy replace each other in their pool: newest frame wins, drops are counted there.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from camera.frame_pool import FrameHandle, FramePool
from inspector.pipeline.backends.base import Backend, BatchItem, BatchOutput, DoneBatch, PendingBatch
from inspector.pipeline.postprocess import CONF_FLOOR, decode_yolo, nms, rows_to_frame_pixels, to_frame_pixels
from inspector.pipeline.preprocess import FrameFormatError, Letterbox, Tile, check_frame, letterbox_into, plan_tiles
from inspector.pipeline.results import (
    InspectionResult,
    Provenance,
    StageTimes,
    detections_from_array,
    detections_from_rows,
)
from inspector.pipeline.verdict import VerdictRules, anomaly_rule

log = logging.getLogger(__name__)


class AnomalyScores(Protocol):
    """What an anomaly batch gives back (`inspector.anomaly.runtime.ScoreBatch`)."""

    @property
    def scores(self) -> np.ndarray: ...  # (N,) image scores

    @property
    def maps(self) -> np.ndarray: ...  # (N, gh, gw) patch scores

    @property
    def posed(self) -> np.ndarray | None: ...  # (N,) bool: an aligned part's pose found; None: not aligned


class PendingAnomaly(Protocol):
    """An anomaly batch inside its runtime."""

    def wait(self) -> AnomalyScores: ...


class AnomalyCheck(Protocol):
    """A camera's anomaly model as a worker runs it beside the detector (`inspector.anomaly.station`).

    Cameras whose checks have the same ``key`` (one model) share one batch.
    """

    key: str
    name: str
    sha256: str
    threshold: float
    input_width: int
    input_height: int
    crop: Tile | None  # the model's ROI in frame pixels (None: the whole frame)

    def prepare(self, worker: int, depth: int) -> None:
        """Compile the model for ``worker`` with ``depth`` batches in flight (before its first frame)."""
        ...

    def start(self, worker: int, batch_u8: np.ndarray) -> PendingAnomaly:
        """Start scoring a letterboxed u8 BGR NHWC batch; returns at once."""
        ...


@dataclass
class CameraLane:
    """What a worker needs to inspect one camera's frames."""

    camera_id: str
    pool: FramePool
    rules: VerdictRules
    provenance: Provenance
    tiling: bool = True
    min_defect_px: float = 8.0
    min_resolvable_px: float = 6.0
    tile_overlap: float = 0.2
    #: the camera's anomaly model; None: the detector only
    anomaly: AnomalyCheck | None = None
    _anomaly_provenance: tuple[Provenance, Provenance] | None = None  # (the lane's, with the anomaly model's)
    _plans: dict[tuple[int, int, int, int], list[tuple[Tile | None, Letterbox]]] = field(default_factory=dict)
    _invalid_logged_at: float = -1e9  # monotonic; a camera sending garbage must not flood the log
    _invalid_unlogged: int = 0

    def log_invalid(self, sequence: int, reason: object, every_s: float = 10.0) -> None:
        """Log a skipped frame: the first one at once, then at most one line per ``every_s``."""
        now = time.monotonic()
        if now - self._invalid_logged_at < every_s:
            self._invalid_unlogged += 1
            return
        more = f" (+{self._invalid_unlogged} more since the last message)" if self._invalid_unlogged else ""
        log.warning("camera %s: frame %d skipped: %s%s", self.camera_id, sequence, reason, more)
        self._invalid_logged_at, self._invalid_unlogged = now, 0

    def plan(self, w: int, h: int, in_w: int, in_h: int) -> list[tuple[Tile | None, Letterbox]]:
        """Tiles and letterboxes for a ``w x h`` frame (cached per size)."""
        key = (w, h, in_w, in_h)
        plan = self._plans.get(key)
        if plan is None:
            tiles = (
                plan_tiles(
                    w, h, in_w, in_h,
                    min_defect_px=self.min_defect_px,
                    min_resolvable_px=self.min_resolvable_px,
                    overlap=self.tile_overlap,
                )
                if self.tiling
                else [Tile(0, 0, w, h)]
            )
            if len(tiles) == 1:
                plan = [(None, Letterbox.fit(w, h, in_w, in_h))]
            else:
                plan = [(t, Letterbox.fit(t.width, t.height, in_w, in_h)) for t in tiles]
                log.info("camera %s: %dx%d frames tiled into %d inputs", self.camera_id, w, h, len(tiles))
            self._plans[key] = plan
        return plan

    def with_anomaly(self, prov: Provenance, check: AnomalyCheck | None) -> Provenance:
        """``prov`` naming the anomaly model ``check`` and its sha256 (``prov`` itself without one)."""
        a = check
        if a is None or prov.anomaly_sha256 == a.sha256:
            return prov
        pair = self._anomaly_provenance
        if pair is None or pair[0] != prov or pair[1].anomaly_sha256 != a.sha256:  # settings, recipe changed
            pair = self._anomaly_provenance = (prov, replace(prov, anomaly_model=a.name, anomaly_sha256=a.sha256))
        return pair[1]


@dataclass(frozen=True)
class Epoch:
    """A recipe's inspection setup, in force for frames of triggers from ``first_trigger`` on.

    A product changeover switches at a part boundary: frames of parts triggered before it are
    inspected with the old epoch, later ones with the new, so no part sees a mix. ``rules``
    and ``provenance`` override the lanes' per camera (empty: the lane's own).
    """

    first_trigger: int
    backend: Backend
    rules: dict[str, VerdictRules] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    name: str = ""
    #: a recipe's anomaly model per camera (None: none); a camera not named keeps the lane's own
    anomaly: dict[str, AnomalyCheck | None] = field(default_factory=dict)

    def anomaly_of(self, lane: CameraLane) -> AnomalyCheck | None:
        """The anomaly model ``lane``'s frames of this epoch are scored with."""
        return self.anomaly.get(lane.camera_id, lane.anomaly)


@dataclass(eq=False)
class _Batch:
    """Claimed frames on their way through the runtime: submitted, not yet decided."""

    ep: Epoch
    taken: list[tuple[CameraLane, FrameHandle]]
    t_take: int  # perf_counter_ns when the frames were claimed
    items: list[BatchItem] = field(default_factory=list)
    spans: list[tuple[CameraLane, FrameHandle, int, int]] = field(default_factory=list)  # lane, handle, first, n
    pending: PendingBatch | None = None
    t_submit: int = 0
    unsettled: dict[int, CameraLane] = field(default_factory=dict)
    settled: bool = False
    #: anomaly batches started beside the detector's: (pending or None when it could not start, span indices)
    anomaly: list[tuple[PendingAnomaly | None, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.unsettled = {id(h): lane for lane, h in self.taken}

    def settle(self) -> None:
        """Count the frames not inspected as dropped and release every handle (once)."""
        if self.settled:
            return
        self.settled = True
        for lane in self.unsettled.values():
            lane.pool.mark_dropped()
        self.unsettled.clear()
        for _lane, h in self.taken:
            h.release()


@dataclass
class WorkerStats:
    """Counters of one inference worker."""

    batches: int = 0
    frames: int = 0
    items: int = 0
    errors: int = 0
    busy_s: float = 0.0  # claimed to fanned out, union over the batches in flight
    infer_s: float = 0.0  # of which inside the runtime (excludes host pre/post-processing)
    batch_hist: dict[int, int] = field(default_factory=dict)


class InferenceWorker:
    """Two threads driving one backend over a shard of cameras.

    The worker thread gathers a batch, letterboxes it and hands it to the runtime; the
    completion thread waits for it, decodes, applies the verdict rules and emits. Up to
    ``in_flight`` batches are between the two, so the host work of one batch overlaps the
    inference of the next (backends with `submit` run them asynchronously; others infer
    in the worker thread while the previous batch is decided). When every camera of the
    shard has a frame waiting once a batch is decided (a saturated station), the completion
    thread submits them itself in the slot that batch frees (`_refill`).

    Args:
        index: Worker index (device number).
        backend: The backend this worker owns.
        lanes: Its cameras.
        emit: Called with each batch's results (the station's fan-out); must not block.
        max_wait_s: How long to wait for more cameras before running a partial batch.
        iou_threshold: NMS IoU.
        in_flight: Batches submitted and not yet decided, at most (the backend's ``depth``
            where it has one: its slots).
    """

    def __init__(
        self,
        index: int,
        backend: Backend,
        lanes: Sequence[CameraLane],
        emit: Callable[[list[InspectionResult]], None],
        *,
        max_wait_s: float = 0.004,
        iou_threshold: float = 0.5,
        in_flight: int = 2,
    ) -> None:
        self.index = index
        self.backend = backend
        self.lanes = list(lanes)
        self._by_pool = {id(lane.pool): lane for lane in self.lanes}
        self._emit = emit
        self._max_wait = max_wait_s
        self._iou = iou_threshold
        self._cond = threading.Condition()
        self._gathering = False  # the worker thread waits on _cond for frames (`_gather`); under _cond's lock
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._post: threading.Thread | None = None
        self.in_flight = max(1, backend.depth or in_flight)  # a synchronous backend (depth 0) takes the worker's
        self._slots = threading.Semaphore(self.in_flight)
        self._submitted: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        # held from a batch's submit to its place in `_submitted`: two threads submit, and batches are
        # decided in the order the runtime's slots were taken
        self._submit_lock = threading.Lock()
        self._busy_until = 0
        self._infer_until = 0
        self._open: collections.deque[_Batch] = collections.deque()  # submitted, not yet decided, oldest first
        self.stats = WorkerStats()
        #: newest last; the first one is the worker's own (backend and lanes' rules)
        self._epochs: list[Epoch] = [Epoch(0, backend)]
        self._epochs_lock = threading.Lock()
        for lane in self.lanes:
            lane.pool.subscribe(self._wake)
            if lane.anomaly is not None:  # compiled now: not on the first frame
                lane.anomaly.prepare(index, self.in_flight)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._stop.clear()
        self._post = threading.Thread(target=self._complete_loop, name=f"infer-{self.index}-post", daemon=True)
        self._post.start()
        self._thread = threading.Thread(target=self._run, name=f"infer-{self.index}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gathering; the batches already submitted are still decided and emitted."""
        self._stop.set()
        self._wake(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._post is not None:
            with self._submit_lock:  # after any batch a refill submits; none is submitted after it
                self._submitted.put(None)
            self._post.join(timeout)
            self._post = None

    def pause(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()
            self._wake(None)

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def _wake(self, _pool: FramePool | None) -> None:
        # a saturated worker waits for a slot, not for frames: a camera's publish then notifies no one
        with self._cond:
            if self._gathering:
                self._cond.notify()

    def drained(self) -> bool:
        """Whether no batch is in flight (submitted and not yet decided)."""
        return not self._open

    def busy_now(self) -> float:
        """Seconds busy so far, the batches not yet decided counted up to now: the difference of two
        readings is the busy time between them (`WorkerStats.busy_s` counts a batch whole when it is
        decided, so a window's difference of it also holds the part of a batch from before the window)."""
        busy = self.stats.busy_s
        try:
            oldest = self._open[0].t_take
        except IndexError:  # nothing in flight
            return busy
        return busy + max(0, time.perf_counter_ns() - max(oldest, self._busy_until)) / 1e9

    # ------------------------------------------------------------------ recipes
    def switch_at(self, epoch: Epoch) -> None:
        """Inspect frames of triggers from ``epoch.first_trigger`` on with ``epoch`` (free-running
        frames at once); older frames keep the epoch they belong to. An epoch from the same trigger on
        (no trigger since the last switch, or a free-running station) can have no frame any more: it goes
        at once, its backend with the next retirement."""
        with self._epochs_lock:
            self._epochs = [*(e for e in self._epochs if e.first_trigger < epoch.first_trigger), epoch]

    def retire_before(self, first_trigger: int) -> list[Backend]:
        """Make the epoch starting at ``first_trigger`` the worker's own: the lanes take its rules
        and provenance, older epochs go. Returns their backends for the caller to close."""
        with self._epochs_lock:
            keep = [e for e in self._epochs if e.first_trigger >= first_trigger]
            gone = [e.backend for e in self._epochs if e.first_trigger < first_trigger and e.backend is not keep[0].backend]
            head = keep[0]
            for lane in self.lanes:
                lane.rules = head.rules.get(lane.camera_id, lane.rules)
                lane.provenance = head.provenance.get(lane.camera_id, lane.provenance)
                lane.anomaly = head.anomaly_of(lane)
            self._epochs = [Epoch(head.first_trigger, head.backend, {}, {}, head.name), *keep[1:]]
            self.backend = head.backend
            return gone

    def _epoch_of(self, h: FrameHandle) -> Epoch:
        with self._epochs_lock:
            if h.trigger_id is None:
                return self._epochs[-1]  # a free-running frame is its own part: the newest recipe
            for e in reversed(self._epochs):
                if h.trigger_id >= e.first_trigger:
                    return e
            return self._epochs[0]

    # ------------------------------------------------------------------ loop
    def _ready(self) -> list[CameraLane]:
        return [lane for lane in self.lanes if lane.pool.has_pending()]

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.1):  # every slot in flight: the next batch waits
                continue
            try:
                taken = self._gather()
                groups = self._by_epoch(taken) if taken else []
            except BaseException:
                self._slots.release()
                raise
            if not groups:
                self._slots.release()
                continue
            for k, (ep, group) in enumerate(groups):
                if k:  # frames of two recipes: one batch each, each in a slot of its own
                    while not self._slots.acquire(timeout=0.1):
                        pass
                with self._submit_lock:
                    b = self._submit(group, ep)
                    if b is not None:
                        self._submitted.put(b)
                if b is None:
                    self._slots.release()

    def _complete_loop(self) -> None:
        while True:
            b = self._submitted.get()
            if b is None:
                return
            try:
                self._complete(b)
            finally:
                # decided, its frames settled: its slot goes straight to the frames waiting, if every camera
                # has one (after the settle, so a camera's frames held stay in_flight + 2, as its pool holds)
                if not self._refill():
                    self._slots.release()

    def _refill(self) -> bool:
        """Submit the next batch in the slot of the batch just decided, on the completion thread, when
        every camera of the shard has a frame waiting (a saturated station): the runtime gets it one
        thread hand-off sooner, and the worker thread is not woken for it. False (the slot goes back to
        the worker thread) when a camera has none (the worker waits up to ``max_wait`` for it), while
        paused or stopping, or while a recipe switch is under way (frames of two recipes take a slot each).
        """
        with self._submit_lock:
            if self._stop.is_set() or self._paused.is_set():
                return False
            with self._epochs_lock:  # no switch between the look at the epochs and the claim
                if len(self._epochs) != 1 or not all(lane.pool.has_pending() for lane in self.lanes):
                    return False
                ep = self._epochs[0]
                taken = [(lane, h) for lane in self.lanes if (h := lane.pool.claim()) is not None]
            b = self._submit(taken, ep) if taken else None
            if b is None:
                return False
            self._submitted.put(b)
            return True

    def _gather(self) -> list[tuple[CameraLane, FrameHandle]]:
        """Wait for frames (the rest of the shard for at most ``max_wait``) and claim them."""
        with self._cond:
            self._gathering = True
            try:
                while not self._stop.is_set() and (self._paused.is_set() or not self._ready()):
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return []
                # give the other cameras of the shard a moment to join the batch
                deadline = time.monotonic() + self._max_wait
                while len(self._ready()) < len(self.lanes):
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        break
                    self._cond.wait(left)
            finally:
                self._gathering = False
        taken: list[tuple[CameraLane, FrameHandle]] = []
        for lane in self.lanes:
            h = lane.pool.claim()
            if h is not None:
                taken.append((lane, h))
        return taken

    def process(self, taken: list[tuple[CameraLane, FrameHandle]]) -> list[InspectionResult]:
        """Inspect claimed frames now, in the caller's thread, one batch per recipe epoch they
        belong to (usually one)."""
        results: list[InspectionResult] = []
        for ep, group in self._by_epoch(taken):
            b = self._submit(group, ep)
            if b is not None:
                results.extend(self._complete(b))
        return results

    def _by_epoch(self, taken: list[tuple[CameraLane, FrameHandle]]) -> list[tuple[Epoch, list[tuple[CameraLane, FrameHandle]]]]:
        groups: dict[int, tuple[Epoch, list[tuple[CameraLane, FrameHandle]]]] = {}
        for lane, h in taken:
            ep = self._epoch_of(h)
            groups.setdefault(id(ep), (ep, []))[1].append((lane, h))
        return list(groups.values())

    def _submit(self, taken: list[tuple[CameraLane, FrameHandle]], ep: Epoch) -> _Batch | None:
        """Check and letterbox claimed frames and hand them to ``ep``'s backend as one batch.

        None when nothing is left to infer; then every frame is already settled (dropped when
        malformed or when the runtime refused the batch) and released.
        """
        b = _Batch(ep, taken, time.perf_counter_ns())
        try:
            for lane, h in taken:
                try:
                    _check(h)
                except FrameFormatError as exc:
                    lane.pool.count_invalid()
                    lane.pool.mark_dropped()
                    del b.unsettled[id(h)]
                    lane.log_invalid(h.sequence, exc)
                    continue
                fh, fw = h.image.shape[:2]
                first = len(b.items)
                card = ep.backend.card
                if _detects(lane, ep):
                    for tile, box in lane.plan(fw, fh, card.input_width, card.input_height):
                        b.items.append(BatchItem(h.image, h.pixel_format, box, tile))
                b.spans.append((lane, h, first, len(b.items) - first))
            if not b.spans:
                b.settle()
                return None
            b.t_submit = time.perf_counter_ns()
            try:
                # frames of cameras decided by their anomaly model alone skip the detector
                b.pending = ep.backend.submit(b.items) if b.items else DoneBatch(_NO_DETECTIONS)
            except Exception:
                self.stats.errors += 1
                log.exception("worker %d: inference failed on a batch of %d", self.index, len(b.items))
                b.settle()
                return None
            self._start_anomaly(b)  # right after the detector's: both run at once
            self._open.append(b)
            return b
        except Exception:
            # a bug or a bad frame in pre-processing must not end inspection
            self.stats.errors += 1
            log.exception("worker %d: batch of %d frames failed", self.index, len(taken))
            b.settle()
            return None

    def _start_anomaly(self, b: _Batch) -> None:
        """Letterbox the frames of cameras with an anomaly model into one batch per model and start it.

        A batch that cannot start is kept as None: its frames get no score, which the verdict
        turns into NG (fail safe), never into OK.
        """
        groups: dict[str, tuple[AnomalyCheck, list[int]]] = {}
        for k, (lane, _h, _f, _n) in enumerate(b.spans):
            a = b.ep.anomaly_of(lane)
            if a is not None:
                groups.setdefault(a.key, (a, []))[1].append(k)
        for check, ks in groups.values():
            try:
                w, h = check.input_width, check.input_height
                buf = np.empty((len(ks), h, w, 3), np.uint8)
                for i, k in enumerate(ks):
                    handle = b.spans[k][1]
                    crop = check.crop
                    fh, fw = handle.image.shape[:2]
                    if crop is not None and (crop.x1 > fw or crop.y1 > fh):
                        raise FrameFormatError(f"anomaly ROI {crop} reaches outside the {fw}x{fh} frame")
                    cw, ch = (crop.width, crop.height) if crop is not None else (fw, fh)
                    letterbox_into(buf[i], handle.image, handle.pixel_format, Letterbox.fit(cw, ch, w, h), crop)
                b.anomaly.append((check.start(self.index, buf), ks))
            except Exception:
                self.stats.errors += 1
                log.exception("worker %d: anomaly model %s failed on a batch of %d", self.index, check.name, len(ks))
                b.anomaly.append((None, ks))

    def _wait_anomaly(self, b: _Batch) -> dict[int, tuple[float, np.ndarray | None, bool]]:
        """Span index -> (image score, patch map, the part's pose found); NaN (NG) for a batch that failed."""
        scores: dict[int, tuple[float, np.ndarray | None, bool]] = {}
        for pending, ks in b.anomaly:
            out = None
            if pending is not None:
                try:
                    out = pending.wait()
                except Exception:
                    self.stats.errors += 1
                    log.exception("worker %d: anomaly inference failed on a batch of %d", self.index, len(ks))
            posed = out.posed if out is not None else None
            for i, k in enumerate(ks):
                scores[k] = ((float(out.scores[i]), out.maps[i], posed is None or bool(posed[i])) if out is not None
                             else (float("nan"), None, True))
        return scores

    def _complete(self, b: _Batch) -> list[InspectionResult]:
        """Wait for a submitted batch, decide its frames, emit and return the results.

        Every claimed frame is settled exactly once in its pool's counters (inspected, or
        dropped when inference or post-processing fails), whatever happens, and the worker's
        reference on every handle is released.
        """
        try:
            assert b.pending is not None
            try:
                out = b.pending.wait()
            except Exception:
                self.stats.errors += 1
                log.exception("worker %d: inference failed on a batch of %d", self.index, len(b.items))
                self._wait_anomaly(b)  # its requests finish before they take another batch
                return []  # the frames are counted as dropped below
            anomaly = self._wait_anomaly(b) if b.anomaly else {}
            ep = b.ep
            results = []
            graph = out.detections if out.detections is not None and out.nms_iou == self._iou else None
            for k, (lane, h, first, n) in enumerate(b.spans):
                results.append(self._result(lane, h, b.items[first : first + n], out.raw[first : first + n], b.t_take,
                                            out, ep, graph[first : first + n] if graph is not None else None,
                                            anomaly.get(k)))
            for lane, h, _f, _n in b.spans:
                lane.pool.mark_inspected()
                del b.unsettled[id(h)]
            self._emit(results)
            self._decided(b)
            self._count(b, out)
            return results
        except Exception:
            # a bug or a bad frame in post-processing must not end inspection
            self.stats.errors += 1
            log.exception("worker %d: batch of %d frames failed", self.index, len(b.taken))
            return []
        finally:
            self._decided(b)
            b.settle()

    def _decided(self, b: _Batch) -> None:
        """``b`` is no longer open (`busy_now`): batches are decided in the order they were submitted."""
        if self._open and self._open[0] is b:
            self._open.popleft()

    def _count(self, b: _Batch, out: BatchOutput) -> None:
        """Add a finished batch to the counters. Batches overlap: busy and inference time are
        the union of their intervals, not the sum."""
        st = self.stats
        end = time.perf_counter_ns()
        st.busy_s += max(0, end - max(b.t_take, self._busy_until)) / 1e9
        self._busy_until = max(self._busy_until, end)
        i0 = b.t_submit + int(out.preprocess_ms * 1e6)
        i1 = i0 + int(out.inference_ms * 1e6)
        st.infer_s += max(0, i1 - max(i0, self._infer_until)) / 1e9
        self._infer_until = max(self._infer_until, i1)
        st.batches += 1
        st.frames += len(b.spans)
        st.items += len(b.items)
        st.batch_hist[len(b.items)] = st.batch_hist.get(len(b.items), 0) + 1

    def _result(
        self,
        lane: CameraLane,
        h: FrameHandle,
        items: list[BatchItem],
        raw: np.ndarray,
        t_take: int,
        out: BatchOutput,
        ep: Epoch,
        decoded: list[np.ndarray] | None = None,
        anomaly: tuple[float, np.ndarray | None, bool] | None = None,
    ) -> InspectionResult:
        t0 = time.perf_counter_ns()
        fh, fw = h.image.shape[:2]
        rules = ep.rules.get(lane.camera_id, lane.rules)
        conf = max(CONF_FLOOR, 0.5 * rules.lowest_threshold())
        names = ep.backend.card.classes
        if decoded is not None and len(items) == 1:
            # one input (no tiles) and the runtime's own rows, a few: looked at as lists, not in a dozen numpy calls
            it, rows = items[0], decoded[0].tolist()
            kept = rows[: _at_or_above([row[4] for row in rows], conf)]
            detections = detections_from_rows(rows_to_frame_pixels(kept, it.box, it.tile, fw, fh), names)
        else:
            parts = []
            for k, (it, r) in enumerate(zip(items, raw)):
                if decoded is not None:  # the runtime decoded and suppressed from CONF_FLOOR: the same boxes
                    d = decoded[k]
                    d = d[: _at_or_above(d[:, 4].tolist(), conf)]
                else:
                    d = nms(decode_yolo(r, conf), self._iou)
                parts.append(to_frame_pixels(d, it.box, it.tile, fw, fh))
            if not parts:  # the frame skipped the detector (`_detects`)
                dets = np.empty((0, 6), np.float32)
            else:
                dets = parts[0] if len(parts) == 1 else nms(np.concatenate(parts, 0), self._iou)
            detections = detections_from_array(dets, names)
        t1 = time.perf_counter_ns()
        verdict, rule, counted, rejected = rules.decide(detections)
        score, patch_map, posed = anomaly if anomaly is not None else (None, None, True)
        check = ep.anomaly_of(lane)
        if check is not None:  # a camera with a model and no score (its batch failed) is NG: fail safe
            score = float("nan") if score is None else score
            verdict, rule = anomaly_rule(verdict, rule, score, check.threshold, posed)
        t2 = time.perf_counter_ns()
        times = StageTimes(
            wait_ms=(t_take - h.acquired_ns) / 1e6,
            preprocess_ms=out.preprocess_ms,
            inference_ms=out.inference_ms,
            postprocess_ms=(t1 - t0) / 1e6,
            verdict_ms=(t2 - t1) / 1e6,
            total_ms=(t2 - h.acquired_ns) / 1e6,
        )
        return InspectionResult(
            camera_id=lane.camera_id,
            sequence=h.sequence,
            acquired_at=h.acquired_wall,
            verdict=verdict,
            rule=rule,
            detections=counted,
            times=times,
            provenance=lane.with_anomaly(ep.provenance.get(lane.camera_id, lane.provenance), check),
            frame_width=fw,
            frame_height=fh,
            rejected=rejected,
            truth=h.truth,
            frame=h,
            trigger_id=h.trigger_id,
            anomaly_score=score,
            anomaly_map=patch_map,
        )


#: The detector's output for a batch whose frames all skipped it.
_NO_DETECTIONS = BatchOutput(np.empty((0, 0, 0), np.float32), 0.0, 0.0)


def _detects(lane: CameraLane, ep: Epoch) -> bool:
    """Whether the detector runs on ``lane``'s frames under ``ep``: not where the camera is decided by its
    anomaly model alone (``detector = false``: its rules ignore every class the detector knows)."""
    if ep.anomaly_of(lane) is None:
        return True
    return not ep.rules.get(lane.camera_id, lane.rules).ignore_classes.issuperset(ep.backend.card.classes)


def _at_or_above(scores: list[float], conf: float) -> int:
    """How many of ``scores`` (an input's rows best first, as the runtime's graph gives them) are at least
    ``conf``, compared in float32 as a numpy mask would: a frame's few scores looked at in Python cost less than
    the mask and the boolean index."""
    floor = float(np.float32(conf))
    n = 0
    for score in scores:
        if score < floor:
            break
        n += 1
    return n


def _check(h: FrameHandle) -> None:
    """`check_frame`, plus the shapes it does not expect (a flat buffer has no rows)."""
    image = h.image
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise FrameFormatError(f"frame has shape {getattr(image, 'shape', None)}, not (H, W) or (H, W, C)")
    check_frame(image, h.pixel_format)


def shard_cameras(camera_ids: Sequence[str], n_workers: int, pinned: dict[str, int] | None = None,
                  load: dict[str, float] | None = None) -> list[list[str]]:
    """Assign cameras to workers: pinned ones where configured, the rest by load.

    ``load`` (e.g. measured inference ms per second of each camera, or its fps times its
    tile count) balances greedily, heaviest first, onto the least loaded worker; without
    it every camera weighs the same (round robin).
    """
    shards: list[list[str]] = [[] for _ in range(n_workers)]
    totals = [0.0] * n_workers
    pinned = pinned or {}
    weight = {c: (load or {}).get(c, 1.0) for c in camera_ids}
    for c in camera_ids:
        if c in pinned:
            w = pinned[c]
            if not 0 <= w < n_workers:
                raise ValueError(f"camera {c}: device {w} does not exist ({n_workers} workers)")
            shards[w].append(c)
            totals[w] += weight[c]
    for c in sorted((c for c in camera_ids if c not in pinned), key=lambda c: -weight[c]):
        w = min(range(n_workers), key=lambda i: (totals[i], len(shards[i])))
        shards[w].append(c)
        totals[w] += weight[c]
    return shards
