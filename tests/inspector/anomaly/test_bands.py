"""An aligned part's finest level keeps its bank per band of grid rows (`patchcore.Bands`): each patch is compared only
with the good patches taught near its own row."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly.backbone import FeatureSpec
from inspector.anomaly.model import load_anomaly_model, pack_banks, write_model
from inspector.anomaly.patchcore import (
    Bands,
    band_banks,
    band_count,
    band_window,
    cross_validated_band_maps,
    nearest_distances,
)
from inspector.anomaly.runtime import AnomalyScorer, FeatureExtractor
from inspector.pipeline.model_repo import ModelError, dump_toml
from tests.inspector.anomaly.frames import smooth_frames

LEVELS = (FeatureSpec((2, 4), 8, 3), FeatureSpec((10,), 16, 3))
RAWS = (7.5, 3.0)


def _taught(frames: np.ndarray) -> tuple[tuple[Bands, np.ndarray], list[tuple[float, float]]]:
    """The fine level banded (bands of 2 of its 8 rows, reach 1, every patch of ``frames`` a candidate), the coarse
    one plain; the activation ranges of the same pass."""
    ex = FeatureExtractor(LEVELS, 64, 64, "f32", record_ranges=True)
    fine, coarse = ex.all_levels(frames)
    rows = np.tile(np.repeat(np.arange(8), 8), len(frames))
    bands = band_banks(fine.reshape(-1, 64), rows, 8, 64, height=2, reach=1)
    return (bands, coarse.reshape(-1, 112)[::2].copy()), ex.activation_ranges()


def test_each_bands_bank_is_taught_from_its_own_rows_and_reach_at_the_levels_density() -> None:
    rng = np.random.default_rng(0)
    grid = (10, 4)
    rows = np.repeat(np.arange(grid[0]), 50)  # 50 candidates on each row, each candidate tagged with its row
    candidates = np.column_stack([rows, rng.normal(size=(len(rows), 3))]).astype(np.float32)
    bands = band_banks(candidates, rows, grid[0], 100, height=3, reach=2)
    assert band_count(10, 3) == len(bands.banks) == 4  # rows 0-2, 3-5, 6-8, 9
    for b, bank in enumerate(bands.banks):
        start, stop = band_window(b, grid[0], 3, 2)
        assert (start, stop) == (max(0, 3 * b - 2), min(10, 3 * b + 5))
        assert set(bank[:, 0].astype(int)) <= set(range(start, stop))  # none from outside its window
        assert len(bank) == round(100 * (stop - start) / grid[0])  # 10 bank rows per grid row, as the level's
    assert bands.span(3, 10) == (9, 10) and bands.rows == sum(len(b) for b in bands.banks)


def test_a_patch_is_as_far_as_its_nearest_good_patch_near_its_own_row() -> None:
    # a patch that matches a good patch exactly, but one taught far from its row, is not matched by it
    grid = (6, 2)
    rows = np.repeat(np.arange(6), 2)
    candidates = np.zeros((12, 2), np.float32)
    candidates[:, 0] = rows * 10.0  # each row's good patches differ from the others'
    bands = band_banks(candidates, rows, grid[0], 12, height=2, reach=0)
    query = np.zeros((12, 2), np.float32)
    query[:, 0] = 50.0  # every patch looks like row 5's
    got = bands.nearest(query, grid).reshape(grid)
    np.testing.assert_allclose(got[:, 0], [40, 40, 20, 20, 0, 0])  # rows 0-1 against rows 0-1's patches, ...
    assert nearest_distances(query, candidates).max() == 0.0  # a bank of every row's patches would match them all
    with pytest.raises(ValueError, match="do not fit a grid of 8 rows"):
        bands.nearest(np.zeros((16, 2), np.float32), (8, 2))


@pytest.mark.parametrize("precision", ["f32", "int8-distances", "int8"])
def test_the_scoring_graph_scores_a_banded_level_as_numpy_does(precision: str) -> None:
    (bands, coarse), ranges = _taught(smooth_frames(1, 4))
    frames = smooth_frames(2, 3)
    fine_f, coarse_f = FeatureExtractor(LEVELS, 64, 64, "f32").all_levels(frames)
    m0 = np.stack([bands.nearest(f.reshape(-1, 64), (8, 8)).reshape(8, 8) for f in fine_f]) / RAWS[0]
    m1 = np.stack([nearest_distances(f.reshape(-1, 112), coarse).reshape(4, 4) for f in coarse_f]) / RAWS[1]
    want = np.maximum(m0, m1.repeat(2, axis=1).repeat(2, axis=2))
    want[:, [0, -1], :] = want[:, :, [0, -1]] = 0  # the edge cell along each side is not scored: 0 in the map
    scorer = AnomalyScorer(LEVELS, 64, 64, (bands, coarse), RAWS, precision, edge=1, activation_ranges=ranges)
    out = scorer.score(frames)
    if precision == "f32":
        np.testing.assert_allclose(out.maps, want, rtol=1e-4, atol=1e-5)
    else:  # the products in int8 (and, for int8, the backbone): close, not equal
        np.testing.assert_allclose(out.maps, want, rtol=0.1, atol=0.04 * want.max())
        assert scorer.layer_precisions()["FullyConnected"] <= {"u8", "i8"}
    # one product per band that holds a scored row (the edge rows 0 and 7 lie in bands 0 and 3, which keep one
    # scored row each), and the coarse level's
    assert sum(n for kind, n in scorer.layer_counts().items() if kind in ("FullyConnected", "MatMul")) == 4 + 1


def test_the_cross_validated_maps_of_a_banded_level_score_each_image_against_bands_chosen_without_it() -> None:
    rng = np.random.default_rng(3)
    grid = (4, 3)
    images = [rng.normal(size=(12, 5)).astype(np.float32) for _ in range(6)]
    rows = np.tile(np.repeat(np.arange(4), 3), 6)
    owners = np.repeat(np.arange(6), 12)
    candidates = np.concatenate(images)
    maps = cross_validated_band_maps(images, candidates, owners, rows, grid, 1000, height=2, reach=1, folds=3)
    # each fold's bands keep every candidate of the other folds (1000 rows asked): exact nearest distances to them
    for i, image in enumerate(images):
        others = owners % 3 != i % 3
        for cell in range(12):
            start, stop = band_window(cell // 3 // 2, 4, 2, 1)
            pool = candidates[others & (rows >= start) & (rows < stop)]
            assert maps[i, cell] == pytest.approx(float(nearest_distances(image[cell:cell + 1], pool)[0]), rel=1e-4)


def test_a_banded_bank_is_written_and_read_back_with_its_bands(tmp_path: Path) -> None:
    (bands, coarse), _ = _taught(smooth_frames(4, 2))
    write_model(tmp_path / "m", "m", (bands, coarse), LEVELS, 64, 64, RAWS, None, {})
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    level = card["levels"]["0"]
    assert (level["band_height"], level["band_reach"]) == (2, 1) and level["rows"] == len(np.unique(
        np.concatenate(bands.banks), axis=0))
    assert level["band_rows"] == [len(b) for b in bands.banks] and "band_rows" not in card["levels"]["1"]
    model = load_anomaly_model(tmp_path / "m")
    read = model.bank[0]
    assert isinstance(read, Bands) and (read.height, read.reach) == (2, 1)
    for a, b in zip(read.banks, bands.banks, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.bank[1], coarse)
    frames = smooth_frames(5, 2)
    np.testing.assert_allclose(AnomalyScorer.for_model(model, precision="f32").score(frames).maps,
                               AnomalyScorer(LEVELS, 64, 64, (bands, coarse), RAWS, edge=0).score(frames).maps,
                               rtol=1e-5)
    # bands that do not add up to the level's rows, or do not cover its grid: one line naming the card
    for rows in ([level["band_rows"][0] + 1, *level["band_rows"][1:]], level["band_rows"][:3]):
        card["levels"]["0"]["band_rows"] = rows
        (tmp_path / "m" / "card.toml").write_text(dump_toml(card))
        with pytest.raises(ModelError, match=r"card.toml.*bands"):
            load_anomaly_model(tmp_path / "m", verify=False)


def test_a_banded_bank_stores_each_good_patch_once_and_its_bands_by_index(tmp_path: Path) -> None:
    # neighbouring bands are taught from overlapping rows, so most of their bank rows are the same patches: the bank
    # file holds each once, and each band's rows are indices into them (`band_index.npy`, its sha256 in the card)
    (bands, coarse), _ = _taught(smooth_frames(4, 2))
    every = np.concatenate(bands.banks)
    distinct = len(np.unique(every, axis=0))
    assert distinct < len(every)  # the reach of 1 row makes bands share rows
    write_model(tmp_path / "m", "m", (bands, coarse), LEVELS, 64, 64, RAWS, None, {})
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["levels"]["0"]["rows"] == distinct and card["levels"]["1"]["rows"] == len(coarse)
    assert len(np.load(tmp_path / "m" / "memory_bank.npy")) == distinct + len(coarse)
    index = np.load(tmp_path / "m" / card["band_index"]["file"])
    assert index.dtype == np.int32 and len(index) == bands.rows and card["band_index"]["levels"] == [0]
    read = load_anomaly_model(tmp_path / "m").bank[0]
    assert isinstance(read, Bands)
    for a, b in zip(read.banks, bands.banks, strict=True):
        np.testing.assert_array_equal(a, b)
    # an index outside the level's rows, or one row short: one line naming the file
    for bad in (np.where(index == index.max(), distinct, index), index[:-1]):
        np.save(tmp_path / "m" / "band_index.npy", bad.astype(np.int32))
        with pytest.raises(ModelError, match=r"band_index.npy"):
            load_anomaly_model(tmp_path / "m", verify=False)
    with pytest.raises(ModelError, match=r"band_index.npy does not match its card"):
        load_anomaly_model(tmp_path / "m")
    for levels, message in ((["zero"], r"\[band_index\] has a field of the wrong type"),
                            ([1], r"\[band_index\] levels \[1\] are not the banded levels \(\[0\]\)")):
        (tmp_path / "m" / "card.toml").write_text(dump_toml({**card, "band_index": {**card["band_index"],
                                                                                      "levels": levels}}))
        with pytest.raises(ModelError, match=message):
            load_anomaly_model(tmp_path / "m", verify=False)


def test_a_banded_bank_written_band_after_band_still_loads(tmp_path: Path) -> None:
    # stop 48's layout: every band's rows one after the other in the bank file, no index
    (bands, coarse), _ = _taught(smooth_frames(4, 2))
    write_model(tmp_path / "m", "m", (bands, coarse), LEVELS, 64, 64, RAWS, None, {})
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    del card["band_index"]
    card["levels"]["0"]["rows"] = bands.rows
    np.save(tmp_path / "m" / "memory_bank.npy", pack_banks([np.concatenate(bands.banks), coarse]))
    (tmp_path / "m" / "card.toml").write_text(dump_toml(card))
    read = load_anomaly_model(tmp_path / "m", verify=False).bank[0]
    assert isinstance(read, Bands)
    for a, b in zip(read.banks, bands.banks, strict=True):
        np.testing.assert_array_equal(a, b)


def test_teaching_scores_ng_images_in_numpy_against_each_bands_own_bank(tmp_path: Path) -> None:
    # where the CPU has neither int8 dot products nor bf16 the model is f32, and teaching scores its NG images in
    # numpy (teach._raw_scores): each band's rows against its own bank, as the graph does. Here each band's bank
    # holds another band's patches of the very frames scored: against every band together they would score 0
    import cv2

    from inspector.anomaly import teach as teaching

    level = (LEVELS[0],)
    frames = smooth_frames(6, 3)
    files = []
    for i, frame in enumerate(frames):
        files.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(files[-1]), frame)
    (fine,) = FeatureExtractor(level, 64, 64, "f32").all_levels(frames)
    bands = Bands(2, 0, tuple(np.ascontiguousarray(fine[:, 2 * ((b + 2) % 4):2 * ((b + 2) % 4) + 2].reshape(-1, 64))
                              for b in range(4)))
    numpy_scores = teaching._raw_scores(FeatureExtractor(level, 64, 64, "f32"), files, [bands], [1.0], [1], None, 64,
                                        64, lambda _d, _n: None)
    graph = AnomalyScorer(level, 64, 64, (bands,), (1.0,), "f32", edge=1).score(frames).scores
    assert numpy_scores.min() > 1.0  # far from another band's patches
    np.testing.assert_allclose(numpy_scores, graph, rtol=1e-4)
