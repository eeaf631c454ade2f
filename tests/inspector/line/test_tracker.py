"""PartTracker: frames matched by trigger id in any order, deadlines, late frames, one verdict per part."""

from __future__ import annotations

import dataclasses
import time

import pytest

from camera.renderer import GroundTruth, GroundTruthBox
from inspector.line.part_verdict import CameraGroup, PartRule
from inspector.line.tracker import PartTracker
from inspector.pipeline.results import PartResult, Verdict
from tests.inspector.factories import make_result

CAMS = ("cam1", "cam2", "cam3")


def frame(cam: str, trigger_id: int | None, verdict: str = "OK", defective: bool | None = None):
    r = make_result(cam, seq=trigger_id or 0, verdict=Verdict(verdict))
    truth = None
    if defective is not None:
        boxes = (GroundTruthBox(0, 1, 1, 9, 9),) if defective else ()
        truth = GroundTruth(seed=1, part_kind="pcb", boxes=boxes)
    return dataclasses.replace(r, trigger_id=trigger_id, truth=truth)


def tracker(budget_ms: float = 10_000, rule: PartRule | None = None) -> tuple[PartTracker, list[PartResult]]:
    got: list[PartResult] = []
    return PartTracker("line", CAMS, budget_ms, rule, on_part=got.append), got


def test_frames_arriving_out_of_order_across_cameras_go_to_their_own_parts() -> None:
    t, _ = tracker()
    a, b = t.open_part(), t.open_part()
    decided = []
    # part b's frames first, interleaved with a's, cameras in different orders
    for cam, tid, v in [("cam2", b, "OK"), ("cam1", a, "OK"), ("cam3", b, "NG"), ("cam3", a, "OK"),
                        ("cam1", b, "OK"), ("cam2", a, "OK")]:
        tagged, part = t.add(frame(cam, tid, v))
        assert tagged.part_id == t.part_id_of(tid)
        if part is not None:
            decided.append(part)
    assert [p.trigger_id for p in decided] == [b, a]
    pb, pa = decided
    assert pb.verdict is Verdict.NG and pb.deciding_camera == "cam3" and pb.reason.startswith("cam3: ")
    assert pa.verdict is Verdict.OK and pa.reason == "no defect"
    assert {f.camera_id for f in pa.frames} == set(CAMS)
    assert all(f.trigger_id == a for f in pa.frames) and all(f.trigger_id == b for f in pb.frames)
    assert pa.deadline_met and not pa.missing
    assert t.stats.verdicts == 2 and t.stats.ok == 1 and t.stats.ng == 1 and t.open_parts == 0


def test_a_part_missing_a_frame_at_its_deadline_is_ng_incomplete_and_counted() -> None:
    t, got = tracker(budget_ms=50)
    tid = t.open_part("P-4711")
    t.add(frame("cam1", tid))
    t.add(frame("cam2", tid))
    assert t.expire() == []  # not yet
    t.start()
    try:
        deadline = time.monotonic() + 2.0
        while not got and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        t.stop()
    assert len(got) == 1
    p = got[0]
    assert p.part_id == "P-4711" and p.verdict is Verdict.NG
    assert p.missing == ("cam3",) and p.reason == "incomplete: cam3 no image"
    assert p.deadline_met, f"the fail-safe verdict must be out by the deadline, took {p.times.verdict_ms:.1f} ms"
    assert p.times.verdict_ms <= 50
    assert t.stats.incomplete == 1 and t.stats.ng == 1 and t.stats.ok == 0


def test_a_frame_after_its_parts_verdict_is_late_keeps_its_part_and_never_joins_the_next() -> None:
    t, _ = tracker()
    first = t.open_part()
    t.add(frame("cam1", first))
    t.add(frame("cam2", first))
    [expired] = t.expire(now_ns=time.perf_counter_ns() + 20_000_000_000)
    assert expired.missing == ("cam3",)
    nxt = t.open_part()
    late, part = t.add(frame("cam3", first, "OK"))
    assert part is None
    assert late.late and late.part_id == expired.part_id
    assert t.stats.late_frames == 1
    # the next part still owes cam3 its own frame
    t.add(frame("cam1", nxt))
    t.add(frame("cam2", nxt))
    assert t.open_parts == 1
    _, done = t.add(frame("cam3", nxt))
    assert done is not None and not done.missing and all(f.trigger_id == nxt for f in done.frames)


def test_frames_without_a_known_trigger_are_counted_not_given_to_a_part() -> None:
    t, _ = tracker()
    t.open_part()
    for r in (frame("cam1", None), frame("cam1", 999)):
        tagged, part = t.add(r)
        assert tagged.part_id is None and part is None
    assert t.stats.unmatched_frames == 2


def test_a_second_frame_from_one_camera_does_not_complete_the_part() -> None:
    t, _ = tracker()
    tid = t.open_part()
    t.add(frame("cam1", tid))
    dup, part = t.add(frame("cam1", tid, "NG"))
    assert part is None and dup.late and t.stats.duplicate_frames == 1
    t.add(frame("cam2", tid))
    _, done = t.add(frame("cam3", tid))
    assert done is not None and done.verdict is Verdict.OK  # the duplicate NG did not count


def test_k_of_n_group_needs_k_views_to_say_ng() -> None:
    rule = PartRule((CameraGroup(("cam1", "cam2"), k=2),))
    t, _ = tracker(rule=rule)
    one = t.open_part()
    for cam, v in (("cam1", "NG"), ("cam2", "OK"), ("cam3", "OK")):
        _, p1 = t.add(frame(cam, one, v))
    assert p1 is not None and p1.verdict is Verdict.OK
    two = t.open_part()
    for cam, v in (("cam1", "NG"), ("cam2", "NG"), ("cam3", "OK")):
        _, p2 = t.add(frame(cam, two, v))
    assert p2 is not None and p2.verdict is Verdict.NG and "2 of 2 views" in p2.reason
    three = t.open_part()
    for cam, v in (("cam1", "OK"), ("cam2", "OK"), ("cam3", "NG")):
        _, p3 = t.add(frame(cam, three, v))
    assert p3 is not None and p3.verdict is Verdict.NG and p3.deciding_camera == "cam3"  # ungrouped: any NG


def test_part_truth_is_the_union_of_its_faces_and_drives_escape_and_false_reject_rates() -> None:
    t, _ = tracker()
    escape = t.open_part()  # a defect on one face, every camera said OK
    for cam, d in (("cam1", False), ("cam2", True), ("cam3", False)):
        _, p = t.add(frame(cam, escape, "OK", defective=d))
    assert p is not None and p.truth_ng is True and p.verdict is Verdict.OK
    reject = t.open_part()  # an OK part judged NG
    for cam, v in (("cam1", "NG"), ("cam2", "OK"), ("cam3", "OK")):
        _, p = t.add(frame(cam, reject, v, defective=False))
    assert p is not None and p.truth_ng is False
    rep = t.stats.as_dict(t.budget_ms)
    assert rep["escape_rate"] == 1.0 and rep["false_reject_rate"] == 1.0
    assert rep["verdicts"] == rep["triggered"] == 2


@pytest.mark.parametrize("bad", ["", "../x", "a b", "x" * 65, "-lead"])
def test_a_callers_part_id_must_be_plain(bad: str) -> None:
    t, _ = tracker()
    with pytest.raises(ValueError, match="part id"):
        t.open_part(bad)
    assert t.stats.triggered == 0


def test_stop_fails_safe_every_part_still_open() -> None:
    t, got = tracker()
    t.open_part()
    t.open_part()
    left = t.stop()
    assert len(left) == 2 and all(p.verdict is Verdict.NG and p.missing == CAMS for p in left)
    assert got == left


def test_an_ok_part_whose_results_cannot_be_kept_fails_safe() -> None:
    reason: list[str | None] = [None]
    t = PartTracker("line", ("cam1",), 1000, fail_safe=lambda: reason[0])
    ok = t.open_part()
    _, p = t.add(frame("cam1", ok))
    assert p is not None and p.verdict is Verdict.OK
    reason[0] = "results cannot be stored (database and spool full)"
    bad = t.open_part()
    _, p = t.add(frame("cam1", bad))
    assert p is not None and p.verdict is Verdict.NG
    assert p.reason == "fail safe: results cannot be stored (database and spool full)"
    assert t.stats.failed_safe == 1


def test_a_failed_safe_part_says_when_its_frames_were_inspected_not_the_deadline() -> None:
    t, _ = tracker(budget_ms=10_000)
    tid = t.open_part()
    r = frame("cam1", tid)
    t.add(dataclasses.replace(r, acquired_at=time.time(), times=dataclasses.replace(r.times, total_ms=30.0)))
    [p] = t.expire(now_ns=time.perf_counter_ns() + 20_000_000_000)
    assert p.times.verdict_ms > 10_000
    assert 30.0 <= p.times.inspected_ms < 1_000, p.times


def test_parts_decided_on_two_threads_are_released_in_trigger_order() -> None:
    """The deadline timer decides part a; meanwhile the fan-out completes part b on another thread
    and releases. b must not be handed on before a, though a left the open parts first."""
    import threading

    a_decided, a_may_go = threading.Event(), threading.Event()
    released: list[int] = []

    def deliver(part: PartResult) -> None:  # the one ordered callback
        if part.trigger_id == a:  # the timer thread, inside the release of a
            a_decided.set()
            assert a_may_go.wait(5.0)
        released.append(part.trigger_id)

    t = PartTracker("line", ("cam1",), 50.0, on_part=deliver)
    a, b = t.open_part(), t.open_part()
    timer = threading.Thread(target=t.expire, args=(t._open[a].deadline_ns,))
    timer.start()
    assert a_decided.wait(5.0)
    _tagged, pb = t.add(frame("cam1", b))
    assert pb is not None
    releaser = threading.Thread(target=t.release)
    releaser.start()
    time.sleep(0.05)
    assert released == []  # b waits while a is still being handed on
    a_may_go.set()
    timer.join(5.0)
    releaser.join(5.0)
    assert released == [a, b]


def test_a_part_decided_early_is_held_until_every_earlier_part_is_decided() -> None:
    t, got = tracker()
    first, second, third = t.open_part(), t.open_part(), t.open_part()
    for tid in (second, third):  # both complete while the first still waits for a frame
        for cam in CAMS:
            t.add(frame(cam, tid))
    t.release()
    assert got == [] and t.held == 2
    for cam in CAMS[:2]:
        t.add(frame(cam, first))
    t.release()
    assert got == []
    [late] = t.expire(now_ns=time.perf_counter_ns() + 20_000_000_000)
    assert late.trigger_id == first and late.incomplete
    assert [p.trigger_id for p in got] == [first, second, third] and t.held == 0
    assert t.stats.reordered == 2


def test_a_later_part_with_an_earlier_deadline_is_decided_at_its_own_deadline() -> None:
    """After a switch to a shorter budget the next part's deadline comes before the previous
    part's: expire must not stop at the first open part that is not yet due."""
    t, got = tracker(budget_ms=1_000)
    slow = t.open_part()
    t.begin_recipe("short", budget_ms=100)
    fast = t.open_part()
    now = time.perf_counter_ns()
    decided = t.expire(now_ns=now + 500_000_000)
    assert [p.trigger_id for p in decided] == [fast]
    assert t.open_parts == 1 and got == []  # the fast part is held for the slow one's verdict
    t.expire(now_ns=now + 2_000_000_000)
    assert [p.trigger_id for p in got] == [slow, fast]


def test_release_without_parts_is_empty() -> None:
    t, got = tracker()
    assert t.release() == [] and got == []
