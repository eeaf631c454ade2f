"""`PartTracker`: opens a part on each trigger, gathers one frame per camera, decides by the deadline.

A trigger (photo-eye, encoder, a PLC command, `StationControl.trigger_part`) opens a part
with the caller's part id or the station's own monotonic one, and a trigger id that the
cameras' frames carry back (`FrameHandle.trigger_id`). Frames are matched to parts by that
id, never by arrival order. When every camera of the line has delivered its frame, the part
is decided (`PartRule`); a part still missing a frame at its deadline (trigger + budget, less
`guard_ms` so the NG is out in time) is NG "incomplete: line-cam3 no image" (fail safe) and
counted. A frame that arrives after its
part's verdict keeps its part id, is marked ``late`` and stored, never given to another part.

Decided parts leave the tracker as one ordered stream: `release` hands them to ``on_part`` in
trigger order, a part decided early held until every part triggered before it is decided (a PLC
tracks parts in a shift register; every sink sees the same order). Every open part is decided
by its deadline, so nothing is held longer than the earlier part's budget.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from camera.realtime import raise_thread_priority
from inspector.line.part_verdict import PartRule, incomplete_reason
from inspector.pipeline.results import InspectionResult, PartResult, PartTimes, Verdict

log = logging.getLogger(__name__)

#: A caller's part id (a PLC's): stored, shown and used in file names, so kept plain.
PART_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"

#: Decided parts remembered so that their late frames still find their part id.
_RECENT_PARTS = 10_000


def guard_ms(budget_ms: float) -> float:
    """How long before its deadline an incomplete part is failed safe, so that its NG is out (to the
    reject gate, the PLC) by the deadline: 2% of the budget, at most 20 ms (the deadline path's p99
    lateness on a loaded 2-core PC is within that, `benchmarks/deadline_lateness.py`)."""
    return min(20.0, 0.02 * budget_ms)


@dataclass
class _OpenPart:
    trigger_id: int
    part_id: str
    trigger_ns: int
    triggered_at: float
    deadline_ns: int
    recipe: str = ""
    budget_ms: float = 0.0
    frames: dict[str, InspectionResult] = field(default_factory=dict)


@dataclass
class PartStats:
    """Counters of a line (the report's ``parts`` section, the metrics, the GUI)."""

    triggered: int = 0
    verdicts: int = 0
    ok: int = 0
    ng: int = 0
    incomplete: int = 0
    deadline_missed: int = 0
    late_frames: int = 0
    unmatched_frames: int = 0
    duplicate_frames: int = 0
    failed_safe: int = 0  # OK parts rejected because their results could not be kept
    reordered: int = 0  # parts decided while an earlier part was still open (held for it)
    truth_ng: int = 0  # parts whose frames show a defect (simulated ground truth)
    truth_ok: int = 0
    escapes: int = 0  # truly defective, judged OK
    false_rejects: int = 0  # truly OK, judged NG
    verdict_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=200_000))
    #: per part, ms: trigger -> last frame acquired, the slowest frame's wait and inference
    stages: dict[str, collections.deque[float]] = field(default_factory=lambda: {
        k: collections.deque(maxlen=200_000) for k in ("acquired", "wait", "inference")})
    #: (monotonic s, trigger->verdict ms, incomplete) of recent parts, for windowed health
    recent: collections.deque[tuple[float, float, bool]] = field(
        default_factory=lambda: collections.deque(maxlen=20_000))
    #: per part failed safe at its deadline, ms: its release to ``on_part`` (the reject pulse first)
    #: after the deadline the timer aimed at (trigger + budget - guard_ms): the deadline path's lateness
    deadline_lateness_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=200_000))
    #: (monotonic s, part id) of recent parts decided after their budget, for the health alarm
    missed: collections.deque[tuple[float, str]] = field(default_factory=lambda: collections.deque(maxlen=1000))

    def window(self, seconds: float, now: float | None = None) -> dict[str, float]:
        """Parts decided in the last ``seconds``: how many, how many incomplete, p99 trigger->verdict."""
        now = time.monotonic() if now is None else now
        rows = [r for r in list(self.recent) if now - r[0] <= seconds]
        lat = np.asarray([r[1] for r in rows], dtype=np.float64)
        return {
            "parts": len(rows),
            "incomplete": sum(r[2] for r in rows),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else 0.0,
        }

    def as_dict(self, budget_ms: float) -> dict[str, Any]:
        pct = _pcts(self.verdict_ms)
        return {
            "triggered": self.triggered,
            "verdicts": self.verdicts,
            "ok": self.ok,
            "ng": self.ng,
            "incomplete": self.incomplete,
            "deadline_missed": self.deadline_missed,
            "late_frames": self.late_frames,
            "unmatched_frames": self.unmatched_frames,
            "duplicate_frames": self.duplicate_frames,
            "failed_safe": self.failed_safe,
            "reordered": self.reordered,
            "budget_ms": budget_ms,
            "trigger_to_verdict_ms": pct,
            "deadline_lateness_ms": _pcts(self.deadline_lateness_ms),
            # the cycle, stage by stage (p50/p99 over parts): trigger -> exposure + readout + encoder
            # travel -> frame acquired; the slowest frame's wait for a worker and its inference
            "stages_ms": {k: _pcts(v) for k, v in self.stages.items()},
            "escape_rate": self.escapes / self.truth_ng if self.truth_ng else 0.0,
            "false_reject_rate": self.false_rejects / self.truth_ok if self.truth_ok else 0.0,
            "truth_ng_parts": self.truth_ng,
            "truth_ok_parts": self.truth_ok,
        }


def _pcts(values: collections.deque[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))} if a.size else {
        "p50": 0.0, "p99": 0.0}


class PartTracker:
    """Parts of one line: triggers in, `PartResult` out (by completion or by deadline).

    Args:
        line: The line's name (the station's), stored with every part.
        cameras: The cameras that owe each part one frame.
        budget_ms: Trigger to verdict; a part not complete by then fails safe.
        rule: How the frames' verdicts make the part's.
        on_part: The ordered part stream: called with each decided part in trigger order, from
            the thread that calls `release` (a worker's fan-out after it handed the frames on, the
            tracker's timer after a deadline), never from two threads at once.
        recipe: Product recipe name stored with each part.
        fail_safe: Asked at each verdict; a reason (e.g. results cannot be stored) turns
            an OK part into NG ``"fail safe: <reason>"``.
        id_prefix: Put before the station's own part numbers (a run's start time), so that
            they never repeat across restarts.
    """

    def __init__(
        self,
        line: str,
        cameras: Sequence[str],
        budget_ms: float,
        rule: PartRule | None = None,
        on_part: Callable[[PartResult], None] | None = None,
        recipe: str = "",
        id_prefix: str = "",
        fail_safe: Callable[[], str | None] | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("a line needs at least one camera")
        self.line = line
        self.cameras = tuple(cameras)
        self.budget_ms = float(budget_ms)
        self.rule = rule or PartRule()
        self.on_part = on_part
        self.recipe = recipe
        self.id_prefix = id_prefix
        self.fail_safe = fail_safe
        self.stats = PartStats()
        # an incomplete part is failed a little before its deadline, so that the NG is out
        # (to the PLC, the reject gate) by the deadline, not a timer tick after it
        self.guard_ms = guard_ms(self.budget_ms)
        self._lock = threading.Condition()
        self._open: collections.OrderedDict[int, _OpenPart] = collections.OrderedDict()
        self._recent: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._decided: dict[int, PartResult] = {}  # decided, waiting for an earlier part's verdict
        self._expired: dict[int, int] = {}  # trigger id -> deadline (ns) of parts failed safe, until released
        self._release_lock = threading.Lock()  # one thread hands parts on at a time: keeps the order
        self._next_trigger = 0
        self._next_part = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: how the deadline timer thread is scheduled (`camera.realtime.raise_thread_priority`); "" before start
        self.timer_priority = ""

    # ------------------------------------------------------------------ triggers
    def open_part(self, part_id: str | None = None, trigger_ns: int | None = None) -> int:
        """Open a part at its trigger; returns the trigger id its frames will carry.

        Raises:
            ValueError: ``part_id`` is not 1-64 letters, digits, '.', '_', ':' or '-'.
        """
        if part_id is not None and not re.fullmatch(PART_ID_PATTERN, part_id):
            raise ValueError(f"part id {part_id[:80]!r}: 1-64 letters, digits, '.', '_', ':' or '-'")
        now_ns = time.perf_counter_ns()
        t_ns = trigger_ns if trigger_ns is not None else now_ns
        wall = time.time() - (now_ns - t_ns) / 1e9
        with self._lock:
            self._next_trigger += 1
            tid = self._next_trigger
            if part_id is None:
                self._next_part += 1
                part_id = f"{self.id_prefix}{self._next_part}"
            deadline = t_ns + int((self.budget_ms - self.guard_ms) * 1e6)
            self._open[tid] = _OpenPart(tid, part_id, t_ns, wall, deadline, self.recipe, self.budget_ms)
            self.stats.triggered += 1
            self._lock.notify_all()
        return tid

    def begin_recipe(self, recipe: str, budget_ms: float | None = None) -> int:
        """Parts triggered from now on belong to ``recipe`` (and its budget); returns the first
        trigger id that will (the part boundary of a product changeover)."""
        with self._lock:
            self.recipe = recipe
            if budget_ms is not None:
                self.budget_ms = float(budget_ms)
                self.guard_ms = guard_ms(self.budget_ms)
            return self._next_trigger + 1

    def lowest_open(self) -> int | None:
        """The trigger id of the oldest part still waiting for its verdict (None: none open)."""
        with self._lock:
            return next(iter(self._open), None)

    def release(self) -> list[PartResult]:
        """Hand every decided part whose earlier parts are all decided to ``on_part``, in trigger order.

        Call it after the frames of the parts just decided were handed to their sinks (the
        station's fan-out does), so that a part never reaches a sink before its own frames.

        Returns:
            The parts released by this call, in the order given to ``on_part``.
        """
        with self._release_lock:
            return self._release_due()

    def _release_due(self) -> list[PartResult]:
        with self._lock:
            if not self._decided:
                return []
            first_open = next(iter(self._open), None)
            due = sorted(t for t in self._decided if first_open is None or t < first_open)
            parts = [self._decided.pop(t) for t in due]
            deadlines = [self._expired.pop(t, None) for t in due]
        for p, deadline_ns in zip(parts, deadlines, strict=True):
            if deadline_ns is not None:
                self.stats.deadline_lateness_ms.append((time.perf_counter_ns() - deadline_ns) / 1e6)
            self._emit(p)
        return parts

    @property
    def held(self) -> int:
        """Decided parts waiting for an earlier part's verdict before `release` hands them on."""
        with self._lock:
            return len(self._decided)

    def open_before(self, trigger_id: int) -> int:
        """How many parts triggered before ``trigger_id`` still wait for their verdict."""
        with self._lock:
            return sum(1 for tid in self._open if tid < trigger_id)

    def part_id_of(self, trigger_id: int) -> str | None:
        """The part id of an open or recently decided part's trigger."""
        with self._lock:
            part = self._open.get(trigger_id)
            return part.part_id if part is not None else self._recent.get(trigger_id)

    @property
    def open_parts(self) -> int:
        with self._lock:
            return len(self._open)

    # ------------------------------------------------------------------ frames
    def add(self, result: InspectionResult) -> tuple[InspectionResult, PartResult | None]:
        """Match a frame's result to its part: ``(result with part id, the part if now complete)``."""
        tid = result.trigger_id
        if tid is None:
            with self._lock:
                self.stats.unmatched_frames += 1
            return result, None
        with self._lock:
            part = self._open.get(tid)
            if part is None:
                pid = self._recent.get(tid)
                if pid is None:
                    self.stats.unmatched_frames += 1
                    return result, None
                self.stats.late_frames += 1
                log.warning("part %s: frame from %s arrived after the verdict (late)", pid, result.camera_id)
                return replace(result, part_id=pid, late=True), None
            tagged = replace(result, part_id=part.part_id)
            if result.camera_id not in self.cameras or result.camera_id in part.frames:
                self.stats.duplicate_frames += 1
                return replace(tagged, late=True), None
            part.frames[result.camera_id] = tagged
            if len(part.frames) < len(self.cameras):
                return tagged, None
            del self._open[tid]
            decided = self._decide(part, time.perf_counter_ns())
        return tagged, decided

    def add_frames(self, results: Sequence[InspectionResult],
                   hand_on: Callable[[list[InspectionResult]], None]) -> list[InspectionResult]:
        """Tag each result with its part, give the tagged results to ``hand_on`` (the frame sinks),
        then release the parts now due: a part never reaches ``on_part`` before its frames reached
        ``hand_on``, even when the deadline timer decides it meanwhile (its release waits for this).

        Returns:
            The tagged results, as handed on.
        """
        with self._release_lock:
            tagged = [self.add(r)[0] for r in results]
            hand_on(tagged)
            self._release_due()
        return tagged

    # ------------------------------------------------------------------ deadlines
    def expire(self, now_ns: int | None = None) -> list[PartResult]:
        """Decide every open part past its deadline (fail-safe NG) and release what is due;
        returns the parts decided now.

        Every open part is looked at, not only the oldest: after a switch to a shorter budget a
        later part's deadline comes first.
        """
        now_ns = time.perf_counter_ns() if now_ns is None else now_ns
        with self._lock:
            due = [tid for tid, part in self._open.items() if part.deadline_ns <= now_ns]
            for tid in due:
                self._expired[tid] = self._open[tid].deadline_ns
            out = [self._decide(self._open.pop(tid), now_ns) for tid in due]
        self.release()
        return out

    def start(self) -> None:
        """Run the deadline timer on its own thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"parts-{self.line}", daemon=True)
        self._thread.start()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every open part is decided (complete or past its deadline)."""
        end = time.monotonic() + (timeout_s if timeout_s is not None else self.budget_ms / 1000 + 1.0)
        with self._lock:
            while self._open:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def stop(self) -> list[PartResult]:
        """Stop the timer; parts still open are decided now (fail safe) and returned."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=5.0)
        with self._lock:
            now_ns = time.perf_counter_ns()
            rest = [self._decide(p, now_ns) for p in self._open.values()]
            self._open.clear()
        self.release()
        return rest

    def _run(self) -> None:
        # ahead of the workers and of other programs: an ordinary thread woke 17-56 ms late (p99) on a
        # loaded 2-core PC; this thread only waits and releases parts, it never spins
        self.timer_priority = raise_thread_priority()
        while not self._stop.is_set():
            with self._lock:
                if self._open:
                    first_ns = min(p.deadline_ns for p in self._open.values())
                    wait = max(0.0, (first_ns - time.perf_counter_ns()) / 1e9)
                else:
                    wait = 0.1
                if wait > 0:
                    self._lock.wait(min(wait, 0.1))
            self.expire()

    # ------------------------------------------------------------------ decisions
    def _decide(self, part: _OpenPart, now_ns: int) -> PartResult:
        """Build the part's result (lock held), count it and hold it for `release`."""
        missing = tuple(c for c in self.cameras if c not in part.frames)
        deciding: str | None
        if missing:
            verdict, reason, deciding = Verdict.NG, incomplete_reason(missing), missing[0]
        else:
            verdict, reason, deciding = self.rule.decide(part.frames)
        if verdict is Verdict.OK and self.fail_safe is not None:
            why = self.fail_safe()
            if why:
                verdict, reason, deciding = Verdict.NG, f"fail safe: {why}", None
                self.stats.failed_safe += 1
        frames = tuple(part.frames[c] for c in self.cameras if c in part.frames)
        verdict_ms = (now_ns - part.trigger_ns) / 1e6
        budget_ms = part.budget_ms or self.budget_ms
        acquired = max(((f.acquired_at - part.triggered_at) * 1000 for f in frames), default=0.0)
        # the last frame's result: acquired, then total_ms later (for a part failed safe at its
        # deadline this is when its last frame that did come was inspected, not the deadline)
        inspected = max(((f.acquired_at - part.triggered_at) * 1000 + f.times.total_ms for f in frames), default=0.0)
        truths = [f.truth.defective for f in frames if f.truth is not None]
        truth_ng: bool | None
        if any(truths):
            truth_ng = True
        elif len(truths) == len(self.cameras):
            truth_ng = False
        else:
            truth_ng = None
        result = PartResult(
            part_id=part.part_id,
            line=self.line,
            trigger_id=part.trigger_id,
            triggered_at=part.triggered_at,
            verdict=verdict,
            reason=reason,
            frames=frames,
            expected=self.cameras,
            missing=missing,
            deciding_camera=deciding,
            budget_ms=budget_ms,
            deadline_met=verdict_ms <= budget_ms,
            times=PartTimes(acquired_ms=max(0.0, acquired), inspected_ms=max(0.0, inspected), verdict_ms=verdict_ms),
            truth_ng=truth_ng,
            recipe=part.recipe,
        )
        s = self.stats
        s.verdicts += 1
        s.ok += verdict is Verdict.OK
        s.ng += verdict is Verdict.NG
        s.incomplete += bool(missing)
        s.deadline_missed += not result.deadline_met
        if not result.deadline_met:
            s.missed.append((time.monotonic(), part.part_id))
        s.verdict_ms.append(verdict_ms)
        if frames:
            s.stages["acquired"].append(max(0.0, acquired))
            s.stages["wait"].append(max(f.times.wait_ms for f in frames))
            s.stages["inference"].append(max(f.times.inference_ms for f in frames))
        s.recent.append((time.monotonic(), verdict_ms, bool(missing)))
        if truth_ng is True:
            s.truth_ng += 1
            s.escapes += verdict is Verdict.OK
        elif truth_ng is False:
            s.truth_ok += 1
            s.false_rejects += verdict is Verdict.NG
        if next(iter(self._open), part.trigger_id) < part.trigger_id:
            s.reordered += 1
        self._decided[part.trigger_id] = result
        self._recent[part.trigger_id] = part.part_id
        while len(self._recent) > _RECENT_PARTS:
            self._recent.popitem(last=False)
        self._lock.notify_all()
        if missing:
            log.warning("part %s: NG %s", part.part_id, reason)
        return result

    def _emit(self, part: PartResult) -> None:
        if self.on_part is not None:
            try:
                self.on_part(part)
            except Exception:  # a sink's bug must not stop the deadline timer
                log.exception("part %s: delivering the result failed", part.part_id)
