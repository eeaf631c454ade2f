"""A part's frames brought to the good parts' pose before its model sees them; a texture's left as they come."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.anomaly import teach as teaching
from inspector.anomaly.alignment import SIDE, seen_cells, small_greys, teach_alignment, to_frame
from inspector.anomaly.model import ALIGNMENT_FILE, load_anomaly_model
from inspector.anomaly.patchcore import BAND_HEIGHT, Bands
from inspector.pipeline.model_repo import ModelError, dump_toml


def _parts(family: str, seeds: range, size: int) -> np.ndarray:
    from camera.products import render_product

    return np.stack([render_product(family, seed, size, size).image for seed in seeds])


def _moved(frame: np.ndarray, turn_deg: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame's part turned about the centre and shifted, and the 3 x 3 move (old pixel -> new pixel)."""
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), turn_deg, 1.0)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out, np.vstack([m, [0, 0, 1]])


def test_a_turned_and_shifted_part_is_found_where_it_lies() -> None:
    frames = _parts("label", range(12), 128)
    alignment, poses = teach_alignment(small_greys(frames, 128, 128), 128, 128)
    assert poses["failed"] == 0 and poses["shifts"].max() > 2.0  # rendered labels lie a few px off each other
    moved, move = _moved(frames[3], 2.0, 5.0, -4.0)
    first, m0 = alignment.warp_frame(frames[3])
    again, m1 = alignment.warp_frame(moved)
    # each output pixel of the moved part lies where the move took the first one's: within a px inside the frame
    ys, xs = np.mgrid[16:112:8, 16:112:8]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    np.testing.assert_allclose((m1 @ points)[:2], (move @ m0 @ points)[:2], atol=1.0)
    # so the two warped frames show the part alike, where the unaligned ones did not
    inner = (slice(24, 104), slice(24, 104))
    aligned_diff = np.abs(first.astype(np.float32) - again.astype(np.float32))[inner].mean()
    raw_diff = np.abs(frames[3].astype(np.float32) - moved.astype(np.float32))[inner].mean()
    assert aligned_diff < raw_diff / 3, (aligned_diff, raw_diff)


def test_maps_come_back_to_the_frame_with_their_peaks_where_the_part_lies() -> None:
    frames = _parts("label", range(12), 128)
    alignment, _ = teach_alignment(small_greys(frames, 128, 128), 128, 128)
    moved, _ = _moved(frames[0], -2.5, -6.0, 7.0)
    _, m = alignment.warp_frame(moved)
    aligned = np.zeros((1, 16, 16), np.float32)
    aligned[0, 7, 9] = 3.0  # one hot cell on the aligned grid (8 px cells)
    aligned[0, 4, 4] = 1.5
    back = to_frame(aligned, m[None], 8)
    assert back.max() == pytest.approx(3.0)  # no cell's score lost
    # the peak's frame cell: the aligned cell's centre through the matrix
    where = m @ np.array([9 * 8 + 3.5, 7 * 8 + 3.5, 1.0])
    r, c = np.unravel_index(int(back[0].argmax()), back[0].shape)
    assert abs(c - (where[0] - 3.5) / 8) <= 0.75 and abs(r - (where[1] - 3.5) / 8) <= 0.75
    # the part moved down and left: the warp took the top and left rows from beyond the frame, and no cell next
    # to them is scored; the middle is
    seen = seen_cells(m[None], 128, 128, 8)[0]
    assert not seen[0, 0] and not seen[0].all() and not seen[:, 0].all() and seen[4:12, 4:12].all()
    assert seen_cells(np.eye(3)[None], 128, 128, 8).all()  # a frame at the reference pose: all seen


def test_a_parts_model_is_aligned_and_a_textures_is_not(tmp_path: Path) -> None:
    for family in ("label", "fabric"):
        folder = tmp_path / family
        folder.mkdir()
        for i, img in enumerate(_parts(family, range(12), 96)):
            cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    label = teaching.teach([tmp_path / "label"], tmp_path / "label_m", width=96, height=96)
    card = tomllib.loads((tmp_path / "label_m" / "card.toml").read_text())
    model = load_anomaly_model(tmp_path / "label_m")
    assert label.alignment is not None and model.alignment is not None
    assert card["alignment"]["file"] == ALIGNMENT_FILE and card["alignment"]["good_without_pose"] == 0
    assert card["alignment"]["largest_shift_px"] > 1.0 and "ECC" in card["alignment"]["rule"]
    # its finest level's bank kept per band of rows (an aligned part's patches are matched near their own row)
    assert isinstance(model.bank[0], Bands) and len(card["levels"]["0"]["band_rows"]) == 12 // BAND_HEIGHT
    assert not isinstance(model.bank[1], Bands)
    assert model.appearance is not None and card["appearance"]["file"] == "appearance.npy"  # its whole look too
    images = np.stack([cv2.imread(str(p)) for p in sorted((tmp_path / "label").glob("*.png"))])
    out = teaching.scorer_for(model).score(images)
    assert float(out.scores.max()) < 1.0  # the taught parts pass, scored at their pose
    assert out.maps.shape == (12, 12, 12) and np.all(out.maps.reshape(12, -1).max(axis=1) >= out.scores - 1e-6)
    assert out.posed is not None and out.posed.all()  # each taught part found where it lay
    # an empty fixture (no part: a flat grey frame) has no pose; the batch says which frame
    empty = np.full((1, 96, 96, 3), 90, np.uint8)
    mixed = teaching.scorer_for(model).score(np.concatenate([images[:2], empty]))
    assert mixed.posed is not None and mixed.posed.tolist() == [True, True, False]
    assert mixed.scores[2] >= 1.0  # and scored where it lies, the empty fixture is NG: no part is no pass
    fabric = teaching.teach([tmp_path / "fabric"], tmp_path / "fabric_m", width=96, height=96)
    assert fabric.alignment is None and "alignment" not in tomllib.loads(
        (tmp_path / "fabric_m" / "card.toml").read_text())
    assert load_anomaly_model(tmp_path / "fabric_m").alignment is None
    assert load_anomaly_model(tmp_path / "fabric_m").appearance is None  # a texture has no whole look to hold
    assert not any(isinstance(bank, Bands) for bank in load_anomaly_model(tmp_path / "fabric_m").bank)
    fabric_images = np.stack([cv2.imread(str(p)) for p in sorted((tmp_path / "fabric").glob("*.png"))])
    assert teaching.scorer_for(load_anomaly_model(tmp_path / "fabric_m")).score(fabric_images).posed is None


def test_a_tampered_or_inconsistent_alignment_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "label"
    folder.mkdir()
    for i, img in enumerate(_parts("label", range(10), 96)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    teaching.teach([folder], tmp_path / "m", width=96, height=96)
    card_path, ref_path = tmp_path / "m" / "card.toml", tmp_path / "m" / ALIGNMENT_FILE
    card = tomllib.loads(card_path.read_text())
    reference = np.load(ref_path)
    np.save(ref_path, reference + 1.0)
    with pytest.raises(ModelError, match="alignment.npy does not match its card"):
        load_anomaly_model(tmp_path / "m")
    np.save(ref_path, np.full_like(reference, 7.0))  # flat: nothing to align to
    with pytest.raises(ModelError, match="not flat"):
        load_anomaly_model(tmp_path / "m", verify=False)
    np.save(ref_path, reference[:, :-1])  # another size than the input's grey copy
    side = SIDE * 96 // max(96, SIDE)  # the grey copy of a 96 px input: at most the input's own size
    with pytest.raises(ModelError, match=rf"not a finite, not flat float32 \({side}, {side}\)"):
        load_anomaly_model(tmp_path / "m", verify=False)
    np.save(ref_path, reference)
    del card["alignment"]["sha256"]
    card_path.write_text(dump_toml(card))
    with pytest.raises(ModelError, match=r"\[alignment\] needs file and sha256") as err:
        load_anomaly_model(tmp_path / "m")
    assert "\n" not in str(err.value)


def test_an_aligned_parts_ng_images_taught_in_f32_score_as_the_scorer_scores_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # f32 teaching scores the NG images in numpy (`teach._raw_scores`): warped, and the cells the camera did not
    # see left out, as the scorer does
    from camera.products import write_family
    from inspector.anomaly.images import find_images, load_batch

    monkeypatch.setattr(teaching, "runtime_precision", lambda: "f32")
    write_family("label", tmp_path / "data", 14, 4, seed=3, width=96, height=96)
    teaching.teach([tmp_path / "data" / "good"], tmp_path / "m", bad=tmp_path / "data" / "bad", width=96, height=96)
    model = load_anomaly_model(tmp_path / "m")
    assert model.alignment is not None and model.precision == "f32"
    scores = teaching.scorer_for(model).score(load_batch(find_images([tmp_path / "data" / "bad"]), 96, 96, None))
    np.testing.assert_allclose(model.card["threshold"]["bad_scores"], scores.scores, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("turn_deg, dx, dy", [(0.0, 0.0, 0.0), (2.0, 5.0, -4.0), (-6.0, -40.0, 30.0), (30.0, 90.0, 70.0)])
def test_the_padded_warp_shows_what_opencvs_reflected_border_shows(turn_deg: float, dx: float, dy: float) -> None:
    from inspector.anomaly.alignment import warp_reflected

    frame = _parts("label", range(1), 128)[0]
    _, move = _moved(frame, turn_deg, dx, dy)
    for image in (frame, np.ascontiguousarray(frame[..., 1])):  # colour and grey
        want = cv2.warpAffine(image, move[:2], (128, 128), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT_101)
        got = warp_reflected(image, move, 128, 128)
        assert got.shape == want.shape and got.dtype == np.uint8
        # within a grey level everywhere (OpenCV's fixed-point positions), the reflected border included
        assert int(np.abs(got.astype(int) - want.astype(int)).max()) <= 1
