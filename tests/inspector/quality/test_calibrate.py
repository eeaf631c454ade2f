"""``inspector model calibrate``: per-class thresholds chosen on validation line parts by a stated rule, kept in
the model's card (audited), and used from there by ``inspector eval``."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspector.access.users import AuditLog
from inspector.cli import app
from inspector.pipeline.model_repo import load_card
from inspector.quality.calibrate import CalibrationError, choose_class_thresholds, threshold_grid
from inspector.storage.db import open_database
from tests.inspector.cli_users import database_with_users

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"
CLASSES = ("scratch", "dent")


def test_the_grid_runs_from_0_15_to_0_80() -> None:
    assert threshold_grid().tolist() == [round(0.15 + 0.05 * i, 2) for i in range(14)]
    assert threshold_grid(0.1).tolist() == [0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75]
    with pytest.raises(CalibrationError, match=r"--step 0: must lie in \(0, 0.65\]"):
        threshold_grid(0.0)


def test_ties_go_to_the_fewest_classes_moved_before_the_least_total_move() -> None:
    """Two OK parts, two defective ones (best score of each class over the part's faces). No threshold pair
    both catches every defect and passes both OK parts; the best ratio, 50 (1 false reject of 2 = 50% / 1%, no
    escape), is reached by (scratch 0.25, dent 0.65): one class moved by 0.40, OK part 2 rejected, and by
    (0.45, 0.35): both moved, by 0.30 in all, OK part 1 rejected (and four more). The fewest moved wins."""
    scores = np.array([[0.2, 0.6],   # OK: passes only with dent above 0.6
                       [0.4, 0.3],   # OK: passes only with scratch above 0.4 and dent above 0.3
                       [0.6, 0.5],   # defective
                       [0.3, 0.4]])  # defective: caught by scratch <= 0.3 or dent <= 0.4
    defective = np.array([False, False, True, True])
    c = choose_class_thresholds(scores, defective, CLASSES, 0.25, threshold_grid(0.1))
    assert c.class_thresholds == {"scratch": 0.25, "dent": 0.65}
    assert (c.escapes, c.defective, c.false_rejects, c.ok) == (0, 2, 1, 2)
    assert c.ratio == pytest.approx(50.0) and c.tied == 6
    # from another default, (0.45, 0.35) moves one class as well, and less: it wins
    c = choose_class_thresholds(scores, defective, CLASSES, 0.35, threshold_grid(0.1))
    assert c.class_thresholds == {"scratch": 0.45, "dent": 0.35}


def test_among_equally_good_thresholds_the_least_moved_is_chosen() -> None:
    """An OK part with a scratch scored 0.3 needs scratch above it; every pair with scratch 0.35..0.80 meets
    both targets: the one closest to the card's 0.25 is scratch 0.35, dent left at 0.25."""
    scores = np.array([[0.3, 0.0], [0.9, 0.0], [0.0, 0.0]])
    c = choose_class_thresholds(scores, np.array([False, True, False]), CLASSES, 0.25, threshold_grid())
    assert c.class_thresholds == {"scratch": 0.35, "dent": 0.25}
    assert c.ratio == 0.0 and (c.escapes, c.false_rejects) == (0, 0) and c.tied == 10 * 14


def test_the_vectorised_search_is_the_brute_force_rule() -> None:
    """Against every combination tried one by one (score >= threshold is NG, as the station judges)."""
    rng = np.random.default_rng(7)
    grid = threshold_grid(0.1)
    classes = ("scratch", "dent", "crack")
    for _ in range(20):
        n = int(rng.integers(5, 40))
        scores = np.where(rng.random((n, 3)) < 0.4, 0.0, rng.choice(np.round(np.arange(0, 1.0, 0.05), 2), (n, 3)))
        defective = rng.random(n) < 0.4
        nd, no = max(1, defective.sum()), max(1, (~defective).sum())
        rows = []
        for t in itertools.product(grid, repeat=3):
            ng = (scores >= np.array(t)).any(axis=1)
            e, f = int((~ng & defective).sum()), int((ng & ~defective).sum())
            move = np.abs(np.array(t) - 0.25)
            rows.append((round(max(e / nd / 0.005, f / no / 0.01), 9), int((move > 1e-9).sum()),
                         round(float(move.sum()), 9), t, e, f))
        best = min(rows, key=lambda r: r[:3])  # stable: the first in grid order among equals
        c = choose_class_thresholds(scores, defective, classes, 0.25, grid)
        assert tuple(c.class_thresholds.values()) == pytest.approx(best[3])
        assert (c.escapes, c.false_rejects) == (best[4], best[5])


def _run(args: list[str], **env: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, args, env=env)
    assert "Traceback" not in res.output
    return res.exit_code, res.stdout, res.output


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "defect-copy"
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--step", "0"], "--step 0: must lie in (0, 0.65]"),
        (["--step", "0.001"], "--step: 651 thresholds for each of 4 classes"),
        (["--seed-base", "3500000"], ("--seed-base 3500000: parts 3500000..3500005 overlap the held-out parts "
                                      "3500000..3599999; calibrate on validation parts (e.g. --seed-base 3900000)")),
        (["--seed-base", "3699998"], "overlap the held-out parts 3700000..3799999"),
        (["--precision", "f16x"], "--precision: 'f16x' is not one of auto, f32, bf16, int8"),
        (["--update-card"], "--update-card: a deployed card decides what every station passes"),
        (["--scores", "/nonexistent/s.json"], "--scores: /nonexistent is not a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model: Path, extra: list[str], message: str) -> None:
    code, _out, text = _run(["model", "calibrate", "--model", str(model), "--count", "6", *extra])
    assert code == 2 and message in text, text
    assert len(text.strip().splitlines()) == 1


def test_an_unknown_model_is_one_line(tmp_path: Path) -> None:
    code, _out, text = _run(["model", "calibrate", "--model", str(tmp_path / "nope"), "--count", "6"])
    assert code == 2 and "is neither a model folder nor a model" in text and len(text.strip().splitlines()) == 1


def test_calibrate_end_to_end_writes_the_card_and_eval_then_judges_with_it(model: Path, tmp_path: Path) -> None:
    """Six validation parts of the shipped model at 320: the scores saved, the thresholds and how they were
    chosen in the card (audited), and ``inspector eval --faces 8`` on the same parts judges at them by default."""
    url = database_with_users(tmp_path)
    before = load_card(model)
    args = ["model", "calibrate", "--model", str(model), "--count", "6", "--seed-base", "3900000",
            "--scores", str(tmp_path / "s.json"), "--update-card", "--db", url, "--as", "eve"]
    code, out, text = _run(args, INSPECTOR_PASSWORD="eve-password")
    assert code == 0, text
    assert "6 of 6 parts" in text and "6 of 6 parts" not in out  # progress on stderr
    summary = out.strip().splitlines()[-1]
    m = re.fullmatch(r"class thresholds scratch ([\d.]+), dent ([\d.]+), crack ([\d.]+), contamination ([\d.]+): "
                     r"escapes (\d+) of (\d+), false rejects (\d+) of (\d+) \(.*\)", summary)
    assert m, summary
    chosen = dict(zip(("scratch", "dent", "crack", "contamination"), map(float, m.groups()[:4])))
    card = load_card(model)  # still a valid card whose model file matches
    assert card.class_thresholds == chosen
    note = card.extra["metrics"]["class_threshold_calibration"]
    assert "seeds 3900000..3900005" in note and "8 faces" in note
    assert re.search(r"precision (f32|bf16|int8|f16) \(auto\)", note), note  # what auto ran
    assert f"escapes {m.group(5)} of {m.group(6)}, false rejects {m.group(7)} of {m.group(8)}" in note
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["seeds"] == [3900000, 3900005] and len(saved["parts"]) == 6
    assert saved["classes"] == list(card.classes) and saved["card_sha256"] == before.card_sha256
    assert sum(p["defective"] for p in saved["parts"]) == int(m.group(6))
    eng = open_database(url)
    try:
        row = next(e for e in AuditLog(eng).list() if e.action == "model.card_updated")
        assert row.user == "eve" and row.old == before.audit_text and row.new == card.audit_text
    finally:
        eng.dispose()
    # the sweep again from the saved scores, without the model: the same choice
    code, again, text = _run(["model", "calibrate", "--model", str(model), "--from-scores", str(tmp_path / "s.json")])
    assert code == 0 and again.strip().splitlines()[-1] == summary, text
    # the card's class thresholds are what eval judges at now: the same parts give the same counts
    code, out, text = _run(["eval", "--model", str(model), "--faces", "8", "--count", "6", "--seed-base", "3900000",
                            "--json", str(tmp_path / "e.json")])
    assert code == 0, text
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["class_thresholds"] == chosen
    assert (e["part_escapes"], e["defective_parts"]) == (int(m.group(5)), int(m.group(6)))
    assert (e["part_false_rejects"], e["ok_parts"]) == (int(m.group(7)), int(m.group(8)))


def _scores_file(path: Path, model: Path, **changes: object) -> Path:
    card = load_card(model)
    doc = {"model": card.name, "model_sha256": card.sha256, "input": [card.input_width, card.input_height],
           "card_sha256": card.card_sha256, "precision": "f32", "precision_run": "f32", "classes": list(card.classes),
           "faces": 8, "seeds": [3900000, 3900002],
           "parts": [{"seed": 3900000, "defective": False, "scores": [0.3, 0.0, 0.0, 0.0]},
                     {"seed": 3900001, "defective": True, "scores": [0.0, 0.9, 0.0, 0.0]},
                     {"seed": 3900002, "defective": False, "scores": [0.0, 0.0, 0.0, 0.1]}]}
    doc.update(changes)
    path.write_text(json.dumps(doc))
    return path


def test_from_scores_redoes_the_sweep_and_refuses_another_detectors_scores(model: Path, tmp_path: Path) -> None:
    code, out, text = _run(["model", "calibrate", "--model", str(model), "--from-scores",
                            str(_scores_file(tmp_path / "s.json", model))])
    assert code == 0, text
    assert out.strip().splitlines()[-1].startswith(
        "class thresholds scratch 0.35, dent 0.25, crack 0.25, contamination 0.25: escapes 0 of 1, "
        "false rejects 0 of 2")
    for changes, message in [({"input": [384, 384]}, "not defect-yolo11p-320's detector"),
                             ({"model_sha256": "0" * 64}, "not defect-yolo11p-320's detector"),
                             ({"parts": [{"seed": 1, "defective": True, "scores": [0.1, 2.0, 0.0, 0.0]}]},
                              "parts[0] needs a seed, defective (true/false) and 4 scores in 0..1"),
                             ({"parts": []}, "no parts"),
                             ({"parts": [{"seed": 3500000, "defective": True, "scores": [0.1, 0.2, 0.0, 0.0]}]},
                              "overlap the held-out parts 3500000..3599999")]:
        code, _out, text = _run(["model", "calibrate", "--model", str(model), "--from-scores",
                                 str(_scores_file(tmp_path / "bad.json", model, **changes))])
        assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
    (tmp_path / "broken.json").write_text("{")
    code, _out, text = _run(["model", "calibrate", "--model", str(model), "--from-scores", str(tmp_path / "broken.json")])
    assert code == 2 and "broken.json: not JSON" in text
