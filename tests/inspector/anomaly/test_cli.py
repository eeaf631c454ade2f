"""``inspector anomaly teach|score|eval|synth`` end to end on small images, and its one-line errors."""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from camera.products import write_family
from inspector.cli import app


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plates")
    write_family("plate", root, 14, 4, seed=0, width=96, height=96)
    return root


@pytest.fixture(scope="module")
def model(plates: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:  # the module's teach shares the tests' backbone cache
        mp.setenv("INSPECTOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "anomaly-cache"))
        out = tmp_path_factory.mktemp("models") / "plate-test"
        code, stdout, stderr = _invoke("anomaly", "teach", "--good", str(plates / "good"), "--out", str(out),
                                       "--size", "64")
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1].startswith(f"taught {out} from 14 good images (cross-validated")
    assert "features" in stderr and "threshold" in stderr  # progress on stderr
    yield out


def test_teach_writes_a_card_with_kind_sha256s_rule_and_provenance(model: Path) -> None:
    card = tomllib.loads((model / "card.toml").read_text())
    assert card["kind"] == "anomaly" and card["file"] == "memory_bank.npy"
    assert len(card["sha256"]) == 64 and card["backbone"]["sha256"].startswith("579344248a93")
    assert card["input_width"] == card["input_height"] == 64
    assert card["threshold"]["score"] == 1.0 and all(lv["raw"] > 0 for lv in card["levels"].values())
    assert [lv["taps"] for lv in card["levels"].values()] == [[2, 4], [10]]
    assert "cross-validated" in card["threshold"]["rule"] and "the highest" in card["threshold"]["rule"]
    assert card["taught"]["good_images"] == 14 and card["taught"]["threshold_images"] == 14
    # every good image, scored cross-validated, is under the threshold (score units: the threshold is 1.0)
    assert len(card["threshold"]["good_scores"]) == 14 and max(card["threshold"]["good_scores"]) < 1.0
    assert card["metrics"]["cross_validated_false_reject"] == 0.0
    assert "folds" in card["taught"]["threshold_scores"]
    assert card["taught"]["cpu"] and card["edge_cells"] == 2


def test_score_writes_the_json_and_heat_maps(model: Path, plates: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    code, stdout, stderr = _invoke("anomaly", "score", "--model", str(model), str(plates / "bad"),
                                   str(plates / "good" / "000000.png"), "--json", str(out),
                                   "--heatmaps", str(tmp_path / "heat"))
    assert code == 0, stderr
    doc = json.loads(out.read_text())
    assert doc["model"] == "plate-test" and doc["threshold"] == 1.0
    assert len(doc["results"]) == 5
    aligned = "alignment" in tomllib.loads((model / "card.toml").read_text())
    assert aligned  # a plate is a part: its frames are aligned, and each result says whether its pose was found
    for r in doc["results"]:
        assert set(r) == {"file", "score", "verdict", "posed"}
        assert r["verdict"] == ("NG" if r["score"] >= 1.0 else "OK")
    assert doc["results"][-1]["posed"] is True  # a good plate
    assert len(list((tmp_path / "heat").iterdir())) == 5
    assert cv2.imread(str(next((tmp_path / "heat").iterdir()))).shape == (96, 96, 3)
    assert stdout.strip().splitlines()[-1].startswith("scored 5 images with plate-test")


def test_eval_reports_image_and_pixel_auroc(model: Path, plates: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    code, stdout, stderr = _invoke("anomaly", "eval", "--model", str(model), "--good", str(plates / "good"),
                                   "--bad", str(plates / "bad"), "--masks", str(plates / "masks"), "--json", str(out),
                                   "--record")
    assert code == 0, stderr
    doc = json.loads(out.read_text())
    recorded = tomllib.loads((model / "card.toml").read_text())["metrics"]["eval"]
    assert recorded["image_auroc"] == round(doc["image_auroc"], 4) and recorded["bad_images"] == 4
    assert doc["good"] == 14 and doc["bad"] == 4 and doc["masks"] == 4
    assert 0.0 <= doc["image_auroc"] <= 1.0 and 0.0 <= doc["pixel_auroc"] <= 1.0
    assert "image AUROC" in stdout.strip().splitlines()[-1]


def test_teach_with_bad_images_places_the_threshold_by_them(plates: Path, tmp_path: Path) -> None:
    code, _stdout, stderr = _invoke("anomaly", "teach", "--good", str(plates / "good"), "--bad", str(plates / "bad"),
                                    "--out", str(tmp_path / "m"), "--size", "64", "--roi", "4,4,92,92")
    assert code == 0, stderr
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    th = card["threshold"]
    assert "NG images" in th["rule"] and th["lowest_bad"] > 0
    assert th["good_quantile"] <= 1.0 and th["lowest_bad"] > 0
    assert card["roi"] == "4,4,92,92" and card["taught"]["bad_images"] == 4


def _one_line_exit_2(args: list[str], names: str) -> None:
    code, _stdout, stderr = _invoke(*args)
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and names in lines[0], stderr


def test_a_folder_without_images_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_exit_2(["anomaly", "teach", "--good", str(tmp_path / "empty"), "--out", str(tmp_path / "m")],
                     str(tmp_path / "empty"))


def test_too_few_good_images_is_one_line(plates: Path, tmp_path: Path) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((plates / "good").iterdir())[:5]:
        (few / p.name).write_bytes(p.read_bytes())
    _one_line_exit_2(["anomaly", "teach", "--good", str(few), "--out", str(tmp_path / "m")], "at least 10")


def test_a_truncated_image_is_one_line_naming_it(plates: Path, model: Path, tmp_path: Path) -> None:
    data = (plates / "good" / "000001.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_exit_2(["anomaly", "score", "--model", str(model), str(cut), "--json", str(tmp_path / "s.json")],
                     str(cut))
    jpg = tmp_path / "cut.jpg"
    _ok, enc = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    jpg.write_bytes(enc.tobytes()[:-300])
    _one_line_exit_2(["anomaly", "score", "--model", str(model), str(jpg), "--json", str(tmp_path / "s.json")],
                     str(jpg))
    junk = tmp_path / "junk.bmp"
    junk.write_bytes(b"not an image at all")
    _one_line_exit_2(["anomaly", "score", "--model", str(model), str(junk), "--json", str(tmp_path / "s.json")],
                     str(junk))


def test_a_memory_bank_whose_sha256_fails_is_one_line(model: Path, plates: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    copy.mkdir()
    (copy / "card.toml").write_bytes((model / "card.toml").read_bytes())
    bank = bytearray((model / "memory_bank.npy").read_bytes())
    bank[-1] ^= 0x40
    (copy / "memory_bank.npy").write_bytes(bytes(bank))
    _one_line_exit_2(["anomaly", "score", "--model", str(copy), str(plates / "good"), "--json", str(tmp_path / "s.json")],
                     "memory_bank.npy does not match its card")


def test_mono8_and_other_sizes_score_like_colour(model: Path, plates: Path, tmp_path: Path) -> None:
    src = cv2.imread(str(plates / "good" / "000002.png"))
    cv2.imwrite(str(tmp_path / "grey.tif"), cv2.cvtColor(src, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "wide.jpg"), cv2.resize(src, (150, 96)))
    code, _stdout, stderr = _invoke("anomaly", "score", "--model", str(model), str(tmp_path), "--json",
                                    str(tmp_path / "s.json"))
    assert code == 0, stderr
    assert len(json.loads((tmp_path / "s.json").read_text())["results"]) == 2


def test_synth_writes_a_family(tmp_path: Path) -> None:
    code, stdout, stderr = _invoke("anomaly", "synth", "--family", "fabric", "--out", str(tmp_path), "--good", "2",
                                   "--bad", "1", "--width", "64", "--height", "64", "--mono")
    assert code == 0, stderr
    assert len(list((tmp_path / "good").iterdir())) == 2 and len(list((tmp_path / "masks").iterdir())) == 1
    assert cv2.imread(str(next((tmp_path / "good").iterdir())), cv2.IMREAD_UNCHANGED).ndim == 2
    assert stdout.strip().startswith("fabric: 2 good and 1 anomalous")
    _one_line_exit_2(["anomaly", "synth", "--family", "granite", "--out", str(tmp_path)], "--family")


def test_teach_says_which_levels_it_whitened_as_a_texture(tmp_path: Path, plates: Path) -> None:
    write_family("fabric", tmp_path / "cloth", 12, 0, seed=0, width=96, height=96)
    code, stdout, stderr = _invoke("anomaly", "teach", "--good", str(tmp_path / "cloth" / "good"), "--out",
                                   str(tmp_path / "cloth-model"), "--size", "96")
    assert code == 0, stderr
    last = stdout.strip().splitlines()[-1]
    assert "level 0 whitened (a texture: position share 0.0" in last, last
    assert "blocks 0, 1, 2, 4 in 80 dims)" in last, last  # its texture taps, projected
    assert "; the spec's level 1 left out (not a texture: position share 0." in last, last  # a texture's level alone
    assert "; a tone level (colour mean and spread over 24 and 56 px windows, one Gaussian for the texture)" in last
    card = tomllib.loads((tmp_path / "cloth-model" / "card.toml").read_text())
    assert card["levels"]["0"]["whiten"] is True and card["levels"]["0"]["position_share"] < 0.1
    code, stdout, stderr = _invoke("anomaly", "teach", "--good", str(plates / "good"), "--out",
                                   str(tmp_path / "plate-model"), "--size", "96")
    assert code == 0, stderr
    assert "whitened" not in stdout.strip().splitlines()[-1] and "left out" not in stdout.strip().splitlines()[-1]
    assert "one Gaussian per cell)" in stdout.strip().splitlines()[-1]  # a part's tone level
    assert "; aligned to the good parts' pose (they lay up to " in stdout.strip().splitlines()[-1]  # a part
    assert "alignment" in tomllib.loads((tmp_path / "plate-model" / "card.toml").read_text())
    assert "aligned" not in last and "alignment" not in card  # a texture is not
    code, stdout, stderr = _invoke("anomaly", "teach", "--good", str(plates / "good"), "--out",
                                   str(tmp_path / "plate-plain"), "--size", "96", "--no-align")
    assert code == 0, stderr
    assert "aligned" not in stdout.strip().splitlines()[-1]  # the frames as they come, for speed
    assert "alignment" not in tomllib.loads((tmp_path / "plate-plain" / "card.toml").read_text())
    assert not (tmp_path / "plate-plain" / "alignment.npy").exists()


def test_score_says_which_images_had_no_part_pose(model: Path, plates: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"  # the fixture without its plate: a flat grey frame
    assert cv2.imwrite(str(empty), np.full((96, 96, 3), 90, np.uint8))
    out = tmp_path / "scores.json"
    code, stdout, stderr = _invoke("anomaly", "score", "--model", str(model), str(plates / "good" / "000000.png"),
                                   str(empty), "--json", str(out))
    assert code == 0, stderr
    results = json.loads(out.read_text())["results"]
    assert [r["posed"] for r in results] == [True, False]
    ng = sum(r["verdict"] == "NG" for r in results)
    assert stdout.strip().splitlines()[-1] == (f"scored 2 images with plate-test: {ng} NG, {2 - ng} OK; 1 without a "
                                               f"part pose (scored where it lay) -> {out}")


def test_teach_says_how_many_good_images_had_no_part_pose(plates: Path, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for p in sorted((plates / "good").glob("*.png")):
        shutil.copy(p, good / p.name)
    assert cv2.imwrite(str(good / "zz_empty.png"), np.full((96, 96, 3), 90, np.uint8))  # a fixture without its part
    code, stdout, stderr = _invoke("anomaly", "teach", "--good", str(good), "--out", str(tmp_path / "m"),
                                   "--size", "64")
    assert code == 0, stderr
    assert "; 1 good image without a part pose (scored where it lay: check it is the part)" in stdout
    assert tomllib.loads((tmp_path / "m" / "card.toml").read_text())["alignment"]["good_without_pose"] == 1
