"""Per-class thresholds calibrated for a model live in its card and travel with it: the card checks them, and a
station camera that sets no ``default_threshold`` judges with them (its own ``class_thresholds`` win per class)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from inspector.config import parse_config
from inspector.pipeline.model_repo import ModelError, dump_toml, load_card
from inspector.station import Station

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"
CALIBRATED = {"scratch": 0.45, "dent": 0.45, "crack": 0.3}


def calibrated_model(folder: Path, name: str, class_thresholds: dict[str, Any], threshold: float = 0.25,
                     note: Any = "max(escape / 0.5%, false reject / 1%) on validation parts") -> Path:
    """A copy of the shipped model (the same file) whose card holds ``class_thresholds``."""
    shutil.copytree(SHIPPED, folder)
    card = tomllib.loads((folder / "card.toml").read_text())
    card["name"] = name
    card["metrics"].update(threshold=threshold, class_thresholds=class_thresholds, class_threshold_calibration=note)
    (folder / "card.toml").write_text(dump_toml(card))
    return folder


def test_the_card_carries_its_class_thresholds(tmp_path: Path) -> None:
    card = load_card(calibrated_model(tmp_path / "m", "m", CALIBRATED))
    assert card.class_thresholds == CALIBRATED and card.threshold == 0.25
    assert card.audit_text.endswith("threshold 0.25 class_thresholds crack 0.3 dent 0.45 scratch 0.45")
    assert load_card(SHIPPED).class_thresholds == {}  # optional: a card without them has none


@pytest.mark.parametrize(
    ("table", "note", "message"),
    [
        ({"scratch": 0.4, "burr": 0.5}, "x", r"metrics.class_thresholds.burr: not a class of this model \(scratch, "),
        ({"dent": 1.5}, "x", r"metrics.class_thresholds.dent = 1.5: must be a number in 0..1"),
        ({"dent": -0.1}, "x", r"metrics.class_thresholds.dent = -0.1: must be a number in 0..1"),
        ({"dent": "high"}, "x", r"metrics.class_thresholds.dent = 'high': must be a number in 0..1"),
        ({"dent": True}, "x", r"metrics.class_thresholds.dent = True: must be a number in 0..1"),
        ({"dent": 0.4}, 3, r"metrics.class_threshold_calibration = 3: must be text"),
    ],
)
def test_bad_class_thresholds_are_refused_in_one_line_naming_card_and_field(tmp_path: Path, table: dict[str, Any],
                                                                              note: Any, message: str) -> None:
    folder = calibrated_model(tmp_path / "m", "m", table, note=note)
    with pytest.raises(ModelError, match=rf"{folder / 'card.toml'}: {message}") as err:
        load_card(folder)
    assert "\n" not in str(err.value)


def test_a_class_threshold_table_that_is_no_table_is_refused(tmp_path: Path) -> None:
    folder = calibrated_model(tmp_path / "m", "m", {})
    text = (folder / "card.toml").read_text().replace("[metrics.class_thresholds]\n", "")
    (folder / "card.toml").write_text(text.replace("[metrics]\n", "[metrics]\nclass_thresholds = 0.4\n", 1))
    with pytest.raises(ModelError, match=r"card.toml: metrics.class_thresholds = 0.4: must be a table"):
        load_card(folder)


CONFIG = """
name = "t"
[model]
name = "{model}"
[[cameras]]
id = "a"
kind = "simulated"
{verdict_a}
[[cameras]]
id = "b"
kind = "simulated"
{verdict_b}
"""


@pytest.mark.parametrize(
    ("verdict", "default", "per_class"),
    [
        ("", 0.25, CALIBRATED),  # the card's threshold and class thresholds
        ("[cameras.verdict]\nclass_thresholds = { dent = 0.6 }\n", 0.25, {**CALIBRATED, "dent": 0.6}),  # one class
        # the integrator took over: only the config's thresholds
        ("[cameras.verdict]\ndefault_threshold = 0.4\nclass_thresholds = { dent = 0.6 }\n", 0.4, {"dent": 0.6}),
    ],
)
def test_a_camera_config_judges_with_the_cards_rules_unless_it_sets_a_default(tmp_path: Path, verdict: str,
                                                                             default: float,
                                                                             per_class: dict[str, float]) -> None:
    card = load_card(calibrated_model(tmp_path / "m", "m", CALIBRATED))
    cfg = parse_config(CONFIG.format(model="m", verdict_a=verdict, verdict_b=""))
    rules = cfg.cameras[0].verdict.rules(card.threshold, card.class_thresholds)
    assert (rules.default_threshold, rules.class_thresholds) == (default, per_class)


def test_the_station_builds_each_cameras_rules_from_its_cards_calibration(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calibrated_model(tmp_path / "models" / "m", "m", CALIBRATED)
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    text = CONFIG.format(model="m", verdict_a="[cameras.verdict]\nclass_thresholds = { crack = 0.5 }\n",
                         verdict_b="[cameras.verdict]\ndefault_threshold = 0.35\n")
    st = Station(parse_config(text), db_url="none", archive=False)
    try:
        a, b = st.lanes["a"].rules, st.lanes["b"].rules
        assert a.default_threshold == 0.25 and a.class_thresholds == {**CALIBRATED, "crack": 0.5}
        assert b.default_threshold == 0.35 and b.class_thresholds == {}
        # what each result's provenance records of the rules
        assert ("dent", 0.45) in st.lanes["a"].provenance.thresholds
        assert st.lanes["b"].provenance.thresholds == (("default", 0.35),)
    finally:
        st.stop()


def test_an_engineer_edits_the_rules_in_force_the_cards_class_thresholds_among_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine) -> None:  # type: ignore[no-untyped-def]
    """`StationControl.set_threshold` edits a lane's live rules: one class changed, the card's others kept."""
    from inspector.access.control import StationControl
    from inspector.access.users import Role

    calibrated_model(tmp_path / "models" / "m", "m", CALIBRATED)
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    st = Station(parse_config(CONFIG.format(model="m", verdict_a="", verdict_b="")), db_url="none", archive=False)
    try:
        control = StationControl(st, engine=engine)
        control.create_admin("admin-pass")
        control.login("admin", "admin-pass")
        control.add_user("eng", "engineer-pass", Role.ENGINEER)
        control.login("eng", "engineer-pass")
        assert control.set_threshold("a", "dent", 0.6) == 0.45  # the card's dent threshold was in force
        assert st.lanes["a"].rules.class_thresholds == {**CALIBRATED, "dent": 0.6}
        assert ("dent", 0.6) in st.lanes["a"].provenance.thresholds
        assert st.lanes["b"].rules.class_thresholds == CALIBRATED
    finally:
        st.stop()
