"""Per-position normalisation: each cell's distance divided by its own divisor (the good images' leave-one-out
distances there: mean + 3 sd), in numpy when teaching, in the scoring graph (f32 and int8 products), and in the
model folder beside the bank with its sha256; cards without the map score every cell alike."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.anomaly import teach as teaching
from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.model import POSITION_FILE, load_anomaly_model, write_model
from inspector.anomaly.patchcore import (
    POSITION_FLOOR,
    POSITION_SD,
    cell_divisors,
    cell_divisors_without_each,
    leave_one_out_maps,
    nearest_distances,
)
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor
from inspector.pipeline.model_repo import ModelError

LEVELS = (FeatureSpec((2, 4), 8, 3, normalise="image"), FeatureSpec((10,), 16, 3))


def test_each_cells_divisor_is_the_mean_plus_3_sd_of_its_good_distances_at_least_half_the_median() -> None:
    rng = np.random.default_rng(0)
    maps = rng.gamma(4.0, 1.0, (50, 30)).astype(np.float32)
    maps[:, 7] *= 5.0  # a cell where good parts vary
    maps[:, 3] = 0.0  # a cell every good image matches exactly (padding): floored, never zero
    got = cell_divisors(maps)
    plain = maps.mean(axis=0) + POSITION_SD * maps.std(axis=0)
    assert POSITION_SD == 3.0 and POSITION_FLOOR == 0.5
    floor = POSITION_FLOOR * np.median(plain)
    np.testing.assert_allclose(got, np.maximum(plain, floor), rtol=1e-5)
    assert got[3] == pytest.approx(floor) and got[7] > 3 * np.median(got)


def test_the_divisors_without_each_image_are_those_of_the_other_images() -> None:
    rng = np.random.default_rng(1)
    maps = rng.gamma(3.0, 1.0, (12, 20)).astype(np.float32)
    maps[4, 5] = 40.0  # one image's outlying cell does not widen its own divisor
    got = cell_divisors_without_each(maps)
    for i in range(len(maps)):
        np.testing.assert_allclose(got[i], cell_divisors(np.delete(maps, i, axis=0)), rtol=1e-4)
    assert got[4, 5] < cell_divisors(maps)[5]
    with pytest.raises(ValueError):
        cell_divisors_without_each(maps[:1])


def test_leave_one_out_maps_are_each_patchs_distance_to_the_bank_without_its_images_rows() -> None:
    rng = np.random.default_rng(4)
    images = [rng.normal(0, 1, (40, 12)).astype(np.float32) for _ in range(5)]
    owner = np.repeat(np.arange(5), 6)
    bank = np.concatenate([im[:6] for im in images])
    got = leave_one_out_maps(images, bank, owner)
    for i, im in enumerate(images):
        np.testing.assert_allclose(got[i], nearest_distances(im, bank[owner != i]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["f32", "int8-distances"])
def test_the_scoring_graph_divides_each_cell_by_its_divisor(precision: str) -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    fine, coarse = FeatureExtractor(LEVELS, 64, 64).all_levels(frames)
    banks = (fine[0].reshape(-1, 64)[::3].copy(), coarse[1].reshape(-1, 112)[::2].copy())
    divisors = (rng.uniform(0.3, 3.0, (8, 8)).astype(np.float32), rng.uniform(0.3, 3.0, (4, 4)).astype(np.float32))
    out = AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), precision, cell_divisors=divisors).score(frames)
    m0 = np.stack([nearest_distances(f.reshape(-1, 64), banks[0]).reshape(8, 8) for f in fine]) / 7.5 / divisors[0]
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), banks[1]).reshape(4, 4) for f in coarse]) / 3.0 / divisors[1]
    want = np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2))
    tol = 2e-3 if precision == "f32" else 0.05  # int8 products: a few percent (test_runtime_int8)
    np.testing.assert_allclose(out.maps, want, rtol=tol, atol=tol * want.max())
    np.testing.assert_allclose(out.scores, want.reshape(3, -1).max(1), rtol=tol)
    with pytest.raises(ValueError, match="do not fit"):
        AnomalyScorer(LEVELS, 64, 64, banks, (7.5, 3.0), cell_divisors=(divisors[1], divisors[0]))


def _write(folder: Path, divisors: tuple[np.ndarray, ...] | None) -> None:
    rng = np.random.default_rng(0)
    banks = rng.normal(0, 1, (30, 64)).astype(np.float32), rng.normal(0, 1, (12, 112)).astype(np.float32)
    write_model(folder, "m", banks, LEVELS, 64, 64, (3.5, 7.25), None, {}, cell_divisors=divisors,
                position_rule="mean + 3 sd")


def test_the_cell_divisors_are_written_with_their_sha256_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    divisors = (np.full((8, 8), 2.0, np.float32), np.arange(1, 17, dtype=np.float32).reshape(4, 4))
    _write(tmp_path / "m", divisors)
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["position"]["file"] == POSITION_FILE and len(card["position"]["sha256"]) == 64
    assert card["position"]["grids"] == [[8, 8], [4, 4]] and card["position"]["rule"] == "mean + 3 sd"
    model = load_anomaly_model(tmp_path / "m")
    assert model.cell_divisors is not None
    for got, want in zip(model.cell_divisors, divisors):
        np.testing.assert_array_equal(got, want)
    changed = np.load(tmp_path / "m" / POSITION_FILE)
    changed[5] = 0.5
    np.save(tmp_path / "m" / POSITION_FILE, changed)
    with pytest.raises(ModelError, match="cell_divisors.npy does not match its card"):
        load_anomaly_model(tmp_path / "m")
    (tmp_path / "m" / POSITION_FILE).unlink()
    with pytest.raises(ModelError, match="not found"):
        load_anomaly_model(tmp_path / "m")


def test_the_scorer_of_a_card_with_a_map_divides_by_it(tmp_path: Path) -> None:
    divisors = (np.random.default_rng(3).uniform(0.5, 2.0, (8, 8)).astype(np.float32), np.full((4, 4), 3.0, np.float32))
    _write(tmp_path / "m", divisors)
    model = load_anomaly_model(tmp_path / "m")
    frames = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    want = AnomalyScorer(LEVELS, 64, 64, model.bank, model.raw_threshold, cell_divisors=divisors).score(frames)
    plain = AnomalyScorer(LEVELS, 64, 64, model.bank, model.raw_threshold).score(frames)
    got = AnomalyScorer.for_model(model, precision="f32").score(frames)  # as the station builds its scorers
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-5)
    assert not np.allclose(got.maps, plain.maps, rtol=0.05)


def test_a_map_that_does_not_fit_the_grids_or_holds_a_zero_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "small", (np.ones((4, 4), np.float32), np.ones((4, 4), np.float32)))
    with pytest.raises(ModelError, match="is not 80 positive float32 divisors"):
        load_anomaly_model(tmp_path / "small")
    _write(tmp_path / "zero", (np.zeros((8, 8), np.float32), np.ones((4, 4), np.float32)))
    with pytest.raises(ModelError, match="positive"):
        load_anomaly_model(tmp_path / "zero")


def test_a_card_without_a_map_scores_every_cell_alike_as_before(tmp_path: Path) -> None:
    _write(tmp_path / "m", (np.full((8, 8), 2.0, np.float32), np.full((4, 4), 2.0, np.float32)))
    _write(tmp_path / "m", None)  # taught again without: the map and [position] are gone
    assert not (tmp_path / "m" / POSITION_FILE).exists()
    assert "position" not in tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    model = load_anomaly_model(tmp_path / "m")
    assert model.cell_divisors is None
    frames = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    plain = AnomalyScorer(LEVELS, 64, 64, model.bank, model.raw_threshold).score(frames)
    got = AnomalyScorer.for_model(model).score(frames)
    np.testing.assert_allclose(got.maps, plain.maps, rtol=1e-5)


SIDE = 128


def _part(rng: np.random.Generator, spot: float = 0.0) -> np.ndarray:
    """A part whose top half is a busy print that changes from part to part and whose bottom half is plain;
    ``spot``: a faint dark spot of that depth on the plain half."""
    img = np.full((SIDE, SIDE, 3), 170, np.uint8)
    for _ in range(40):  # strokes anywhere in the top half: good parts differ there
        x0, y0 = int(rng.integers(0, SIDE)), int(rng.integers(4, SIDE // 2 - 8))
        cv2.line(img, (x0, y0), (x0 + int(rng.integers(-20, 20)), y0 + int(rng.integers(0, 12))),
                 tuple(int(v) for v in rng.integers(0, 120, 3)), int(rng.integers(1, 4)))
    img = cv2.add(img, rng.integers(0, 3, img.shape, dtype=np.uint8))  # sensor noise
    if spot:
        cv2.circle(img, (64, 92), 6, tuple(int(v) for v in np.full(3, 170 - spot)), -1)
    return img


def test_teaching_divides_by_the_cells_divisors_so_a_faint_spot_on_a_plain_area_is_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(teaching, "TONE", False)  # the backbone's levels alone (the tone level finds the spot anyway)
    monkeypatch.setattr(teaching, "ALIGN", False)  # the frames as they come: the divisors are the subject here
    rng = np.random.default_rng(7)
    good = tmp_path / "good"
    good.mkdir()
    for i in range(24):
        cv2.imwrite(str(good / f"{i:03d}.png"), _part(rng))
    spots = [_part(rng, 15.0) for _ in range(4)]
    found = {}
    for position in (False, True):
        out = tmp_path / f"position_{position}"
        teaching.teach([good], out, width=SIDE, height=SIDE, position=position)
        model = load_anomaly_model(out)
        assert (model.cell_divisors is not None) == position == (out / POSITION_FILE).is_file()
        out = teaching.scorer_for(model).score(np.stack(spots))
        found[position] = out.maps[:, 10:13, 7:9].reshape(len(spots), -1).max(axis=1)  # the spot's cells
        if position:
            assert (out.scores >= 1.0).all()
    # the busy half's good distances set one threshold for every cell: the spot on the plain half stays under it
    assert (found[False] < 1.0).all() and (found[True] >= 1.0).all(), found
