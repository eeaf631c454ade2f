"""What ``precision = "auto"`` runs on a CPU: the fastest gated precision as the station runs it, measured once,
then cached.

No rule of thumb picks the fastest precision on every CPU: INT8 beats bf16 on an AVX-512 VNNI/BF16
EPYC, bf16 beats INT8 on an AMX Xeon, INT8 beats f32 on an AVX2 EPYC. And the runtime alone, timed on
its own, does not rank them as the station's pipeline does (a bench once had bf16 and INT8 within 2%
alone while the 8-camera pipeline ran 24% faster at INT8). So each precision the model passed its gate
at is timed the way the station's worker runs it (`precision_timing`): the station's backend settings
(the same compile config, streams and ``in_flight`` batches in flight), its scheduler over as many
saturated cameras as its device serves (the station's batch), its host work on every batch:

- ``f32``: always (the model the card's metrics describe);
- ``bf16``: where the device offers it (AVX512-BF16, AMX) and no emulated lesser ISA hides it;
- ``int8``: where the card has an INT8 IR whose held-out gate passed (``[int8.gate] passed``);
- ``f16`` is not measured: no tool writes a gate for it, and the CPUs that offer it (AVX512-FP16,
  AMX-FP16) have bf16 at the same speed. ``precision = "f16"`` still runs it when asked for.

The precisions take turns, round after round (each round in another order), so a shared machine's
drift hits all alike; each one's speed is the median of its rounds. The winner (`pick`) is the fastest,
unless another is within the noise of it: the rounds' paired ratios (the two precisions' frames per
second in the same round) must put it ahead by more than their spread (at least `NOISE_FLOOR`, at most
`TIE`), else the more precise of the two runs (`PREFERENCE`) at a speed the measurement cannot tell
apart. It is kept in a JSON file in the user cache folder (`cache_path`), keyed by the CPU's model name,
its cores and the ISA flags that decide speed, the oneDNN ISA limit, the OpenVINO version, the model's
and the INT8 IR's sha256 and the backend's and scheduler's settings (`cache_key`).

A station's first result never waits for it: on a cache miss ``auto`` starts with the rule it always
had (`rule_choice`), and `measure_pending`, called once the station runs, times the precisions in a
child process at the lowest priority (``nice 19``: every runtime thread of the child inherits it),
which writes the cache; the next start runs the winner. A running station does not switch: that would
compile a second model beside the first, and a precision is a recipe-sized change best made at a start.
``inspector bench`` measures in-process and writes the same cache.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from inspector.pipeline.backends import isa
from inspector.pipeline.model_repo import ModelCard, ModelError, load_card

log = logging.getLogger(__name__)

#: The precisions ``auto`` may choose, in the order they are measured.
MEASURED = ("f32", "bf16", "int8")
#: Of precisions the measurement cannot tell apart, the first here runs (the more precise).
PREFERENCE = ("f32", "bf16", "int8")
#: A precision leads only by more than its rounds' spread, and this at least ...
NOISE_FLOOR = 0.01
#: ... and at most this: a lead over 3% always counts, so the winner is within 3% of the fastest measured.
TIE = 0.03
#: Seconds of timing in all (the compiles before it are not counted: they come from the model cache later).
MEASURE_SECONDS = 6.0
#: Rounds: each precision is timed this often, in turns (the median of its rounds is its speed).
ROUNDS = 5
#: Below this share of the cores the measurement ran starved (a loaded station beside it): not cached.
MIN_CPU_SHARE = 0.5
#: The ISA flags that decide the model's speed (part of the cache key).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8", "amx_fp16")
#: 3: full batches on graphs compiled for their size (`openvino_backend.STATIC_FULL_BATCH`); 2: the station's
#: pipeline timed in rounds; 1: the runtime alone, best round (older entries are measured again)
CACHE_VERSION = 3


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a backend runs for ``auto`` and why (the run report and the GUI show ``reason``)."""

    precision: str
    reason: str
    measured: bool = False


@dataclass(frozen=True)
class Pick:
    """The winner of a measurement, and how sure: the fastest by the median of the rounds, or a more precise
    one the measurement could not tell from it."""

    precision: str
    fastest: str
    #: how much faster the fastest ran than the runner-up (the median of their paired round ratios, minus 1)
    lead: float
    #: the spread of those ratios (what a lead must exceed), within [`NOISE_FLOOR`, `TIE`]
    noise: float
    runner_up: str | None = None

    def describe(self) -> str:
        """``int8 ahead of bf16 by 14.4% (noise 1.0%)`` or ``int8 and bf16 within the noise (int8 +1.5%, noise
        2.0%): the more precise runs``."""
        if self.runner_up is None:
            return f"{self.precision}, the only precision timed"
        if self.lead > self.noise:
            return f"{self.fastest} ahead of {self.runner_up} by {self.lead:.1%} (noise {self.noise:.1%})"
        return (f"{self.fastest} and {self.runner_up} within the noise ({self.fastest} {self.lead:+.1%}, noise "
                f"{self.noise:.1%}): the more precise runs")


def pick(rounds: Mapping[str, Sequence[float]]) -> Pick:
    """The precision to run from each precision's frames per second, round by round (rounds in the same
    order for all: round ``i`` of every precision ran in the same turn).

    Two precisions are compared by their paired ratios (round ``i`` of one over round ``i`` of the other): the
    fastest is ahead of every other by their median (ties: the higher median fps). It leads another only by
    more than the spread of those ratios (1.4826 x their median absolute deviation, the robust sigma, within
    [`NOISE_FLOOR`, `TIE`]); of the precisions it does not lead, the first in `PREFERENCE` runs.
    """
    timed = {p: list(v) for p, v in rounds.items() if v and statistics.median(v) > 0}
    if not timed:
        raise ValueError("no precision was timed")
    med = {p: statistics.median(v) for p, v in timed.items()}

    def paired(p: str, q: str) -> list[float]:
        return [a / b for a, b in zip(timed[p], timed[q]) if b > 0] or [med[p] / med[q]]

    wins = {p: sum(statistics.median(paired(p, q)) > 1 for q in timed if q != p) for p in timed}
    fastest = max(timed, key=lambda p: (wins[p], med[p], -_rank(p)))
    tied = [fastest]
    closest: tuple[str, float, float] | None = None  # the runner-up: (precision, lead, noise)
    for p in sorted(timed, key=lambda q: -med[q]):
        if p == fastest:
            continue
        ratios = paired(fastest, p)
        lead = statistics.median(ratios) - 1
        spread = 1.4826 * statistics.median([abs(r - 1 - lead) for r in ratios]) if len(ratios) > 1 else TIE
        noise = min(TIE, max(NOISE_FLOOR, spread))
        if closest is None:
            closest = (p, lead, noise)
        if lead <= noise:
            tied.append(p)
    winner = min(tied, key=_rank)
    if closest is None:
        return Pick(winner, fastest, 0.0, 0.0)
    return Pick(winner, fastest, closest[1], closest[2], closest[0])


def _rank(p: str) -> int:
    return PREFERENCE.index(p) if p in PREFERENCE else len(PREFERENCE)


@dataclass(frozen=True)
class Measurement:
    """Frames per second of the station's pipeline at each precision, round by round, and what it ran beside."""

    rounds: dict[str, list[float]]  # precision -> frames/s of each round (round i of all in the same turn)
    batch: int  # frames per batch: the cameras the worker served, saturated
    cpu_share: float = 1.0  # of the cores the measuring process got while it timed (1.0: all of them)
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # precision -> why it was not timed

    @property
    def fps(self) -> dict[str, float]:
        """Each precision's median over its rounds."""
        return {p: statistics.median(v) for p, v in self.rounds.items() if v}

    @property
    def winner(self) -> str:
        return pick(self.rounds).precision

    def ranking(self) -> list[str]:
        """The precisions timed, fastest first."""
        fps = self.fps
        return sorted(fps, key=lambda p: -fps[p])

    def summary(self) -> str:
        """``int8 294 fps > bf16 257 > f32 149 at batch 8, median of 5 rounds``."""
        fps = self.fps
        parts = [f"{p} {fps[p]:.0f}" for p in self.ranking()]
        n = max((len(v) for v in self.rounds.values()), default=0)
        return (" > ".join([parts[0] + " fps", *parts[1:]]) if parts else "nothing timed") + \
            f" at batch {self.batch}, median of {n} round{'s' if n != 1 else ''}"


# ---------------------------------------------------------------------- what may be measured
def device_default(core: Any, device: str) -> str:
    """The device's own precision (``bf16`` on AMX / AVX512-BF16 CPUs; ``f32`` under an emulated ISA
    without bf16); ``default`` where the device has no such property."""
    if device == "CPU" and isa.default_is_f32():
        return "f32"
    try:
        hint = core.get_property(device, "INFERENCE_PRECISION_HINT")
    except RuntimeError:
        return "default"
    return str(hint.to_string() if hasattr(hint, "to_string") else hint)


def candidates(card: ModelCard, offered: Sequence[str]) -> dict[str, str]:
    """Of `MEASURED`, those ``card`` passed its gate at and the device offers (``offered``: its
    OPTIMIZATION_CAPABILITIES, upper case), each with ``""``, or why it is left out."""
    out = {"f32": ""}
    out["bf16"] = "" if "BF16" in offered and not isa.default_is_f32() else "the CPU has no bf16"
    if card.int8 is None:
        out["int8"] = "the card has no INT8 IR"
    elif not card.int8_gate_passed:
        out["int8"] = "the INT8 IR failed its gate"
    else:
        out["int8"] = ""
    return out


def offered_precisions(core: Any, device: str) -> list[str]:
    try:
        return [str(c).upper() for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
    except RuntimeError:
        return []


def rule_choice(core: Any, device: str, card: ModelCard, why_not_measured: str) -> PrecisionChoice:
    """``auto`` by rule (before any measurement): the INT8 IR where it passed its gate and the device's
    default is f32 (INT8 ~1.45x f32 on AVX2), else the device's default."""
    default = device_default(core, device)
    if card.int8 is not None and card.int8_gate_passed and default == "f32":
        return PrecisionChoice("int8", f"rule: int8, its gate passed and the CPU's default is f32 ({why_not_measured})")
    if default == "default":
        return PrecisionChoice("auto", f"rule: the {device} device's default ({why_not_measured})")
    return PrecisionChoice(default, f"rule: {default}, the {device} device's default ({why_not_measured})")


# ---------------------------------------------------------------------- the cache
def cache_path() -> Path | None:
    """The cache file: beside the part banks and compiled models (``INSPECTOR_CACHE_DIR``, "off": none;
    else the platformdirs user cache folder)."""
    from camera.bank_cache import default_cache_dir

    banks = default_cache_dir()
    return None if banks is None else banks.parent / "precision.json"


def cpu_identity(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU's model name, cores and the `ISA_FLAGS` its kernels may use (under an ISA limit: fewer)."""
    model, flags = isa.read_cpuinfo(cpuinfo)
    import platform

    return {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count() or 1,
            "isa": [f for f in ISA_FLAGS if f in flags], "isa_limit": isa.active_limit()}


def runtime_version() -> str:
    import openvino as ov

    return str(ov.get_version())


@dataclass(frozen=True)
class Settings:
    """The backend settings the measurement runs with (those of the station that asked for it)."""

    device: str = "CPU"
    max_batch: int = 8
    threads: int = 0
    streams: int | str = 0
    depth: int = 1
    nms_iou: float | None = None
    #: frames in a batch of the station's worker when every camera it serves has one waiting (its cameras, at
    #: most ``max_batch``); 0: ``max_batch``
    batch: int = 0

    @property
    def station_batch(self) -> int:
        """The batch the precisions are timed at: the station's saturated batch."""
        return max(1, min(self.max_batch, self.batch or self.max_batch))


def cache_key(card: ModelCard, settings: Settings, *, cpu: Mapping[str, Any] | None = None,
              runtime: str | None = None) -> dict[str, Any]:
    """Everything a measurement depends on: the CPU, the runtime, the model files, the settings."""
    int8 = card.int8 or {}
    return {
        **(cpu if cpu is not None else cpu_identity()),
        "openvino": runtime if runtime is not None else runtime_version(),
        "model_sha256": card.sha256,
        "int8_sha256": [int8.get("sha256"), int8.get("bin_sha256")] if int8 else None,
        **asdict(settings),
    }


def key_digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


class PrecisionCache:
    """The JSON file of measurements: ``{"version", "entries": {digest: {key, rounds, batch, winner, ...}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text())
            version = raw.get("version") if isinstance(raw, dict) else None
            if isinstance(version, int) and 0 < version < CACHE_VERSION:  # measured another way: measured again
                log.info("precision cache %s: version %d measurements are not read (auto measures again)", self.path,
                         version)
                return {}
            if not isinstance(raw, dict) or version != CACHE_VERSION or not isinstance(raw.get("entries"), dict):
                raise ValueError(f"not a version {CACHE_VERSION} precision cache")
            return raw["entries"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            log.warning("precision cache %s ignored (%s): auto measures again", self.path, str(exc).splitlines()[0])
            return {}

    def get(self, key: Mapping[str, Any]) -> Measurement | None:
        """The measurement stored under ``key``; None when there is none or it does not read back."""
        entry = self._read().get(key_digest(key))
        if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        try:
            rounds = {str(p): [float(v) for v in fps] for p, fps in entry["rounds"].items()}
            return Measurement(rounds, int(entry["batch"]), float(entry.get("cpu_share", 1.0)),
                               float(entry.get("seconds", 0.0)), dict(entry.get("skipped", {})))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("precision cache %s: an unreadable entry ignored: auto measures again", self.path)
            return None

    def put(self, key: Mapping[str, Any], m: Measurement) -> None:
        """Store ``m`` under ``key`` (the file is replaced whole: a reader never sees half of it)."""
        entries = self._read()
        entries[key_digest(key)] = {
            "key": json.loads(json.dumps(key, default=str)), "rounds": m.rounds, "batch": m.batch,
            "fps": {p: round(v, 1) for p, v in m.fps.items()}, "winner": m.winner, "why": pick(m.rounds).describe(),
            "cpu_share": round(m.cpu_share, 3), "seconds": round(m.seconds, 2),
            "skipped": m.skipped, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1))
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------- choosing
def choose_auto(core: Any, card: ModelCard, settings: Settings) -> PrecisionChoice:
    """What ``precision = "auto"`` runs: the cached winner for this CPU, runtime, model and settings, else
    `rule_choice` (and on a CPU the measurement is queued for `measure_pending`)."""
    if settings.device != "CPU":
        return rule_choice(core, settings.device, card, "measured on CPUs only")
    path = cache_path()
    if path is None:
        return rule_choice(core, settings.device, card, "not measured: no cache folder")
    key = cache_key(card, settings)
    m = PrecisionCache(path).get(key)
    gated = {p for p, why in candidates(card, offered_precisions(core, settings.device)).items() if not why}
    timed = {p: v for p, v in (m.rounds.items() if m is not None else ()) if p in gated and v and max(v) > 0}
    if m is None or not timed:
        if os.environ.get(MEASURE_ENV, "").strip().lower() == "off":
            return rule_choice(core, settings.device, card, f"not measured: {MEASURE_ENV}=off")
        _queue(card, settings, key, path)
        return rule_choice(core, settings.device, card, "not measured yet")
    return measured_choice(Measurement(timed, m.batch, m.cpu_share), settings, str(path))


def measured_choice(m: Measurement, settings: Settings, cache: str) -> PrecisionChoice:
    """The winner of ``m`` and the reason the run report and the GUI show: what was timed, how, and why it won."""
    won = pick(m.rounds)
    beside = f", timed with {m.cpu_share:.0%} of the cores (the rest busy)" if m.cpu_share < 0.9 else ""
    how = f"the station's pipeline, {settings.depth} in flight, streams {settings.streams}"
    return PrecisionChoice(won.precision, f"measured ({how}): {m.summary()}{beside}; {won.describe()} (cache {cache})",
                           measured=True)


# ---------------------------------------------------------------------- timing
class PrecisionRun(Protocol):
    """One precision as the station runs it (`precision_timing.StationRun`), paused between windows."""

    def window(self, seconds: float) -> float:
        """Run for ``seconds`` (after its batches in flight refilled) and pause again; frames per second."""
        ...

    def close(self) -> None: ...


def time_rounds(runs: Mapping[str, PrecisionRun], seconds: float, *, rounds: int = ROUNDS,
                clock: Callable[[], float] = time.perf_counter, cpu_clock: Callable[[], float] = time.process_time,
                cores: int | None = None) -> tuple[dict[str, list[float]], float]:
    """Frames per second of each run, round after round: every round times each precision once, each round
    in another order (rotated), so that a shared machine's drift and the turn's place hit all alike. Returns the
    rounds per precision and the median share of the cores the process got (its CPU time over wall time times
    cores)."""
    per = seconds / max(1, rounds * len(runs))
    cores = cores or os.cpu_count() or 1
    names = list(runs)
    out: dict[str, list[float]] = {p: [] for p in names}
    shares: list[float] = []
    for r in range(max(1, rounds)):
        for p in names[r % len(names):] + names[: r % len(names)] if names else []:
            t0, c0 = clock(), cpu_clock()
            out[p].append(runs[p].window(per))
            wall, cpu = clock() - t0, cpu_clock() - c0
            if wall > 0:
                shares.append(min(1.0, cpu / (wall * cores)))
    return out, statistics.median(shares) if shares else 1.0


def measure(card: ModelCard, settings: Settings, seconds: float = MEASURE_SECONDS, *,
            make_run: Callable[[ModelCard, str, Settings], PrecisionRun] | None = None,
            offered: Sequence[str] | None = None, clock: Callable[[], float] = time.perf_counter,
            cpu_clock: Callable[[], float] = time.process_time, rounds: int = ROUNDS) -> Measurement:
    """Time every gated precision of ``card`` as the station runs it (``seconds`` of windows in all)."""
    if offered is None:
        import openvino as ov

        offered = offered_precisions(ov.Core(), settings.device)
    if make_run is None:
        from inspector.pipeline.backends.precision_timing import StationRun

        make_run = StationRun
    skipped = {p: why for p, why in candidates(card, offered).items() if why}
    runs: dict[str, PrecisionRun] = {}
    try:
        for p in MEASURED:
            if p in skipped:
                continue
            try:
                runs[p] = make_run(load_card(card.folder, int8=True) if p == "int8" else card, p, settings)
            except (ModelError, RuntimeError) as exc:  # an IR that does not match its card, a precision refused
                skipped[p] = str(exc).splitlines()[0]
                log.warning("precision %s not measured: %s", p, skipped[p])
        t0 = clock()
        fps, share = time_rounds(runs, seconds, rounds=rounds, clock=clock, cpu_clock=cpu_clock)
        return Measurement(fps, settings.station_batch, share, clock() - t0, skipped)
    finally:
        for run in runs.values():
            run.close()


def measure_and_store(card: ModelCard, settings: Settings, seconds: float | None = None, *,
                      path: Path | None = None, min_share: float | None = None) -> Measurement:
    """`measure` in this process (``seconds``: default `MEASURE_SECONDS`) and keep the result in the cache file
    ``path`` (default `cache_path`; none: not kept), unless it got less than ``min_share`` of the cores
    (default `MIN_CPU_SHARE`: the machine was too busy to tell the precisions apart)."""
    seconds = MEASURE_SECONDS if seconds is None else seconds
    min_share = MIN_CPU_SHARE if min_share is None else min_share
    m = measure(card, settings, seconds)
    path = path if path is not None else cache_path()
    if path is None or not any(v > 0 for v in m.fps.values()):
        return m
    if m.cpu_share < min_share:
        log.warning("precision: measured with %.0f%% of the cores (the machine was busy): not cached, measured "
                    "again at the next start", 100 * m.cpu_share)
        return m
    PrecisionCache(path).put(cache_key(card, settings), m)
    log.info("precision: %s; %s; auto runs %s from the next start (cache %s)", m.summary(), pick(m.rounds).describe(),
             m.winner, path)
    return m


# ---------------------------------------------------------------------- in the background
_pending: dict[str, dict[str, Any]] = {}
_pending_lock = threading.Lock()
_children: set[subprocess.Popen[bytes]] = set()
#: Seconds the measurement waits after the station started (its first results come first).
START_DELAY_S = 3.0
#: The child gets this long to compile and time (then it is ended and the next start tries again).
CHILD_TIMEOUT_S = 300.0


#: ``off`` in the environment: ``auto`` never measures in the background (it runs the rule until a bench does)
MEASURE_ENV = "INSPECTOR_PRECISION_MEASURE"


def _queue(card: ModelCard, settings: Settings, key: Mapping[str, Any], path: Path) -> None:
    with _pending_lock:
        _pending.setdefault(key_digest(key), {"model": str(card.folder), "settings": asdict(settings),
                                              "cache": str(path), "digest": key_digest(key)})


def _claim(job: Mapping[str, Any]) -> Path | None:
    """The lock file of ``job``'s measurement, created for this process; None where another live process
    measures the same key (several stations starting at once on one machine measure once)."""
    lock = Path(job["cache"]).with_name(f".precision-{job['digest']}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or "0"), 0)
                return None  # its owner is alive: it measures
            except (ProcessLookupError, ValueError, OSError):
                lock.unlink(missing_ok=True)  # left by a process that ended: take it over
                continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    return None


#: False: `measure_pending` drops what was queued (``inspector bench`` measures in-process, before its stations)
BACKGROUND = True


def measure_pending(delay_s: float = START_DELAY_S) -> threading.Thread | None:
    """Measure what ``auto`` queued (cache misses), each in a child process at the lowest priority, after
    ``delay_s``, on a daemon thread; returns it (None when nothing is queued). The child writes the cache;
    the next start runs the winner."""
    with _pending_lock:
        jobs = list(_pending.values())
        _pending.clear()
    if not jobs or not BACKGROUND:
        return None
    t = threading.Thread(target=_run_children, args=(jobs, delay_s), name="precision-measure", daemon=True)
    t.start()
    return t


def _run_children(jobs: list[dict[str, Any]], delay_s: float) -> None:
    time.sleep(delay_s)
    for job in jobs:
        lock = _claim(job)
        if lock is None:
            continue
        try:
            _run_child(job)
        finally:
            lock.unlink(missing_ok=True)


def _run_child(job: dict[str, Any]) -> None:
    """One measurement in a child process (it writes the cache); its last line of output is logged."""
    job = {**job, "seconds": MEASURE_SECONDS, "min_share": MIN_CPU_SHARE}
    cmd = [sys.executable, "-m", "inspector.pipeline.backends.precision_choice", json.dumps(job)]
    try:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
    except OSError as exc:
        log.warning("precision: cannot start the measurement: %s", exc)
        return
    _children.add(child)
    try:
        _out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        _out, err = child.communicate()
    finally:
        _children.discard(child)
    lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    if child.returncode != 0:
        log.warning("precision: the measurement ended with %s: %s", child.returncode,
                    lines[-1] if lines else "no message")
    elif lines:
        log.info("%s", lines[-1])


def _end_children() -> None:
    for child in list(_children):
        child.kill()


atexit.register(_end_children)


def _main(argv: list[str]) -> int:
    """The child: ``python -m inspector.pipeline.backends.precision_choice JOB_JSON``."""
    os.nice(19)  # before the runtime starts its threads: each of them inherits it
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    job = json.loads(argv[1])
    measure_and_store(load_card(job["model"]), Settings(**job["settings"]), job["seconds"], path=Path(job["cache"]),
                      min_share=job["min_share"])
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv))
