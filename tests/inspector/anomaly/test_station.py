"""The anomaly model in the station (issue 28.4): ``[cameras.anomaly]``, scored beside the detector in the
same worker, its verdict a rule of the camera's verdict, its score and sha256 on every result."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camera.products import write_family
from inspector.anomaly import teach
from inspector.anomaly.model import card_digest
from inspector.config import ConfigError, parse_config
from inspector.pipeline.model_repo import ModelError, load_card
from inspector.pipeline.preprocess import Tile
from inspector.pipeline.results import InspectionResult, Verdict
from inspector.pipeline.verdict import anomaly_rule
from inspector.station import Station

SIDE = 96  # images and model input: a 12 x 12 patch grid, fast to teach and score


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """A tiny plate model taught from 14 good plates; a folder of 6 of them and of the same 6 with a
    foreign object painted on (the injected anomaly)."""
    root = tmp_path_factory.mktemp("plates")
    write_family("plate", root, 14, 0, seed=0, width=SIDE, height=SIDE)
    with pytest.MonkeyPatch.context() as mp:  # the module's teach shares the tests' backbone cache
        mp.setenv("INSPECTOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "anomaly-cache"))
        model = root / "plate-tiny"
        teach.teach([root / "good"], model, width=SIDE, height=SIDE)
    good, bad = root / "frames-good", root / "frames-bad"
    good.mkdir()
    bad.mkdir()
    for p in sorted((root / "good").glob("*.png"))[:6]:
        shutil.copy(p, good / p.name)
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img is not None
        cv2.rectangle(img, (36, 36), (60, 60), (0, 0, 0) if img.ndim == 3 else 0, -1)  # a dark foreign object
        cv2.circle(img, (48, 48), 6, (255, 255, 255) if img.ndim == 3 else 255, -1)
        assert cv2.imwrite(str(bad / p.name), img)
    yield model, good, bad


def _detector_classes() -> str:
    """The shipped detector's classes: the test's cameras ignore them all (a plate is no part it knows)."""
    name = parse_config('name = "x"\n[[cameras]]\nid = "a"\nkind = "simulated"\n').model.name
    return ", ".join(f'"{c}"' for c in load_card(name, verify=False).classes)


def _station_cfg(model: Path, good: Path, bad: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    cams = []
    for cid, folder, anomaly in (("good", good, True), ("bad", bad, True), ("plain", good, False)):
        cams.append(f"""
[[cameras]]
id = "{cid}"
kind = "replay"
source = "{folder}"
fps = 10
[cameras.verdict]
ignore_classes = [{_detector_classes()}]
""" + (f'[cameras.anomaly]\nmodel = "{model}"\n{extra}' if anomaly else ""))
    return parse_config('name = "anomaly-station"\n[model]\nthreads = 1\n' + "".join(cams))


def _run(st: Station, per_camera: int) -> list[InspectionResult]:
    seen: list[InspectionResult] = []
    st.events.result_ready.connect(seen.append)
    with st:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and min(st.stats.camera(c).inspected for c in st.lanes) < per_camera:
            time.sleep(0.05)
    return seen


def test_a_station_scores_frames_beside_the_detector_and_an_anomaly_turns_ng(
        taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, good, bad = taught
    st = Station(_station_cfg(model, good, bad), db_url="none", archive=False)
    assert st.lanes["good"].anomaly is not None and st.lanes["plain"].anomaly is None
    seen = _run(st, 6)
    by = {c: [r for r in seen if r.camera_id == c] for c in ("good", "bad", "plain")}
    assert all(len(rs) >= 6 for rs in by.values())
    sha = card_digest(model)
    for r in by["good"] + by["bad"]:
        assert r.anomaly_score is not None and np.isfinite(r.anomaly_score)
        assert r.anomaly_map is not None and r.anomaly_map.shape == (SIDE // 8, SIDE // 8)
        assert r.provenance.anomaly_sha256 == sha and r.provenance.anomaly_model == "plate-tiny"
        assert r.provenance.model_sha256 == st.card.sha256  # the detector ran on the same frames
    # good plates stay OK (the rule carries the score), the painted object is NG by the anomaly rule
    assert all(r.verdict is Verdict.OK and (r.anomaly_score or 0.0) < 1.0 for r in by["good"]), \
        [(r.anomaly_score, r.rule) for r in by["good"]]
    assert all(r.rule.startswith("no defect; anomaly 0.") and r.rule.endswith(" < 1.00") for r in by["good"])
    assert all(r.verdict is Verdict.NG and (r.anomaly_score or 0.0) >= 1.0 for r in by["bad"]), \
        [(r.anomaly_score, r.rule) for r in by["bad"]]
    # (a foreign object this large can cost the part its pose: NG either way, the rule then says so too)
    assert all(r.rule.removesuffix(", no part pose") == f"anomaly {r.anomaly_score:.2f} >= 1.00"
               for r in by["bad"]), [r.rule for r in by["bad"]]
    assert all(not r.rule.endswith("no part pose") for r in by["good"])
    # a camera without [cameras.anomaly]: no score, no anomaly provenance, the detector's rule alone
    assert all(r.anomaly_score is None and r.provenance.anomaly_sha256 == "" and "anomaly" not in r.rule
               for r in by["plain"])
    assert st.workers[0].stats.errors == 0


def test_the_threshold_override_moves_the_verdict(taught: tuple[Path, Path, Path]) -> None:
    model, good, bad = taught
    st = Station(_station_cfg(model, good, bad, "threshold = 0.000001\n"), db_url="none", archive=False)
    seen = _run(st, 2)
    scored = [r for r in seen if r.camera_id == "good"]
    assert scored and all(r.verdict is Verdict.NG and r.rule.endswith(">= 0.00") for r in scored)


def test_a_bank_that_does_not_match_its_card_stops_the_station_before_it_starts(
        taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, good, bad = taught
    broken = tmp_path / "plate-broken"
    shutil.copytree(model, broken)
    bank = np.load(broken / "memory_bank.npy")
    bank[0, 0] += 1.0
    np.save(broken / "memory_bank.npy", bank)
    with pytest.raises(ModelError, match="does not match its card"):
        Station(_station_cfg(broken, good, bad), db_url="none", archive=False)


def test_a_model_taught_again_with_the_same_bank_but_another_threshold_is_another_model_in_results(
        taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A result names its anomaly model by the card's sha256, which covers the bank's and the divisors' sha256s
    and the raw thresholds: a reteach from the same images keeps the bank file but may score differently."""
    model, good, bad = taught
    again = tmp_path / "plate-again"
    shutil.copytree(model, again)
    card = (again / "card.toml").read_text(encoding="utf-8")
    first_raw = next(line for line in card.splitlines() if line.startswith("raw = "))
    (again / "card.toml").write_text(card.replace(first_raw, "raw = 123.0", 1), encoding="utf-8")
    one, two = teach.load_anomaly_model(model), teach.load_anomaly_model(again)
    assert one.bank_sha256 == two.bank_sha256 and one.raw_threshold != two.raw_threshold
    assert (one.sha256, two.sha256) == (card_digest(model), card_digest(again)) and one.sha256 != two.sha256
    st = Station(_station_cfg(again, good, bad), db_url="none", archive=False)
    assert st.lanes["good"].anomaly is not None and st.lanes["good"].anomaly.sha256 == two.sha256


def test_cell_divisors_that_do_not_match_their_card_stop_the_station_before_it_starts(
        taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, good, bad = taught
    broken = tmp_path / "plate-divisors"
    shutil.copytree(model, broken)
    divisors = np.load(broken / "cell_divisors.npy")  # taught with per-position normalisation (the default)
    divisors[0] *= 2.0
    np.save(broken / "cell_divisors.npy", divisors)
    with pytest.raises(ModelError, match="cell_divisors.npy does not match its card"):
        Station(_station_cfg(broken, good, bad), db_url="none", archive=False)


def test_anomaly_config_is_checked() -> None:
    base = 'name = "x"\n[[cameras]]\nid = "a"\nkind = "simulated"\n[cameras.anomaly]\n'
    assert parse_config(base + 'model = "m"\n').cameras[0].anomaly.model == "m"  # type: ignore[union-attr]
    assert parse_config('name = "x"\n[[cameras]]\nid = "a"\nkind = "simulated"\n').cameras[0].anomaly is None
    for bad in ('model = ""\n', 'model = "m"\nthreshold = 0\n', 'threshold = 1.0\n', 'model = "m"\nroi = 3\n'):
        with pytest.raises(ConfigError):
            parse_config(base + bad)


@pytest.mark.parametrize(("verdict", "rule", "score", "expected"), [
    (Verdict.OK, "no defect", None, (Verdict.OK, "no defect")),
    (Verdict.OK, "no defect", 0.42, (Verdict.OK, "no defect; anomaly 0.42 < 1.00")),
    (Verdict.OK, "no defect", 1.7, (Verdict.NG, "anomaly 1.70 >= 1.00")),
    (Verdict.OK, "no defect", 1.0, (Verdict.NG, "anomaly 1.00 >= 1.00")),
    (Verdict.NG, "scratch>=0.40", 1.7, (Verdict.NG, "scratch>=0.40; anomaly 1.70 >= 1.00")),
    (Verdict.NG, "scratch>=0.40", 0.2, (Verdict.NG, "scratch>=0.40; anomaly 0.20 < 1.00")),
    (Verdict.OK, "no defect", float("nan"), (Verdict.NG, "anomaly nan >= 1.00")),  # fail safe
])
def test_the_anomaly_rule(verdict: Verdict, rule: str, score: float | None, expected: tuple[Verdict, str]) -> None:
    assert anomaly_rule(verdict, rule, score, 1.0) == expected
    assert anomaly_rule(verdict, rule, score, 1.0, posed=True) == expected


@pytest.mark.parametrize(("verdict", "rule", "score", "expected"), [
    # an aligned part's model that found no pose for the frame (no part, another part, one lying far off): the
    # score, taken where the frame lay, decides; the rule says it had no pose
    (Verdict.OK, "no defect", 0.42, (Verdict.OK, "no defect; anomaly 0.42 < 1.00, no part pose")),
    (Verdict.OK, "no defect", 1.7, (Verdict.NG, "anomaly 1.70 >= 1.00, no part pose")),
    (Verdict.NG, "scratch>=0.40", 0.2, (Verdict.NG, "scratch>=0.40; anomaly 0.20 < 1.00, no part pose")),
])
def test_a_frame_without_a_part_pose_says_so(verdict: Verdict, rule: str, score: float,
                                             expected: tuple[Verdict, str]) -> None:
    assert anomaly_rule(verdict, rule, score, 1.0, posed=False) == expected


# ---------------------------------------------------------------- the worker, with a scripted anomaly model


class _Scores:
    def __init__(self, scores: np.ndarray, posed: np.ndarray | None = None) -> None:
        self.scores, self.posed = scores, posed
        self.maps = np.repeat(scores[:, None, None], 4, axis=1).repeat(4, axis=2)


class _Pending:
    def __init__(self, scores: np.ndarray, fail: bool, posed: np.ndarray | None = None) -> None:
        self._scores, self._fail, self._posed = scores, fail, posed

    def wait(self) -> _Scores:
        if self._fail:
            raise RuntimeError("scripted anomaly runtime failure")
        return _Scores(self._scores, self._posed)


class ScriptedCheck:
    """An `AnomalyCheck` whose image score is the batch item's mean pixel / 100; records what it was given."""

    key, name, sha256 = "scripted", "scripted", "a" * 64
    threshold, input_width, input_height = 1.0, 32, 32
    crop: Tile | None = None

    def __init__(self, backend: object, fail_start: bool = False, fail_wait: bool = False,
                 no_pose: bool = False) -> None:
        self.backend, self.fail_start, self.fail_wait = backend, fail_start, fail_wait
        self.no_pose = no_pose  # an aligned part's model that finds the bright frame's pose, not the dark one's
        self.prepared: list[tuple[int, int]] = []
        self.batches: list[tuple[int, int]] = []  # (items, detector batches submitted before it)

    def prepare(self, worker: int, depth: int) -> None:
        self.prepared.append((worker, depth))

    def start(self, worker: int, batch_u8: np.ndarray) -> _Pending:
        assert batch_u8.dtype == np.uint8 and batch_u8.shape[1:] == (32, 32, 3)
        self.batches.append((len(batch_u8), len(self.backend.batches)))  # type: ignore[attr-defined]
        if self.fail_start:
            raise RuntimeError("scripted anomaly start failure")
        means = batch_u8.reshape(len(batch_u8), -1).mean(axis=1)
        return _Pending(means / 100.0, self.fail_wait, means >= 100 if self.no_pose else None)


def _worker(check_kw: dict[str, bool]) -> tuple[Any, ScriptedCheck, list[Any], list[InspectionResult]]:
    from camera.frame_pool import FramePool
    from inspector.pipeline.results import Provenance
    from inspector.pipeline.scheduler import CameraLane, InferenceWorker
    from inspector.pipeline.verdict import VerdictRules
    from tests.inspector.fakes import ScriptedBackend

    be = ScriptedBackend()
    check = ScriptedCheck(be, **check_kw)
    prov = Provenance("fake", "0" * 64, "fake")
    lanes = [CameraLane(c, FramePool(c, 4, (64, 64, 3)), VerdictRules(0.5), prov, tiling=False,
                        anomaly=check if c != "plain" else None) for c in ("dark", "bright", "plain")]
    results: list[InspectionResult] = []
    w = InferenceWorker(0, be, lanes, results.extend)
    for i, ln in enumerate(lanes):
        got = ln.pool.acquire_slot()
        assert got is not None
        slot, arr = got
        arr[...] = (10, 250, 250)[i]  # dark: score 0.1 (OK); bright: 2.5 (NG by the anomaly rule)
        ln.pool.publish(slot, 1, pixel_format="BGR8")
    claimed = [(ln, ln.pool.claim()) for ln in lanes]
    w.process([(ln, h) for ln, h in claimed if h is not None])
    return w, check, lanes, results


def test_the_worker_starts_one_anomaly_batch_after_the_detectors_and_decides_by_it() -> None:
    w, check, lanes, results = _worker({})
    assert check.prepared == [(0, w.in_flight), (0, w.in_flight)]  # compiled when the worker was built
    assert check.batches == [(2, 1)]  # the two cameras with the model in one batch, after the detector's submit
    by = {r.camera_id: r for r in results}
    assert by["dark"].verdict is Verdict.OK and by["dark"].anomaly_score == pytest.approx(0.1, abs=0.01)
    assert by["dark"].rule == "no defect; anomaly 0.10 < 1.00"
    assert by["bright"].verdict is Verdict.NG and by["bright"].rule == "anomaly 2.50 >= 1.00"
    assert by["bright"].anomaly_map is not None and by["bright"].anomaly_map.shape == (4, 4)
    assert by["plain"].anomaly_score is None and by["plain"].provenance.anomaly_sha256 == ""
    assert by["bright"].provenance.anomaly_sha256 == "a" * 64 and by["bright"].provenance.model_name == "fake"
    assert w.stats.errors == 0
    for ln in lanes:
        c = ln.pool.snapshot()
        assert (c.received, c.inspected, c.dropped) == (1, 1, 0)


@pytest.mark.parametrize("fail", ["fail_start", "fail_wait"])
def test_an_anomaly_batch_that_fails_makes_its_frames_ng_not_ok(fail: str) -> None:
    w, _check, lanes, results = _worker({fail: True})
    by = {r.camera_id: r for r in results}
    for c in ("dark", "bright"):  # no score is no pass: fail safe
        assert by[c].verdict is Verdict.NG and by[c].rule == "anomaly nan >= 1.00"
    assert by["plain"].verdict is Verdict.OK  # the detector's verdict of the camera without the model stands
    assert w.stats.errors == 1
    for ln in lanes:
        c = ln.pool.snapshot()
        assert (c.received, c.inspected, c.dropped) == (1, 1, 0)


def test_a_frame_whose_part_pose_was_not_found_says_so() -> None:
    _w, _check, _lanes, results = _worker({"no_pose": True})
    by = {r.camera_id: r for r in results}
    assert by["dark"].verdict is Verdict.OK and by["dark"].rule == "no defect; anomaly 0.10 < 1.00, no part pose"
    assert by["bright"].verdict is Verdict.NG and by["bright"].rule == "anomaly 2.50 >= 1.00"
    assert by["plain"].verdict is Verdict.OK


# ---------------------------------------------------------------- anomaly only, recipes, masks, heat maps


def _only_anomaly_cfg(model: Path, bad: Path, camera: str = "", extra: str = ""):  # type: ignore[no-untyped-def]
    return parse_config(f"""name = "anomaly-only"
{extra}
[model]
threads = 1
[[cameras]]
id = "bad"
kind = "replay"
source = "{bad}"
fps = 10
detector = false
[cameras.anomaly]
model = "{model}"
{camera}""")


def test_a_camera_without_the_detector_is_decided_by_the_anomaly_model_alone(
        taught: tuple[Path, Path, Path]) -> None:
    """A product with no labelled defects: ``detector = false``, no ignore list; the rule is the anomaly's."""
    model, _good, bad = taught
    st = Station(_only_anomaly_cfg(model, bad), db_url="none", archive=False)
    assert st.lanes["bad"].rules.ignore_classes == frozenset(st.card.classes)
    seen = _run(st, 4)
    assert seen and all(r.verdict is Verdict.NG and r.rule.startswith(f"anomaly {r.anomaly_score:.2f} >= 1.00") and
                        not r.detections for r in seen), [r.rule for r in seen]
    with pytest.raises(ConfigError, match="detector = false needs"):
        parse_config('name = "x"\n[[cameras]]\nid = "a"\nkind = "simulated"\ndetector = false\n')


def test_a_mask_leaves_the_masked_patches_out_of_the_score(taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, _good, bad = taught
    mask = np.full((SIDE, SIDE), 255, np.uint8)
    mask[16:80, 16:80] = 0  # the painted object (36..60) and the patches whose features reach it
    assert cv2.imwrite(str(tmp_path / "mask.png"), mask)
    st = Station(_only_anomaly_cfg(model, bad, f'mask = "{tmp_path / "mask.png"}"\n'), db_url="none", archive=False)
    check = st.lanes["bad"].anomaly
    assert check is not None and check.key != st.anomaly_models.check(  # type: ignore[attr-defined]
        _only_anomaly_cfg(model, bad).cameras[0].anomaly, "bad").key  # another batch than the unmasked model's
    seen = _run(st, 4)
    assert seen and all(r.verdict is Verdict.OK for r in seen), [r.rule for r in seen]
    assert all(r.anomaly_map is not None and float(r.anomaly_map[2:10, 2:10].max()) == 0.0 for r in seen)
    with pytest.raises(ModelError, match="anomaly mask"):
        Station(_only_anomaly_cfg(model, bad, f'mask = "{tmp_path / "none.png"}"\n'), db_url="none", archive=False)


def _recipe(folder: Path, name: str, number: int, camera: str) -> None:
    detector = load_card(parse_config('name = "x"\n[[cameras]]\nid = "a"\nkind = "simulated"\n').model.name,
                         verify=False).name
    (folder / f"{name}.toml").write_text(
        f'[recipe]\nname = "{name}"\nnumber = {number}\n[model]\nname = "{detector}"\n[cameras.bad]\n{camera}')


def test_a_recipe_switch_switches_the_anomaly_model_with_the_detector(
        taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Recipes carry the anomaly model per camera (threshold, off); a recipe naming none keeps the config's."""
    model, _good, bad = taught
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    _recipe(recipes, "lenient", 1, f'anomaly = {{ model = "{model}", threshold = 1000.0 }}\n')
    _recipe(recipes, "detector-only", 2, "anomaly = false\ndetector = true\n")
    _recipe(recipes, "plain", 3, "")
    _recipe(recipes, "nothing", 4, "anomaly = false\n")  # detector = false from the config, no model: refused
    st = Station(_only_anomaly_cfg(model, bad, extra=f'[recipes]\ndir = "{recipes}"'), db_url="none",
                 archive=False)
    seen: list[InspectionResult] = []
    st.events.result_ready.connect(seen.append)

    def after_switch(label: str, n: int = 3) -> list[InspectionResult]:
        st.recipes.select(label)
        st.recipes.wait_retired()
        mark = len(seen)
        deadline = time.monotonic() + 30
        while len(seen) < mark + n and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen[mark:]

    with st:
        lenient = after_switch("lenient")
        assert lenient and all(r.verdict is Verdict.OK and r.rule.removesuffix(", no part pose").endswith("< 1000.00")
                               for r in lenient)
        assert all(r.provenance.anomaly_sha256 == card_digest(model) for r in lenient)
        off = after_switch("detector-only")
        assert off and all(r.anomaly_score is None and r.provenance.anomaly_sha256 == "" and "anomaly" not in r.rule
                           for r in off)
        back = after_switch("plain")
        assert back and all(r.verdict is Verdict.NG and r.rule.startswith("anomaly ") for r in back)
        from inspector.recipes.switch import RecipeError
        with pytest.raises(RecipeError, match="nothing would decide"):
            st.recipes.select("nothing")
    assert st.lanes["bad"].anomaly is not None and st.lanes["bad"].anomaly.threshold == 1.0  # "plain" retired
    assert st.workers[0].stats.errors == 0


def test_a_heat_map_is_the_patch_scores_over_the_frame(taught: tuple[Path, Path, Path]) -> None:
    from inspector.anomaly.station import StationAnomaly

    model, _good, bad = taught
    cfg = _only_anomaly_cfg(model, bad, "roi = [0, 0, 96, 48]\n").cameras[0].anomaly
    check = StationAnomaly().check(cfg, "bad")  # type: ignore[arg-type]
    grid = np.zeros((SIDE // 8, SIDE // 8), np.float32)
    grid[6, 9] = 4.0  # one hot patch: input (72..80, 48..56), the crop's (72..80, 24..32) below its 24 px pad
    heat = check.heat_map(grid, 192, 96)  # the ROI is the frame's top-left quarter
    assert heat.dtype == np.uint8 and heat.shape == (80, 160)  # the frame's aspect, 160 px at most
    assert heat[40:].max() == 0 and heat[:, 80:].max() == 0  # outside the ROI: nothing
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert abs(y - 28 * 160 / 192) <= 3 and abs(x - 76 * 160 / 192) <= 3
    flat = check.heat_map(np.full_like(grid, 1.0), 192, 96)
    assert abs(int(flat[20, 40]) - 127) <= 1  # the threshold is mid-grey


def test_ng_results_archive_a_heat_map_that_retention_deletes_with_the_image(
        taught: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from inspector.archive import heat_map_path

    model, _good, bad = taught
    cfg = _only_anomaly_cfg(model, bad, extra=f'[storage]\narchive_dir = "{tmp_path / "ng"}"')
    st = Station(cfg, db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", archive=True)
    seen = _run(st, 3)
    paths = [st.archive.path_for(r) for r in seen if r.ng]
    heats = [heat_map_path(p) for p in paths if Path(p).is_file()]
    assert heats and all(h.is_file() for h in heats)
    heat = cv2.imread(str(heats[0]), cv2.IMREAD_UNCHANGED)
    assert heat.dtype == np.uint8 and heat.ndim == 2 and max(heat.shape) <= 160
    assert heat.max() > 127 and heats[0].stat().st_size < 16_000  # hot where the object is; compact
    assert st.archive.stats()["heat_maps_written"] >= len(heats)
    before = st.archive.archive_bytes
    assert st.archive.delete_images([str(paths[0])]) == 1  # what database retention calls for a purged row
    assert not Path(paths[0]).exists() and not heat_map_path(paths[0]).exists()
    assert st.archive.archive_bytes < before


def test_the_archive_counts_a_heat_map_with_its_image_and_size_retention_deletes_both(tmp_path: Path) -> None:
    from dataclasses import replace

    from inspector.archive import NgArchive, heat_map_path
    from tests.inspector.factories import make_result

    def results(n: int) -> list[InspectionResult]:
        return [replace(make_result("cam1", i, "NG", with_frame=True, acquired_at=1.7e9 + i),
                        anomaly_map=np.ones((4, 4), np.float32)) for i in range(n)]

    probe = NgArchive(tmp_path / "probe", fmt="png")
    probe.heat_map_for = lambda r: np.full((16, 16), 200, np.uint8)
    probe.start()
    assert probe.submit(results(1)[0])
    probe.stop()
    one = int(probe.archive_bytes)  # image and heat map
    files = sorted(p for p in (tmp_path / "probe").rglob("*") if p.is_file())
    assert len(files) == 2 and one == sum(p.stat().st_size for p in files)
    rescanned = NgArchive(tmp_path / "probe", fmt="png")
    rescanned.index()
    assert rescanned.archive_bytes == one  # a restart counts the heat map with its image, not as an image

    archive = NgArchive(tmp_path / "ng", fmt="png", max_total_bytes=int(one * 3.5))
    archive.heat_map_for = lambda r: np.full((16, 16), 200, np.uint8)
    archive.start()
    rs = results(8)
    for r in rs:
        assert archive.submit(r)
    archive.stop()
    kept = [Path(archive.path_for(r) or "") for r in rs if Path(archive.path_for(r) or "").exists()]
    assert len(kept) == 3
    left = sorted(p for p in (tmp_path / "ng").rglob("*") if p.is_file())
    assert left == sorted([*kept, *(heat_map_path(p) for p in kept)])  # no heat map outlives its image
