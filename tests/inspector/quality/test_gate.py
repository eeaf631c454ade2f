"""``inspector model gate`` and `require_gate`: a candidate replaces the current detector only when it is no
worse on the same held-out images, the verdict lives in its card, and the card stays valid."""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspector.cli import app
from inspector.pipeline.model_repo import ModelCard, dump_toml, load_card
from inspector.quality.gate import GateRefused, ModelRef, dataset_sha256, gate_problem, require_gate
from tests.inspector.quality.helpers import rendered, write_yolo_source
from tests.inspector.quality.test_dataset_eval import DETECTIONS, SHIPPED, ScriptedImages, _digest


def _run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, args)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def _model(folder: Path, name: str, threshold: float, salt: bytes = b"") -> Path:
    """A copy of the shipped model under another name and threshold; ``salt`` makes it another file (a retrain)."""
    shutil.copytree(SHIPPED, folder)
    card = tomllib.loads((folder / "card.toml").read_text())
    onnx = folder / card["file"]
    if salt:
        onnx.write_bytes(onnx.read_bytes() + salt)  # never loaded: the scripted backend answers
    card.update(name=name, sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
    card["metrics"]["threshold"] = threshold
    (folder / "card.toml").write_text(dump_toml(card))
    return folder


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    frames = rendered()
    be = ScriptedImages({_digest(f.image): DETECTIONS[i] for i, f in enumerate(frames)})
    monkeypatch.setattr("inspector.quality.dataset_eval.create_backend", lambda *a, **k: be)
    code, text = _run(["dataset", "import", "--format", "yolo", str(write_yolo_source(tmp_path / "src", frames)),
                       "--out", str(tmp_path / "ds"), "--split", "0,0,1"])
    assert code == 0, text
    current = _model(tmp_path / "current", "current", 0.25)
    candidate = _model(tmp_path / "candidate", "candidate", 0.5, salt=b"retrained")
    return candidate, current, tmp_path / "ds" / "data.yaml"


def _gate(candidate: Path, current: Path, data: Path, *extra: str) -> tuple[int, str]:
    return _run(["model", "gate", "--candidate", str(candidate), "--current", str(current), "--data", str(data),
                 *extra])


def test_a_candidate_worse_at_its_threshold_fails_and_cannot_be_selected(setup: tuple[Path, Path, Path]) -> None:
    candidate, current, data = setup
    before = load_card(candidate)
    code, text = _gate(candidate, current, data)
    # same detections; at 0.25 the current model catches image 2 (0.45) but also rejects image 5 (0.3);
    # at 0.5 the candidate lets image 2 through: escape 1/6 against 0/6, false reject 1/2 against 2/2
    assert code == 1, text
    assert "failed: escape rate 16.67% > current 0.00% + 0.00%" in text and "gate FAILED over 8 images" in text
    after = load_card(candidate)  # the sha256 of the model file checked: still a valid card
    assert after.sha256 == before.sha256 and after.card_sha256 != before.card_sha256
    gate = after.extra["gate"]
    assert gate["passed"] is False and gate["against"] == "current"
    assert gate["against_sha256"] == load_card(current).sha256 and gate["candidate_sha256"] == after.sha256
    assert gate["data_sha256"] == dataset_sha256(data, "test") and gate["split"] == "test" and gate["images"] == 8
    assert gate["candidate"]["escapes"] == 1 and gate["current"]["escapes"] == 0
    assert gate["candidate"]["false_rejects"] == 1 and gate["current"]["false_rejects"] == 2
    assert gate["candidate"]["threshold"] == 0.5 and gate["current"]["threshold"] == 0.25
    assert gate["date"].endswith("+00:00")
    with pytest.raises(GateRefused, match=r"model candidate: failed its gate against current \(escape rate 16.67%"):
        require_gate(after, load_card(current))
    audit = require_gate(after, load_card(current), override_by="root")
    assert audit.startswith("gate overridden by root: model candidate: failed its gate against current")


def test_within_the_allowed_margin_it_passes_and_can_be_selected(setup: tuple[Path, Path, Path],
                                                                 tmp_path: Path) -> None:
    candidate, current, data = setup
    code, text = _gate(candidate, current, data, "--max-escape-increase", "0.17", "--json", str(tmp_path / "g.json"))
    assert code == 0, text
    assert "gate passed over 8 images" in text
    card = load_card(candidate)
    assert card.extra["gate"]["passed"] is True
    assert json.loads((tmp_path / "g.json").read_text())["data_sha256"] == card.extra["gate"]["data_sha256"]
    assert require_gate(card, load_card(current)) == ""
    # the other way round, the current model would need its own gate against the candidate
    with pytest.raises(GateRefused, match="holds no promotion gate"):
        require_gate(load_card(current), card)


def test_a_gate_belongs_to_one_file_and_one_replaced_model(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    candidate, current, data = setup
    assert _gate(candidate, current, data, "--max-escape-increase", "1")[0] == 0
    card, cur = load_card(candidate), load_card(current)
    other = load_card(_model(tmp_path / "other", "other", 0.3, salt=b"another"))
    assert "its gate was against current" in gate_problem(card, other)
    retrained = ModelCard(**{**card.__dict__, "sha256": "f" * 64})
    assert "its gate was run on another model file" in gate_problem(retrained, cur)
    assert gate_problem(card, None) == "" and gate_problem(cur, cur) == ""  # nothing replaced / the same file


def test_the_same_file_fed_at_another_input_size_is_another_detector(setup: tuple[Path, Path, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One ONNX file behind a card with another input size detects differently (a 384 input sees a 320 frame's
    5-12 px defects on 1.44x the cells): selecting it needs its own gate, as a retrained file does; a plain copy
    of the card under another name is the same detector."""
    _candidate, current, data = setup
    cur = load_card(current)
    bigger = _model(tmp_path / "bigger", "bigger", 0.25)  # the same model file as current
    raw = tomllib.loads((bigger / "card.toml").read_text())
    raw.update(input_width=384, input_height=384)
    (bigger / "card.toml").write_text(dump_toml(raw))
    card = load_card(bigger)
    assert card.sha256 == cur.sha256
    assert "holds no promotion gate" in gate_problem(card, cur)
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path))  # a recipe's history names the model it ran
    assert "holds no promotion gate" in gate_problem(card, ModelRef("current", cur.sha256))
    assert gate_problem(load_card(_model(tmp_path / "copy", "copy", 0.25)), cur) == ""
    assert _gate(bigger, current, data, "--max-escape-increase", "1")[0] == 0
    gated = load_card(bigger)
    assert gated.extra["gate"]["candidate_input"] == "384x384" and gated.extra["gate"]["against_input"] == "320x320"
    assert gate_problem(gated, cur) == ""
    # a gate run at one input size does not carry over to a card that feeds the file at another
    raw = tomllib.loads((bigger / "card.toml").read_text())
    raw.update(input_width=416, input_height=416)
    (bigger / "card.toml").write_text(dump_toml(raw))
    assert "its gate was run at input 384x384" in gate_problem(load_card(bigger), cur)


def test_no_gate_is_written_for_a_model_file_its_card_does_not_match(setup: tuple[Path, Path, Path]) -> None:
    candidate, current, data = setup
    onnx = candidate / load_card(candidate).file
    onnx.write_bytes(onnx.read_bytes() + b"tampered")
    before = (candidate / "card.toml").read_bytes()
    code, text = _gate(candidate, current, data)
    assert code == 2 and "does not match its card" in text
    assert (candidate / "card.toml").read_bytes() == before


def test_the_data_digest_covers_images_and_labels(setup: tuple[Path, Path, Path]) -> None:
    _candidate, _current, data = setup
    digest = dataset_sha256(data, "test")
    label = sorted((data.parent / "labels" / "test").glob("*.txt"))[1]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    assert dataset_sha256(data, "test") != digest


def _calibrate(folder: Path, class_thresholds: dict[str, float]) -> None:
    card = tomllib.loads((folder / "card.toml").read_text())
    card["metrics"]["class_thresholds"] = class_thresholds
    (folder / "card.toml").write_text(dump_toml(card))


def test_each_model_is_gated_at_its_own_cards_class_thresholds(setup: tuple[Path, Path, Path]) -> None:
    """The candidate's card lowers contamination to 0.4 and raises scratch to 0.65: it catches image 2
    (contamination 0.45) that its 0.5 let through and no longer rejects OK image 0 (scratch 0.6); the current
    card raises scratch to 0.65: OK images 0 and 5 (scratch 0.6, 0.3) pass. Both then escape nothing and reject
    nothing: the gate that failed at one threshold each passes, and the card records each side's rules."""
    candidate, current, data = setup
    _calibrate(candidate, {"contamination": 0.4, "scratch": 0.65})
    _calibrate(current, {"scratch": 0.65})
    code, text = _gate(candidate, current, data)
    assert code == 0, text
    assert "candidate threshold 0.5, contamination 0.4, scratch 0.65: " in text
    assert "current   threshold 0.25, scratch 0.65: " in text
    gate = load_card(candidate).extra["gate"]
    assert gate["passed"] is True
    assert gate["candidate"]["threshold"] == 0.5
    assert gate["candidate"]["class_thresholds"] == {"contamination": 0.4, "scratch": 0.65}
    assert gate["current"]["threshold"] == 0.25 and gate["current"]["class_thresholds"] == {"scratch": 0.65}
    for side in ("candidate", "current"):
        assert (gate[side]["escapes"], gate[side]["false_rejects"]) == (0, 0)
