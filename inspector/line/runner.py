"""`Line`: the triggered line of a station — its cameras, its trigger source, its part tracker.

The station builds one when ``[line] mode = "triggered"``: every camera is put into
FrameStart trigger mode, the simulated conveyor (or only commands: a PLC,
`StationControl.trigger_part`) opens parts and fires the cameras, and the `PartTracker`
turns their frames into one `PartResult` per part by its deadline. Stopping is in order:
no new parts, the last triggers fire, every open part is decided, then the cameras stop.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from camera.conveyor import Conveyor
from camera.reject import RejectOutput, RejectUnsupported
from camera.trigger import TriggeredCamera, TriggerSettings, TriggerUnsupported
from inspector.line.part_verdict import PartRule
from inspector.line.tracker import PartTracker
from inspector.pipeline.results import PartResult, Verdict

log = logging.getLogger(__name__)


class LineError(RuntimeError):
    """The line cannot be set up (one line: a camera without triggers, ...)."""


class Line:
    """Triggers, cameras and parts of one triggered line.

    Args:
        name: The line's (station's) name.
        cameras: Camera id -> camera, in line order; each must be a `TriggeredCamera`.
        budget_ms: Trigger to verdict.
        on_part: Receives each decided part (completed or failed safe).
        rule: Part verdict rule (default: NG when any camera says NG).
        trigger_sources: Camera id -> SFNC TriggerSource (default ``Software``).
        positions_mm: Camera id -> distance from the photo-eye.
        fail_safe: See `PartTracker` (the station: results that cannot be made durable).
        conveyor: Run the simulated conveyor (parts_per_min, jitter, belt_mm_s); None:
            parts come only from `trigger_part`.
    """

    def __init__(
        self,
        name: str,
        cameras: Mapping[str, Any],
        budget_ms: float,
        on_part: Callable[[PartResult], None],
        *,
        rule: PartRule | None = None,
        trigger_sources: Mapping[str, str] | None = None,
        positions_mm: Mapping[str, float] | None = None,
        conveyor: Mapping[str, float] | None = None,
        recipe: str = "",
        fail_safe: Callable[[], str | None] | None = None,
        reject: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.cameras: dict[str, TriggeredCamera] = {}
        for cid, cam in cameras.items():
            if not isinstance(cam, TriggeredCamera):
                raise LineError(f"camera {cid}: cannot be triggered (no trigger support in its driver)")
            source = (trigger_sources or {}).get(cid, "Software")
            try:
                cam.configure_trigger(TriggerSettings(source=source))
            except TriggerUnsupported as exc:
                raise LineError(str(exc)) from None
            self.cameras[cid] = cam
        self.positions_mm = dict(positions_mm or {})
        # the station's own part ids: "<start time>-<n>", monotonic and never repeated across restarts
        prefix = time.strftime("%y%m%d-%H%M%S-")
        self.tracker = PartTracker(name, list(self.cameras), budget_ms, rule, on_part, recipe, prefix, fail_safe)
        self.gate = RejectGate()
        self.reject_output: RejectOutput | None = None
        self.gate_delay_s: float | None = None
        if reject is not None:
            cid = str(reject["camera"])
            try:
                self.reject_output = RejectOutput(cid, cameras[cid].features, line=str(reject.get("line", "Line1")),
                                                  pulse_ms=float(reject.get("pulse_ms", 20.0)))
            except RejectUnsupported as exc:
                raise LineError(str(exc)) from None
            self.gate_delay_s = float(reject["mm"]) / float((conveyor or {}).get("belt_mm_s", 500.0))
            level = getattr(cameras[cid], "output_high", None)
            self.gate.sense = (lambda cam=cameras[cid]: bool(cam.output_high)) if level is not None else None
        self.conveyor: Conveyor | None = None
        if conveyor is not None:
            self.conveyor = Conveyor(
                self._photo_eye,
                parts_per_min=float(conveyor.get("parts_per_min", 300.0)),
                jitter=float(conveyor.get("jitter", 0.1)),
                belt_mm_s=float(conveyor.get("belt_mm_s", 500.0)),
                reject_mm=float(reject["mm"]) if reject is not None and self.gate.sense is not None else None,
                on_gate=self.gate.at_gate,
            )
            for cid, cam in self.cameras.items():
                self.conveyor.add_camera(cam, self.positions_mm.get(cid, 0.0))

    def _photo_eye(self, t_ns: int) -> int:
        return self.tracker.open_part(trigger_ns=t_ns)

    def trigger_part(self, part_id: str | None = None) -> str:
        """Open a part now (a PLC or operator command) and fire every camera's software trigger.

        Returns:
            The part's id (the caller's, or the station's next one).
        """
        tid = self.tracker.open_part(part_id)
        for cid, cam in self.cameras.items():
            try:
                cam.fire(tid)
            except Exception as exc:  # noqa: BLE001 - the part fails safe at its deadline
                log.warning("part trigger %d: camera %s did not fire: %s", tid, cid, exc)
        return self.tracker.part_id_of(tid) or str(tid)

    def part_decided(self, part: PartResult) -> None:
        """A part's verdict: an NG part gets its reject pulse timed to reach the gate with it."""
        self.gate.decided(part)
        if self.reject_output is None or self.gate_delay_s is None:
            return
        if part.verdict is not Verdict.NG:
            self.gate.sent(pulse=False)
            return
        half_pulse = self.reject_output.pulse_ns / 2e9
        due_in_s = part.triggered_at + self.gate_delay_s - half_pulse - time.time()
        if due_in_s <= 0:  # too late for the gate: it would push the next part off instead
            self.gate.too_late(part)
            log.error("part %s: NG but its verdict came after it passed the reject gate", part.part_id)
            return
        self.reject_output.pulse_at(time.perf_counter_ns() + int(due_in_s * 1e9))
        self.gate.sent(pulse=True)

    def start(self) -> None:
        """Start the deadline timer, then the belt (cameras must be streaming already)."""
        if self.reject_output is not None:
            self.reject_output.start()
        self.tracker.start()
        if self.conveyor is not None:
            self.conveyor.start()

    def pause(self, paused: bool) -> None:
        if self.conveyor is not None:
            self.conveyor.pause(paused)

    def stop_triggers(self) -> None:
        """No new parts; triggers of parts already on the belt still fire."""
        if self.conveyor is not None:
            self.conveyor.stop()

    def finish(self, timeout_s: float | None = None) -> None:
        """Wait for every open part's verdict (by completion or deadline), then stop the timer."""
        t0 = time.monotonic()
        self.tracker.drain(timeout_s)
        left = self.tracker.stop()
        if self.reject_output is not None:
            time.sleep(self.gate_delay_s or 0.0)  # the last parts reach the gate
            self.reject_output.stop()
        if left:
            log.warning("line %s: %d parts still open at stop: NG (fail safe)", self.name, len(left))
        log.debug("line %s: drained in %.2f s", self.name, time.monotonic() - t0)

    def report(self) -> dict[str, Any]:
        """The report's ``parts`` section."""
        out = self.tracker.stats.as_dict(self.tracker.budget_ms)
        per_cam = {cid: cam.trigger_counters().as_dict() for cid, cam in self.cameras.items()}
        out["missed_triggers"] = sum(c["missed"] for c in per_cam.values())
        out["trigger_overruns"] = sum(c["overruns"] for c in per_cam.values())
        out["parts_per_min"] = self.conveyor.parts_per_min if self.conveyor is not None else None
        out["deadline_timer"] = self.tracker.timer_priority  # "SCHED_FIFO 10", "nice -10" or "normal"
        if self.reject_output is not None:
            out["reject_gate"] = self.gate.as_dict()
        out["cameras"] = per_cam
        return out


class RejectGate:
    """What the reject gate did with each part, against the part's verdict.

    ``reject_too_late`` counts NG parts whose verdict came after they had passed the gate (no
    pulse sent); on the simulated conveyor the gate is also watched (`at_gate`): an NG part that
    went on with the good parts is ``reject_late``. Each such part is a *missed reject*: `misses`
    keeps the recent ones (when, part id, what happened) for the health alarm, and `counters`
    gives the three numbers the live wall shows (in time, late, passed).
    """

    def __init__(self) -> None:
        self.sense: Callable[[], bool] | None = None  # the output's level at the gate
        self._parts: collections.OrderedDict[int, tuple[Verdict, str]] = collections.OrderedDict()
        self._too_late: set[int] = set()  # trigger ids counted in reject_too_late (not again at the gate)
        self.rejected_in_time = 0  # NG and pushed off
        self.reject_late = 0  # NG but it went on with the good parts
        self.false_rejects_at_gate = 0  # OK (by its verdict) but pushed off
        self.passed_ok = 0
        self.no_verdict_at_gate = 0
        self.reject_too_late = 0  # the verdict came after the part had passed (no pulse sent)
        self.missed = 0  # NG parts not pushed off: too late, or not pushed at the gate (each part once)
        #: (time.monotonic(), part id, what) of recent missed rejects, newest last
        self.misses: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=1000)

    def decided(self, part: PartResult) -> None:
        self._parts[part.trigger_id] = (part.verdict, part.part_id)
        while len(self._parts) > 10_000:
            tid, _ = self._parts.popitem(last=False)
            self._too_late.discard(tid)

    def too_late(self, part: PartResult) -> None:
        """``part`` is NG but its verdict came after it passed the gate: no pulse can push it off."""
        self.reject_too_late += 1
        self._too_late.add(part.trigger_id)
        self.missed += 1
        self.misses.append((time.monotonic(), part.part_id, "NG verdict came after it passed the reject gate"))

    def sent(self, *, pulse: bool) -> None:
        """A part's verdict reached the gate's output in time: a pulse timed for it, or none (OK).

        Counted here only where the gate is not watched (a real line); a watched gate counts
        what it saw (`at_gate`).
        """
        if self.sense is not None:
            return
        if pulse:
            self.rejected_in_time += 1
        else:
            self.passed_ok += 1

    def at_gate(self, trigger_id: int) -> None:
        if self.sense is None:
            return
        pushed = self.sense()
        verdict, part_id = self._parts.get(trigger_id, (None, ""))
        if verdict is None:
            self.no_verdict_at_gate += 1
        elif verdict is Verdict.NG:
            if pushed:
                self.rejected_in_time += 1
            else:
                self.reject_late += 1
                if trigger_id not in self._too_late:  # already a miss when its verdict came
                    self.missed += 1
                    self.misses.append((time.monotonic(), part_id, "NG part passed the reject gate"))
        elif pushed:
            self.false_rejects_at_gate += 1
        else:
            self.passed_ok += 1

    def counters(self) -> tuple[int, int, int]:
        """``(in time, late, passed)``: NG parts pushed off, NG parts not pushed off, OK parts passed."""
        return self.rejected_in_time, self.missed, self.passed_ok

    def last_miss(self) -> tuple[float, str, str] | None:
        """The newest missed reject ``(time.monotonic(), part id, what)``, or None."""
        return self.misses[-1] if self.misses else None

    def as_dict(self) -> dict[str, int]:
        return {"rejected_in_time": self.rejected_in_time, "reject_late": self.reject_late,
                "false_rejects_at_gate": self.false_rejects_at_gate, "passed_ok": self.passed_ok,
                "no_verdict_at_gate": self.no_verdict_at_gate, "reject_too_late": self.reject_too_late,
                "missed": self.missed}
