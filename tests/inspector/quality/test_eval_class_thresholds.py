"""``inspector eval`` judges at the card's rules: its threshold and its class thresholds, ``--class-threshold``
replacing one class's; the JSON records them, and ``--update-card`` keeps the calibration it was taken at."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from inspector.pipeline.model_repo import dump_toml, load_card
from tests.inspector.cli_users import database_with_users, run_cli
from tests.inspector.quality.helpers import write_yolo_source
from tests.inspector.quality.test_dataset_eval import _import, frames, scripted  # noqa: F401 - fixtures

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"
FRAMES = ["--count", "12", "--backend", "onnxruntime"]
ALL_HIGH = {"scratch": 0.9, "dent": 0.9, "crack": 0.9, "contamination": 0.9}
NOTE = "hand-set for the test"


def _copy(folder: Path, class_thresholds: dict[str, float] | None = None) -> Path:
    shutil.copytree(SHIPPED, folder)
    if class_thresholds is not None:
        card = tomllib.loads((folder / "card.toml").read_text())
        card["metrics"].update(class_thresholds=class_thresholds, class_threshold_calibration=NOTE)
        (folder / "card.toml").write_text(dump_toml(card))
    return folder


def _eval(tmp_path: Path, *args: str) -> tuple[str, dict]:
    out = tmp_path / "m.json"
    code, text = run_cli(["eval", *args, "--json", str(out)])
    assert code == 0, text
    return text, json.loads(out.read_text())


def test_frame_eval_judges_at_the_cards_class_thresholds(tmp_path: Path) -> None:
    """12 held-out frames, 3 defective, all caught at the card's 0.25 and all missed at 0.9 (measured): a card
    with every class at 0.9 misses them too, and --class-threshold puts classes back one by one."""
    plain = _copy(tmp_path / "plain")
    calibrated = _copy(tmp_path / "calibrated", ALL_HIGH)
    _text, base = _eval(tmp_path, "--model", str(plain), *FRAMES)
    _text, high = _eval(tmp_path, "--model", str(plain), *FRAMES, "--threshold", "0.9")
    assert base["escapes"] == 0 and high["escapes"] == high["defective_parts"] > 0  # the premise
    text, m = _eval(tmp_path, "--model", str(calibrated), *FRAMES)
    assert "threshold 0.25, scratch 0.9, dent 0.9, crack 0.9, contamination 0.9, 12 held-out frames" in text
    assert m["class_thresholds"] == ALL_HIGH and m["threshold"] == 0.25
    assert (m["escapes"], m["false_rejects"]) == (high["escapes"], high["false_rejects"])
    back = [a for c in ALL_HIGH for a in ("--class-threshold", f"{c}=0.25")]
    _text, m = _eval(tmp_path, "--model", str(calibrated), *FRAMES, *back)
    assert m["class_thresholds"] == dict.fromkeys(ALL_HIGH, 0.25)
    assert (m["escapes"], m["false_rejects"]) == (base["escapes"], base["false_rejects"])


def test_part_eval_judges_at_the_cards_class_thresholds(tmp_path: Path) -> None:
    """4 validation parts, 3 defective: with crack at 0.3, none escapes at 0.25 and one at 0.9 (measured)."""
    parts = ["--faces", "8", "--count", "4", "--seed-base", "3900000", "--class-threshold", "crack=0.3"]
    plain = _copy(tmp_path / "plain")
    _text, base = _eval(tmp_path, "--model", str(plain), *parts)
    _text, high = _eval(tmp_path, "--model", str(plain), *parts, "--threshold", "0.9")
    assert base["part_escapes"] == 0 < high["part_escapes"]  # the premise
    text, m = _eval(tmp_path, "--model", str(_copy(tmp_path / "calibrated", ALL_HIGH)), *parts)
    assert "threshold 0.25, scratch 0.9, dent 0.9, crack 0.3, contamination 0.9, 4 held-out parts" in text
    assert m["class_thresholds"] == {**ALL_HIGH, "crack": 0.3}
    for key in ("part_escapes", "part_false_rejects", "frame_escape_rate", "frame_false_reject_rate"):
        assert m[key] == high[key], key


def test_data_eval_judges_at_the_cards_class_thresholds(tmp_path: Path, frames, scripted) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The scripted images of test_dataset_eval: at 0.5 image 2 (contamination 0.45) escapes and OK image 0
    (scratch 0.6) is rejected; the card's contamination 0.4 and scratch 0.65 catch the one and pass the other."""
    data = _import(tmp_path, "yolo", write_yolo_source(tmp_path / "yolo", frames))
    model = _copy(tmp_path / "calibrated", {"contamination": 0.4, "scratch": 0.65})
    text, m = _eval(tmp_path, "--model", str(model), "--data", str(data), "--threshold", "0.5")
    assert "threshold 0.5, contamination 0.4, scratch 0.65, the test split" in text
    assert m["class_thresholds"] == {"contamination": 0.4, "scratch": 0.65}
    assert (m["escapes"], m["false_rejects"]) == (0, 0)
    _text, m = _eval(tmp_path, "--model", str(model), "--data", str(data), "--threshold", "0.5",
                     "--class-threshold", "scratch=0.5")
    assert m["class_thresholds"] == {"contamination": 0.4, "scratch": 0.5}
    assert (m["escapes"], m["false_rejects"], m["false_rejected_images"]) == (0, 1, ["images/test/img0000.png"])
    code, text = run_cli(["eval", "--model", str(model), "--data", str(data), "--class-threshold", "burr=0.5"])
    assert code == 2 and "--class-threshold: burr is not a class of" in text


def test_update_card_takes_the_metrics_at_the_cards_rules_and_keeps_them(tmp_path: Path) -> None:
    model = _copy(tmp_path / "calibrated", ALL_HIGH)
    url = database_with_users(tmp_path)
    login = ["--update-card", "--db", url, "--as", "eve"]
    code, text = run_cli(["eval", "--model", str(model), *FRAMES, *login, "--class-threshold", "dent=0.3"],
                         INSPECTOR_PASSWORD="eve-password")
    assert code == 2 and "--class-threshold: not with --update-card" in text
    code, text = run_cli(["eval", "--model", str(model), *FRAMES, *login], INSPECTOR_PASSWORD="eve-password")
    assert code == 0, text
    card = load_card(model)
    assert card.class_thresholds == ALL_HIGH and card.extra["metrics"]["class_threshold_calibration"] == NOTE
    assert card.extra["metrics"]["escape_rate"] == 1.0  # every defective frame missed at 0.9 (see above)


def test_metrics_taken_at_other_class_thresholds_are_not_written(tmp_path: Path) -> None:
    from inspector.pipeline.model_repo import ModelError
    from inspector.quality.evaluation import update_card_metrics

    model = _copy(tmp_path / "calibrated", ALL_HIGH)
    metrics = {"mAP50": 0.9, "mAP50_95": 0.7, "escape_rate": 0.0, "false_reject_rate": 0.0, "threshold": 0.25,
               "class_thresholds": {}, "latency_ms_per_image": 1.0, "backend": "openvino", "frames": 1,
               "seeds": [1, 1], "per_class_AP50": {}}
    before = (model / "card.toml").read_bytes()
    with pytest.raises(ModelError, match="not the card's"):
        update_card_metrics(model, metrics)
    assert (model / "card.toml").read_bytes() == before
