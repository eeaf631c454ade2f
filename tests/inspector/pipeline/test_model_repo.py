from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspector.pipeline.model_repo import DEFAULT_MODEL, ModelError, load_card, sha256_file


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


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.replace("input_width = 320", "input_width = 0"), "input_width"),
        (lambda t: t.replace("input_height = 320", "input_height = -320"), "input_height"),
        (lambda t: t.replace("threshold = 0.25", "threshold = 5.0"), "metrics.threshold"),
        (lambda t: t.replace("escape_rate = 0.00125", "escape_rate = nan"), "metrics.escape_rate"),
        (lambda t: t.replace('classes = ["scratch", "dent"', 'classes = ["scratch", "scratch"'), "classes"),
        (lambda t: t.replace("pad_value = 114", "pad_value = 999"), "pad_value"),
    ],
)
def test_out_of_range_card_values_are_refused_naming_the_field(tmp_path: Path, edit, field: str) -> None:
    folder = copy_model(tmp_path)
    card = folder / "card.toml"
    card.write_text(edit(card.read_text()))
    with pytest.raises(ModelError, match=rf"card.toml: {field}") as err:
        load_card(folder)
    assert "\n" not in str(err.value)


def test_card_nested_500_deep_is_one_line(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    card = folder / "card.toml"
    card.write_text(card.read_text() + "\ndeep = " + "[" * 500 + "]" * 500 + "\n")
    with pytest.raises(ModelError, match="nested too deeply"):
        load_card(folder)


def test_card_digest_covers_the_card_not_only_the_onnx(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    before = load_card(folder).card_sha256
    card = folder / "card.toml"
    card.write_text(card.read_text().replace("threshold = 0.25", "threshold = 0.9"))
    after = load_card(folder)
    assert len(before) == 64 and after.card_sha256 != before and after.threshold == 0.9


def test_corrupt_onnx_whose_card_sha256_matches_is_a_model_error(tmp_path: Path) -> None:
    from inspector.pipeline.backends import create_backend

    folder = copy_model(tmp_path)
    (folder / "model.onnx").write_bytes(b"not an onnx graph at all")
    card = folder / "card.toml"
    card.write_text(card.read_text().replace(load_card(DEFAULT_MODEL).sha256, sha256_file(folder / "model.onnx")))
    c = load_card(folder)
    for backend in ("openvino", "onnxruntime"):
        with pytest.raises(ModelError, match=f"cannot be loaded by {backend}") as err:
            create_backend(backend, c, max_batch=1)
        assert "\n" not in str(err.value)


def test_a_changed_card_is_recorded_in_the_audit_trail(tmp_path: Path, engine) -> None:
    from inspector.access.card_audit import audit_card_change
    from inspector.access.users import AuditLog

    folder = copy_model(tmp_path)
    audit_card_change(engine, load_card(folder))
    audit_card_change(engine, load_card(folder))  # same card: no second row
    card = folder / "card.toml"
    card.write_text(card.read_text().replace("threshold = 0.25", "threshold = 1.0"))
    audit_card_change(engine, load_card(folder))
    rows = [e for e in AuditLog(engine).list() if e.action == "model_card_changed"]
    assert len(rows) == 2
    assert rows[0].old is not None and "threshold 0.25" in rows[0].old and "threshold 1.0" in (rows[0].new or "")


def _card_edited(tmp_path: Path, old: str, new: str) -> Path:
    folder = copy_model(tmp_path)
    card = folder / "card.toml"
    text = card.read_text()
    assert old in text
    card.write_text(text.replace(old, new, 1))
    return folder


ONE_CLASS = ('classes = ["scratch", "dent", "crack", "contamination"]', 'classes = ["scratch"]')


@pytest.mark.parametrize(("backend", "precision", "file"),
                         [("openvino", "f32", "model.onnx"), ("openvino", "int8", "model_int8.xml"),
                          ("onnxruntime", "auto", "model.onnx")])
def test_a_card_listing_other_classes_than_its_model_has_is_refused(tmp_path: Path, backend: str, precision: str,
                                                                     file: str) -> None:
    """The card's sha256 matches the file, but it lists 1 class for the 4-class model: defects of the other
    three classes would pass as OK. The runtime reads the head's channels (4 box + 4 classes) and refuses."""
    from inspector.pipeline.backends import create_backend

    card = load_card(_card_edited(tmp_path, *ONE_CLASS))
    assert card.classes == ("scratch",)
    with pytest.raises(ModelError) as err:
        create_backend(backend, card, max_batch=1, precision=precision)
    msg = str(err.value)
    assert "\n" not in msg and "card.toml" in msg and f"classes lists 1, but {file} detects 4" in msg


def test_a_card_whose_input_size_is_not_the_models_is_refused(tmp_path: Path) -> None:
    """The ONNX graph leaves its input size open (any multiple of 32 runs); the INT8 IR was fixed at 320 x 320
    when it was quantized, so a card saying 640 x 640 contradicts it."""
    from inspector.pipeline.backends import create_backend

    card = load_card(_card_edited(tmp_path, "input_width = 320\ninput_height = 320",
                                  "input_width = 640\ninput_height = 640"))
    with pytest.raises(ModelError) as err:
        create_backend("openvino", card, max_batch=1, precision="int8")
    msg = str(err.value)
    assert "\n" not in msg and "card.toml" in msg
    assert "input_width x input_height = 640 x 640, but model_int8.xml takes 320 x 320" in msg


def test_station_start_with_a_mismatched_card_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspector.cli import app

    folder = _card_edited(tmp_path, *ONE_CLASS)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'name = "m"\n[model]\nname = "{folder}"\n[[cameras]]\nid = "cam"\nkind = "simulated"\n')
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--duration", "1", "--db", "none"])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert str(folder / "card.toml") in line and "classes lists 1, but model.onnx detects 4" in line
