"""``precision = "auto"`` measured: the fastest gated precision wins, the cache is keyed right and survives junk."""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inspector.pipeline.backends import precision_choice as pc
from inspector.pipeline.model_repo import DEFAULT_MODEL, ModelCard, load_card

SETTINGS = pc.Settings(device="CPU", max_batch=8, threads=0, streams="auto", depth=4, nms_iou=0.5, batch=8)
#: a CPU like the issue's EPYC, as its 8-camera pipeline runs: INT8 fastest, bf16 second, f32 last
EPYC = {"int8": 294.0, "bf16": 257.0, "f32": 149.0}


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeRun:
    """A precision whose windows run at ``fps`` times the machine's drift of the moment (no real time passes:
    the fake clock advances by the window)."""

    def __init__(self, name: str, fps: float, clock: FakeClock, turns: list[str], drift: list[float]) -> None:
        self.name, self.fps, self.clock, self.turns, self.drift = name, fps, clock, turns, drift
        self.closed = False

    def window(self, seconds: float) -> float:
        self.turns.append(self.name)
        self.clock.t += seconds
        return self.fps * self.drift[(len(self.turns) - 1) % len(self.drift)]

    def close(self) -> None:
        self.closed = True


def fake_measure(card: ModelCard, table: dict[str, float], offered=("FP32", "BF16", "INT8"), cpu_share: float = 1.0,
                 drift: list[float] | None = None, settings: pc.Settings = SETTINGS
                 ) -> tuple[pc.Measurement, dict[str, FakeRun], list[str]]:
    clock = FakeClock()
    runs: dict[str, FakeRun] = {}
    turns: list[str] = []
    made: list[pc.Settings] = []

    def make(_card: ModelCard, p: str, s: pc.Settings) -> FakeRun:
        made.append(s)
        runs[p] = FakeRun(p, table[p], clock, turns, drift or [1.0])
        return runs[p]

    m = pc.measure(card, settings, 1.0, make_run=make, offered=list(offered), clock=clock,
                   cpu_clock=lambda: clock.t * (os.cpu_count() or 1) * cpu_share)  # every core busy (times the share)
    assert all(s == settings for s in made)  # each precision built with the station's settings
    return m, runs, turns


def model_copy(dst: Path, gate_passed: bool | None = True) -> Path:
    """The shipped model folder (ONNX, INT8 IR, card); ``gate_passed`` rewrites the INT8 gate (None: no IR)."""
    src = load_card(DEFAULT_MODEL, verify=False).folder
    shutil.copytree(src, dst)
    text = (dst / "card.toml").read_text()
    if gate_passed is None:
        text = text.split("\n[int8]")[0] + "\n"
    elif not gate_passed:
        text = text.replace("[int8.gate]\npassed = true", "[int8.gate]\npassed = false")
    (dst / "card.toml").write_text(text)
    card = tomllib.loads(text)
    assert (card.get("int8", {}).get("gate", {}).get("passed") if gate_passed is not None else None) is gate_passed
    return dst


class FakeCore:
    """``ov.Core`` as far as `choose_auto` asks: the device's default precision and its capabilities."""

    def __init__(self, default: str = "bf16", caps: tuple[str, ...] = ("FP32", "BF16", "INT8")) -> None:
        self.default, self.caps = default, caps

    def get_property(self, device: str, key: str) -> object:
        return {"INFERENCE_PRECISION_HINT": self.default, "OPTIMIZATION_CAPABILITIES": list(self.caps)}[key]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own; `cache_path` is its parent's precision.json (beside the banks)."""
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache" / "banks"))
    monkeypatch.delenv(pc.MEASURE_ENV, raising=False)
    monkeypatch.setattr(pc, "_pending", {})
    monkeypatch.setattr(pc, "BACKGROUND", True)  # an `inspector bench` run earlier in the process turns it off
    return tmp_path / "cache"


# ---------------------------------------------------------------------- the choice
def test_each_precision_is_timed_in_turns_round_after_round_and_the_fastest_wins(tmp_path: Path) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    m, runs, turns = fake_measure(card, EPYC)
    assert m.winner == "int8" and set(m.fps) == {"f32", "bf16", "int8"} and m.batch == 8
    assert {p: len(r) for p, r in m.rounds.items()} == {p: pc.ROUNDS for p in EPYC}
    for p, fps in EPYC.items():
        assert m.fps[p] == pytest.approx(fps)
    # every round times each precision once, each round in another order (drift and the turn's place hit all alike)
    rounds = [turns[i : i + 3] for i in range(0, len(turns), 3)]
    assert len(rounds) == pc.ROUNDS and all(sorted(r) == ["bf16", "f32", "int8"] for r in rounds)
    assert len({r[0] for r in rounds}) == 3
    assert m.summary() == f"int8 294 fps > bf16 257 > f32 149 at batch 8, median of {pc.ROUNDS} rounds"
    assert m.cpu_share == pytest.approx(1.0) and all(r.closed for r in runs.values())
    # an AMX Xeon: bf16 fastest
    assert fake_measure(card, {"int8": 389.0, "bf16": 457.0, "f32": 221.0})[0].winner == "bf16"


def test_the_station_batch_is_what_the_precisions_are_timed_at(tmp_path: Path) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    one_camera = pc.Settings(max_batch=8, streams="auto", depth=4, nms_iou=0.5, batch=1)
    m, _runs, _turns = fake_measure(card, EPYC, settings=one_camera)
    assert m.batch == 1 and m.summary().endswith("at batch 1, median of 5 rounds")
    assert pc.Settings(max_batch=8, batch=0).station_batch == 8  # not said: a full batch
    assert pc.Settings(max_batch=4, batch=8).station_batch == 4  # never more than the scheduler sends


def test_a_precision_leads_only_by_more_than_the_noise_else_the_more_precise_runs() -> None:
    # INT8 1.5% ahead in every round, rounds steady: a lead above the 1% floor
    steady = {"int8": [304.5, 304.5, 304.5, 304.5, 304.5], "bf16": [300.0, 300.0, 300.0, 300.0, 300.0]}
    won = pc.pick(steady)
    assert (won.precision, won.fastest, won.runner_up) == ("int8", "int8", "bf16")
    assert won.lead == pytest.approx(0.015) and won.noise == pc.NOISE_FLOOR
    assert won.describe() == "int8 ahead of bf16 by 1.5% (noise 1.0%)"
    # the same median lead, but the paired ratios spread 1.5% +- 2.5%: bf16, the more precise
    noisy = {"int8": [304.5, 312.0, 297.0, 312.0, 297.0], "bf16": [300.0, 300.0, 300.0, 300.0, 300.0]}
    tie = pc.pick(noisy)
    assert (tie.precision, tie.fastest) == ("bf16", "int8") and pc.NOISE_FLOOR < tie.noise <= pc.TIE
    assert tie.describe().startswith("int8 and bf16 within the noise (int8 +1.5%, noise ")
    assert tie.describe().endswith("): the more precise runs")
    # a lead over 3% always counts, however noisy: the winner is never more than 3% behind the fastest
    wild = {"int8": [340.0, 270.0, 310.0, 400.0, 250.0], "bf16": [300.0, 300.0, 300.0, 300.0, 300.0]}
    assert pc.pick(wild).precision == "int8" and pc.pick(wild).noise == pc.TIE


def test_the_fastest_is_the_one_ahead_round_by_round_not_by_one_lucky_round() -> None:
    """bf16's median is the higher (66 against 65), but paired round by round INT8 is ahead (median ratio 71/68):
    the fastest is INT8, its lead positive (before: bf16 'ahead of int8 by -5.1%', read off a busy machine)."""
    rounds = {"bf16": [16.0, 66.0, 71.0, 53.0, 68.0], "int8": [65.0, 51.0, 44.0, 70.0, 71.0]}
    won = pc.pick(rounds)
    assert statistics.median(rounds["bf16"]) > statistics.median(rounds["int8"])
    assert (won.fastest, won.runner_up) == ("int8", "bf16") and won.lead == pytest.approx(71 / 68 - 1)
    assert won.noise == pc.TIE and won.precision == "int8"  # 4.4% > the 3% cap: it counts
    steady = {"bf16": [300.0, 310.0, 290.0], "int8": [330.0, 341.0, 319.0]}
    assert pc.pick(steady).fastest == "int8" and pc.pick(steady).lead == pytest.approx(0.1)


def test_drift_across_rounds_does_not_hide_a_steady_lead() -> None:
    """The machine slows down 30% over the measurement; every round INT8 runs 6% faster than bf16 in its turn.
    The medians alone overlap; the paired ratios do not."""
    drift = [1.0, 0.9, 0.8, 0.75, 0.7]
    rounds = {"bf16": [300.0 * d for d in drift], "int8": [318.0 * d for d in drift], "f32": [170.0 * d for d in drift]}
    won = pc.pick(rounds)
    assert won.precision == "int8" and won.lead == pytest.approx(0.06) and won.noise == pc.NOISE_FLOOR


def test_one_precision_timed_is_the_winner_and_nothing_timed_is_an_error() -> None:
    assert pc.pick({"f32": [150.0, 149.0]}).describe() == "f32, the only precision timed"
    with pytest.raises(ValueError):
        pc.pick({"f32": []})


def test_an_int8_ir_that_failed_its_gate_is_never_measured_nor_chosen(tmp_path: Path, cache_dir: Path) -> None:
    failed = load_card(model_copy(tmp_path / "failed", gate_passed=False))
    m, loops, _ = fake_measure(failed, EPYC)
    assert set(loops) == {"f32", "bf16"} and m.winner == "bf16"
    assert m.skipped == {"int8": "the INT8 IR failed its gate"}
    # a cache written while it passed, read after its gate was re-run and failed: the same IR, not chosen
    passed = load_card(model_copy(tmp_path / "passed"))
    good, _, _ = fake_measure(passed, EPYC)
    assert good.winner == "int8"
    pc.PrecisionCache(pc.cache_path()).put(pc.cache_key(failed, SETTINGS), good)
    choice = pc.choose_auto(FakeCore(), failed, SETTINGS)
    assert choice.measured and choice.precision == "bf16"
    assert choice.reason.split(" (cache ")[0] == (
        "measured (the station's pipeline, 4 in flight, streams auto): bf16 257 fps > f32 149 at batch 8, "
        "median of 5 rounds; bf16 ahead of f32 by 72.5% (noise 1.0%)")
    # no IR at all: f32 and bf16 only; a CPU without bf16: f32 only
    none, _, _ = fake_measure(load_card(model_copy(tmp_path / "none", gate_passed=None)), EPYC)
    assert set(none.fps) == {"f32", "bf16"} and none.skipped["int8"] == "the card has no INT8 IR"
    avx2, _, _ = fake_measure(failed, EPYC, offered=("FP32", "INT8"))
    assert set(avx2.fps) == {"f32"}


def test_a_measurement_starved_by_a_busy_machine_is_not_cached(tmp_path: Path, cache_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    starved, _, _ = fake_measure(card, EPYC, cpu_share=0.3)
    busy, _, _ = fake_measure(card, EPYC, cpu_share=0.7)  # beside a station at its rate: kept, and said so
    assert starved.cpu_share == pytest.approx(0.3)
    monkeypatch.setattr(pc, "measure", lambda *a, **k: starved)
    pc.measure_and_store(card, SETTINGS)
    assert not pc.cache_path().exists()
    monkeypatch.setattr(pc, "measure", lambda *a, **k: busy)
    pc.measure_and_store(card, SETTINGS)
    choice = pc.choose_auto(FakeCore(), card, SETTINGS)
    assert choice.precision == "int8" and "timed with 70% of the cores (the rest busy)" in choice.reason


# ---------------------------------------------------------------------- the cache
def test_a_miss_runs_the_rule_and_queues_a_measurement_a_hit_runs_the_winner(tmp_path: Path, cache_dir: Path) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    first = pc.choose_auto(FakeCore("bf16"), card, SETTINGS)
    assert (first.precision, first.measured) == ("bf16", False)
    assert first.reason == "rule: bf16, the CPU device's default (not measured yet)"
    assert len(pc._pending) == 1
    job = next(iter(pc._pending.values()))
    assert job["model"] == str(card.folder) and job["cache"] == str(cache_dir / "precision.json")
    # an AVX2 CPU's rule: the gated INT8 IR where the default is f32
    assert pc.choose_auto(FakeCore("f32", ("FP32", "INT8")), card, SETTINGS).precision == "int8"
    m, _, _ = fake_measure(card, EPYC)
    pc.PrecisionCache(pc.cache_path()).put(pc.cache_key(card, SETTINGS), m)
    hit = pc.choose_auto(FakeCore("bf16"), card, SETTINGS)
    assert (hit.precision, hit.measured) == ("int8", True)
    assert hit.reason == ("measured (the station's pipeline, 4 in flight, streams auto): int8 294 fps > bf16 257 > "
                          "f32 149 at batch 8, median of 5 rounds; int8 ahead of bf16 by 14.4% (noise 1.0%) "
                          f"(cache {cache_dir / 'precision.json'})")
    stored = json.loads((cache_dir / "precision.json").read_text())
    (entry,) = stored["entries"].values()
    assert entry["winner"] == "int8" and entry["key"]["model_sha256"] == card.sha256 and entry["key"]["batch"] == 8
    assert entry["rounds"]["int8"] == [294.0] * pc.ROUNDS and entry["why"] == "int8 ahead of bf16 by 14.4% (noise 1.0%)"


def test_the_key_holds_cpu_isa_runtime_model_int8_ir_and_settings(tmp_path: Path, cache_dir: Path) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    cpu = pc.cpu_identity("model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 sse4_2\n")
    assert cpu["cpu"] == "AMD EPYC" and cpu["isa"] == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    key = pc.cache_key(card, SETTINGS, cpu=cpu, runtime="2026.4.1")
    assert key["int8_sha256"] == [card.int8["sha256"], card.int8["bin_sha256"]]
    cache = pc.PrecisionCache(pc.cache_path())
    m, _, _ = fake_measure(card, EPYC)
    cache.put(key, m)
    got = cache.get(key)
    assert got is not None and (got.rounds, got.winner, got.batch) == (m.rounds, m.winner, m.batch)
    other_card = card.__class__(**{**card.__dict__, "sha256": "0" * 64})
    int8 = {**card.int8, "sha256": "1" * 64}
    other_ir = card.__class__(**{**card.__dict__, "extra": {**card.extra, "int8": int8}})
    misses = [
        pc.cache_key(card, SETTINGS, cpu={**cpu, "cpu": "Intel(R) Xeon(R) Processor"}, runtime="2026.4.1"),
        pc.cache_key(card, SETTINGS, cpu={**cpu, "isa": ["avx2"]}, runtime="2026.4.1"),
        pc.cache_key(card, SETTINGS, cpu={**cpu, "isa_limit": "AVX2"}, runtime="2026.4.1"),
        pc.cache_key(card, SETTINGS, cpu={**cpu, "cores": 16}, runtime="2026.4.1"),
        pc.cache_key(card, SETTINGS, cpu=cpu, runtime="2025.3.0"),
        pc.cache_key(other_card, SETTINGS, cpu=cpu, runtime="2026.4.1"),
        pc.cache_key(other_ir, SETTINGS, cpu=cpu, runtime="2026.4.1"),
        pc.cache_key(card, pc.Settings(max_batch=4, streams="auto", depth=4, nms_iou=0.5, batch=8), cpu=cpu,
                     runtime="2026.4.1"),
        # the station's batch (its cameras), its batches in flight, its streams: the pipeline runs otherwise
        pc.cache_key(card, replace(SETTINGS, batch=1), cpu=cpu, runtime="2026.4.1"),
        pc.cache_key(card, replace(SETTINGS, depth=2), cpu=cpu, runtime="2026.4.1"),
        pc.cache_key(card, replace(SETTINGS, streams=0), cpu=cpu, runtime="2026.4.1"),
    ]
    assert len({pc.key_digest(k) for k in misses}) == len(misses)
    for k in misses:
        assert cache.get(k) is None, k


@pytest.mark.parametrize("junk", [b"{not json", b"[1, 2]", b'{"version": 99, "entries": {}}', b"\xff\xfe\x00",
                                  b'{"version": 3, "entries": []}'])
def test_a_corrupt_cache_file_is_ignored_with_one_log_line(tmp_path: Path, cache_dir: Path, junk: bytes,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    path = cache_dir / "precision.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(junk)
    with caplog.at_level(logging.INFO, logger=pc.__name__):
        choice = pc.choose_auto(FakeCore("bf16"), card, SETTINGS)
    assert (choice.precision, choice.measured) == ("bf16", False)
    lines = [r for r in caplog.records if r.name == pc.__name__]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and str(path) in lines[0].getMessage()
    assert "Traceback" not in caplog.text
    m, _, _ = fake_measure(card, EPYC)  # the next measurement replaces it
    pc.PrecisionCache(path).put(pc.cache_key(card, SETTINGS), m)
    assert pc.choose_auto(FakeCore("bf16"), card, SETTINGS).precision == "int8"


def test_an_entry_with_wrong_types_is_ignored(tmp_path: Path, cache_dir: Path) -> None:
    card = load_card(model_copy(tmp_path / "m"))
    key = pc.cache_key(card, SETTINGS)
    path = cache_dir / "precision.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": pc.CACHE_VERSION, "entries": {
        pc.key_digest(key): {"key": key, "rounds": [1, 2], "batch": 8}}}, default=str))
    assert pc.choose_auto(FakeCore("bf16"), card, SETTINGS).measured is False


def test_a_cache_of_the_runtime_alone_is_measured_again(tmp_path: Path, cache_dir: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Version 1 timed the runtime alone (best round, batch 8 and 1): not how the pipeline runs, so not read."""
    card = load_card(model_copy(tmp_path / "m"))
    key = pc.cache_key(card, SETTINGS)
    path = cache_dir / "precision.json"
    path.parent.mkdir(parents=True)
    old = {"key": key, "fps": {"bf16": {"8": 243.0, "1": 120.0}, "int8": {"8": 248.0, "1": 110.0}}, "max_batch": 8,
           "winner": "bf16"}
    path.write_text(json.dumps({"version": 1, "entries": {pc.key_digest(key): old}}, default=str))
    with caplog.at_level(logging.INFO, logger=pc.__name__):
        choice = pc.choose_auto(FakeCore("bf16"), card, SETTINGS)
    assert not choice.measured and choice.reason.endswith("(not measured yet)") and len(pc._pending) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # not junk: no warning
    m, _, _ = fake_measure(card, EPYC)
    pc.PrecisionCache(path).put(key, m)  # the new measurement replaces the old file
    assert json.loads(path.read_text())["version"] == pc.CACHE_VERSION
    assert pc.choose_auto(FakeCore("bf16"), card, SETTINGS).precision == "int8"


def test_no_cache_folder_or_another_device_is_the_rule_and_nothing_is_queued(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pc, "_pending", {})
    card = load_card(model_copy(tmp_path / "m"))
    off = pc.choose_auto(FakeCore("bf16"), card, SETTINGS)  # the test suite's INSPECTOR_CACHE_DIR=off
    assert off.reason == "rule: bf16, the CPU device's default (not measured: no cache folder)"
    gpu = pc.choose_auto(FakeCore("f16"), card, pc.Settings(device="GPU"))
    assert gpu.precision == "f16" and "measured on CPUs only" in gpu.reason
    assert pc._pending == {} and pc.measure_pending() is None


# ---------------------------------------------------------------------- the real runtime
def test_a_real_measurement_of_the_shipped_model_then_auto_runs_its_winner(cache_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO on this CPU, a fraction of a second per precision: every gated precision is timed under the
    station's scheduler, the winner goes to the cache, and an ``auto`` backend built afterwards runs it."""
    from inspector.pipeline.backends import create_backend

    card = load_card(DEFAULT_MODEL)
    settings = pc.Settings(max_batch=2, streams=0, depth=2, nms_iou=0.5)
    be = create_backend("openvino", card, max_batch=2, precision="auto", depth=2, nms_iou=0.5)
    assert be.precision_choice is not None and not be.precision_choice.measured
    assert "not measured yet" in be.precision_choice.reason and len(pc._pending) == 1
    be.close()
    monkeypatch.setattr(pc, "MIN_CPU_SHARE", 0.0)  # kept even on the shared test machine's busiest minute
    m = pc.measure_and_store(card, settings, seconds=0.3)
    assert "f32" in m.fps and all(v > 0 for v in m.fps.values()) and m.batch == 2
    assert ("int8" in m.fps) == card.int8_gate_passed and m.winner in m.fps
    again = create_backend("openvino", card, max_batch=2, precision="auto", depth=2, nms_iou=0.5)
    try:
        assert again.precision == m.winner and again.precision_choice.measured
        assert again.precision_choice.reason.startswith("measured (the station's pipeline, 2 in flight, streams 0): ")
        assert again.infer_preprocessed(np.full((2, 320, 320, 3), 114, np.uint8)).shape[0] == 2
    finally:
        again.close()


def test_measure_pending_runs_the_child_at_low_priority_and_it_writes_the_cache(cache_dir: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The background path as a station takes it: a queued miss, measured in a child process."""
    card = load_card(DEFAULT_MODEL)
    settings = pc.Settings(max_batch=1, streams=0, depth=1, nms_iou=None)
    assert not pc.choose_auto(__import__("openvino").Core(), card, settings).measured
    monkeypatch.setattr(pc, "MEASURE_SECONDS", 0.2)
    monkeypatch.setattr(pc, "MIN_CPU_SHARE", 0.0)
    t = pc.measure_pending(delay_s=0.0)
    assert t is not None
    t.join(240)
    assert not t.is_alive()
    choice = pc.choose_auto(__import__("openvino").Core(), card, settings)
    assert choice.measured, choice.reason
    entry = next(iter(json.loads((cache_dir / "precision.json").read_text())["entries"].values()))
    assert entry["key"]["max_batch"] == 1 and entry["winner"] == choice.precision


def test_the_report_and_the_status_bar_say_which_precision_runs_and_why() -> None:
    from types import SimpleNamespace

    from inspector.ops.report import precision_reason, precision_status

    measured = pc.PrecisionChoice("int8", "measured: int8 294 fps > bf16 257 > f32 149 at batch 8 (cache /c)", True)
    auto = SimpleNamespace(precision="int8", precision_choice=measured, device="CPU")
    asked = SimpleNamespace(precision="f32", precision_choice=None, device="CPU")
    onnx = SimpleNamespace(device="CPU")  # a runtime that resolves nothing
    assert precision_reason(auto, "auto") == measured.reason
    assert precision_reason(asked, "f32") == "configured: precision = 'f32'"
    assert precision_reason(onnx, "auto") == "configured: precision = 'auto'"
    station = SimpleNamespace(config=SimpleNamespace(model=SimpleNamespace(precision="auto")),
                              workers=[SimpleNamespace(backend=auto)])
    assert precision_status(station) == ("precision: int8", f"CPU: {measured.reason}")
    station.workers.append(SimpleNamespace(backend=asked))
    assert precision_status(station)[0] == "precision: int8 / f32"
    assert precision_status(SimpleNamespace()) == ("", "")  # an attached window without the workers


def test_measuring_can_be_turned_off_and_one_process_measures_a_key_at_a_time(tmp_path: Path, cache_dir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    card = load_card(model_copy(tmp_path / "m"))
    monkeypatch.setenv(pc.MEASURE_ENV, "off")
    off = pc.choose_auto(FakeCore("bf16"), card, SETTINGS)
    assert off.reason == f"rule: bf16, the CPU device's default (not measured: {pc.MEASURE_ENV}=off)" and not pc._pending
    monkeypatch.delenv(pc.MEASURE_ENV)
    pc.choose_auto(FakeCore("bf16"), card, SETTINGS)
    (job,) = pc._pending.values()
    lock = pc._claim(job)
    assert lock is not None and lock.read_text() == str(os.getpid())
    assert pc._claim(job) is None  # a live process holds it: a second station does not measure the same key
    lock.unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))  # left by a process that ended
    taken = pc._claim(job)
    assert taken == lock and lock.read_text() == str(os.getpid())
    ran: list[dict] = []
    monkeypatch.setattr(pc, "_run_child", ran.append)
    pc._run_children([job], 0.0)
    assert ran == [] and lock.exists()  # held by this test's claim above: skipped
    lock.unlink()
    pc._run_children([job], 0.0)
    assert ran == [job] and not lock.exists()  # measured once, the lock gone with it


def test_a_window_spans_whole_batches_from_one_decided_to_the_first_after_it_ends() -> None:
    """Two streams finish batches in pairs, 20 ms apart, a pair every 0.6 s (a starved machine); a 0.3 s window
    starting at the first of a pair must not read the second, 20 ms later, as its end (8 frames in 20 ms: 400 fps;
    10,000 fps once seen on a busy machine), but the first batch decided after the 0.3 s: 16-24 frames in 0.6 s."""
    import threading
    import time
    from types import SimpleNamespace

    from inspector.pipeline.backends.precision_timing import StationRun

    run = StationRun.__new__(StationRun)
    run._lock, run._frames, run._batches, run._stamp = threading.Lock(), 0, 0, 0.0
    stop = threading.Event()

    def stream_pairs() -> None:
        t0 = time.perf_counter()
        for k in range(8):
            for dt in (0.1 + 0.6 * k, 0.12 + 0.6 * k):
                while time.perf_counter() - t0 < dt and not stop.is_set():
                    time.sleep(0.0005)
                run._emit([None] * 8)  # type: ignore[list-item]

    feeder = threading.Thread(target=stream_pairs, daemon=True)

    def pause(paused: bool) -> None:
        if not paused and not feeder.is_alive():
            feeder.start()

    run.worker = SimpleNamespace(in_flight=3, pause=pause, drained=lambda: True)
    try:
        fps = run.window(0.3)
    finally:
        stop.set()
    assert 5 < fps < 100, fps  # 27-40 fps; the second of a pair as the end read 400
