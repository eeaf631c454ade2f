from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspector.model_repo import DEFAULT_MODEL, ModelError, load_card, sha256_file


def copy_model(tmp_path: Path) -> Path:
    card = load_card(DEFAULT_MODEL, verify=False)
    dst = tmp_path / "m"
    shutil.copytree(card.folder, dst)
    return dst


def test_shipped_model_card_is_complete_and_matches_its_file() -> None:
    card = load_card(DEFAULT_MODEL)
    assert card.classes == ("scratch", "dent", "crack", "contamination")
    assert (card.input_width, card.input_height) == (320, 320)
    assert sha256_file(card.path) == card.sha256


def test_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    with open(folder / "model.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00corrupt\x00")
    with pytest.raises(ModelError, match="does not match its card"):
        load_card(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('file = "model.onnx"', 'file = "model.pt"'), "pickled"),
        (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("classes")), "lacks the field 'classes'"),
        (lambda t: t.replace("input_width = 320", 'input_width = "wide"'), "wrong type"),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_cards_are_refused(tmp_path: Path, edit, message: str) -> None:
    folder = copy_model(tmp_path)
    card = folder / "card.toml"
    card.write_text(edit(card.read_text()))
    with pytest.raises(ModelError, match=message):
        load_card(folder)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither a model folder"):
        load_card("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="card.toml is missing"):
        load_card(tmp_path / "empty")
