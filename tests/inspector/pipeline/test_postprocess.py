from __future__ import annotations

import numpy as np
import pytest

from inspector.pipeline.postprocess import decode_yolo, iou_matrix, nms, to_frame_pixels
from inspector.pipeline.preprocess import Letterbox, Tile, plan_tiles


def brute_force_nms(dets: np.ndarray, iou: float) -> list[int]:
    """Obvious O(n^2) reference: visit by score, keep unless a kept box of its class overlaps."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i, 4])
    kept: list[int] = []
    for i in order:
        ok = True
        for j in kept:
            if dets[j, 5] != dets[i, 5]:
                continue
            if iou_matrix(dets[i : i + 1, :4], dets[j : j + 1, :4])[0, 0] > iou:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def random_dets(rng: np.random.Generator, n: int, classes: int = 3) -> np.ndarray:
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    d = np.zeros((n, 6), np.float32)
    d[:, :2] = xy
    d[:, 2:4] = xy + wh
    d[:, 4] = rng.uniform(0.05, 1.0, n)
    d[:, 5] = rng.integers(0, classes, n)
    return d


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed: int, iou: float) -> None:
    dets = random_dets(np.random.default_rng(seed), 120)
    got = nms(dets.copy(), iou)
    want = dets[brute_force_nms(dets, iou)]
    assert np.allclose(got, want)


@pytest.mark.parametrize("n", [1, 2, 600])
def test_nms_matches_brute_force_at_any_size(n: int) -> None:
    dets = random_dets(np.random.default_rng(n), n)
    assert np.allclose(nms(dets.copy(), 0.5, max_det=n), dets[brute_force_nms(dets, 0.5)])


def clustered_dets(rng: np.random.Generator, n: int, clusters: int = 3) -> np.ndarray:
    """Candidates as a detector gives them: a few objects, each found several times, boxes overlapping."""
    centre = rng.uniform(40, 260, (clusters, 2))[rng.integers(0, clusters, n)]
    d = np.zeros((n, 6), np.float32)
    d[:, :2] = centre + rng.normal(0, 4, (n, 2)) - 15
    d[:, 2:4] = d[:, :2] + 30 + rng.normal(0, 4, (n, 2))
    d[:, 4] = rng.uniform(0.05, 1.0, n)
    d[:, 5] = rng.integers(0, 2, n)
    return d


@pytest.mark.parametrize("n", [3, 7, 16, 63, 64, 65, 200])
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_nms_of_overlapping_candidates_matches_brute_force_on_both_sides_of_the_small_path(n: int, iou: float) -> None:
    dets = clustered_dets(np.random.default_rng(n), n)
    assert np.array_equal(nms(dets.copy(), iou), dets[brute_force_nms(dets, iou)])
    assert np.array_equal(nms(dets.copy(), iou, max_det=2), dets[brute_force_nms(dets, iou)[:2]])


def test_nms_keeps_at_most_max_det() -> None:
    dets = random_dets(np.random.default_rng(3), 200)
    assert len(nms(dets.copy(), 0.99, max_det=5)) == 5


def test_nms_is_class_aware() -> None:
    same_box_two_classes = np.array([[10, 10, 50, 50, 0.9, 0], [10, 10, 50, 50, 0.8, 1]], np.float32)
    assert len(nms(same_box_two_classes, 0.5)) == 2
    same_class = same_box_two_classes.copy()
    same_class[:, 5] = 0
    kept = nms(same_class, 0.5)
    assert len(kept) == 1 and kept[0, 4] == pytest.approx(0.9)


def test_nms_empty() -> None:
    assert nms(np.zeros((0, 6), np.float32), 0.5).shape == (0, 6)


def test_decode_yolo_picks_best_class_and_threshold() -> None:
    out = np.zeros((4 + 3, 5), np.float32)
    out[:4, 0] = [100, 100, 20, 10]  # cx cy w h
    out[4:, 0] = [0.1, 0.8, 0.3]
    out[:4, 1] = [50, 60, 10, 10]
    out[4:, 1] = [0.2, 0.1, 0.05]  # below threshold
    d = decode_yolo(out, 0.25)
    assert d.shape == (1, 6)
    assert d[0].tolist() == pytest.approx([90, 95, 110, 105, 0.8, 1])
    assert decode_yolo(np.zeros((7, 10), np.float32), 0.25).shape == (0, 6)


def _decode_reference(output: np.ndarray, conf: float, max_candidates: int) -> np.ndarray:
    """The plain definition: the class of every anchor by argmax, then the threshold."""
    scores = output[4:]
    cls = scores.argmax(0)
    best = scores[cls, np.arange(scores.shape[1])]
    keep = np.nonzero(best >= conf)[0]
    if keep.size > max_candidates:
        keep = keep[np.argsort(-best[keep])[:max_candidates]]
    cx, cy, w, h = output[:4, keep]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, best[keep], cls[keep]], 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_candidates", [3000, 7])
def test_decode_yolo_matches_the_argmax_definition(seed: int, max_candidates: int) -> None:
    rng = np.random.default_rng(seed)
    out = rng.random((4 + 4, 2100), dtype=np.float32)
    out[:4] *= 320
    out[4:] **= 6  # most anchors below the threshold, as in a real output
    out[4:, ::97] = out[4, ::97]  # ties between classes: the first class wins in both
    got = decode_yolo(out, 0.3, max_candidates)
    want = _decode_reference(out, 0.3, max_candidates)
    assert (out[4:].max(0) >= 0.3).sum() > 7  # enough candidates that the cap of 7 cuts
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("w", "h"), [(320, 320), (640, 480), (480, 640), (1000, 250)])
def test_rescale_inverts_the_letterbox(w: int, h: int) -> None:
    box = Letterbox.fit(w, h, 320, 320)
    frame_boxes = np.array([[10, 20, 60, 90], [w - 50, h - 40, w - 1, h - 1]], np.float32)
    inp = frame_boxes * box.scale
    inp[:, [0, 2]] += box.pad_x
    inp[:, [1, 3]] += box.pad_y
    dets = np.concatenate([inp, np.array([[0.9, 0], [0.8, 1]], np.float32)], 1)
    back = to_frame_pixels(dets, box, None, w, h)
    assert np.allclose(back[:, :4], frame_boxes, atol=1e-3)


def test_rescale_adds_the_tile_origin_and_clips() -> None:
    tile = Tile(400, 300, 720, 620)
    box = Letterbox.fit(tile.width, tile.height, 320, 320)
    dets = np.array([[10, 10, 20, 20, 0.9, 0], [-5, -5, 330, 330, 0.5, 1]], np.float32)
    back = to_frame_pixels(dets, box, tile, 1280, 1024)
    assert back[0, :4].tolist() == pytest.approx([410, 310, 420, 320])
    assert back[1, :4].tolist() == pytest.approx([395, 295, 730, 630])
    clipped = to_frame_pixels(np.array([[-5, -5, 330, 330, 0.5, 1]], np.float32), box, tile, 700, 600)
    assert clipped[0, :4].tolist() == pytest.approx([395, 295, 700, 600])


# Frames whose rounded resize differs from ``w * scale`` on one axis (1000x333: 106.56 -> 107,
# 4096x3000: 234.375 -> 234), plus ones where it does not (1920x1080: 180 exactly).
EXACT_MAPPING_FRAMES = [(1920, 1080), (1000, 333), (333, 1000), (4096, 3000), (2448, 2048), (1000, 250), (320, 320)]


def content_edges(box: Letterbox) -> np.ndarray:
    """The resized content's border in the input, and its far (right/bottom) pixel, as two boxes."""
    x1, y1 = box.pad_x + box.new_w, box.pad_y + box.new_h
    return np.array([[box.pad_x, box.pad_y, x1, y1, 0.9, 0], [x1 - 1, y1 - 1, x1, y1, 0.8, 1]], np.float64)


def frame_edges(x0: int, y0: int, w: int, h: int, box: Letterbox) -> np.ndarray:
    """What `content_edges` must map back to for a ``w x h`` source at ``(x0, y0)``: its rectangle, its far pixel."""
    far_x, far_y = x0 + w - w / box.new_w, y0 + h - h / box.new_h
    return np.array([[x0, y0, x0 + w, y0 + h], [far_x, far_y, x0 + w, y0 + h]], np.float64)


def to_input(frame_xyxy: np.ndarray, box: Letterbox, src_w: int, src_h: int) -> np.ndarray:
    """The forward mapping the resize really applies: ``new / src`` on each axis, then the pad."""
    out = np.array(frame_xyxy, np.float64)
    out[:, [0, 2]] = out[:, [0, 2]] * box.new_w / src_w + box.pad_x
    out[:, [1, 3]] = out[:, [1, 3]] * box.new_h / src_h + box.pad_y
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("w", "h"), EXACT_MAPPING_FRAMES)
def test_content_edges_map_to_the_frame_edges(w: int, h: int, dtype: type) -> None:
    box = Letterbox.fit(w, h, 320, 320)
    back = to_frame_pixels(content_edges(box).astype(dtype), box, None, w, h)
    # float32 (the pipeline's dtype) holds the frame's own edges exactly, the far pixel's to its precision
    tol = 1e-6 if dtype is np.float64 else 4 * float(np.spacing(np.float32(max(w, h))))
    assert np.abs(back[0, :4].astype(np.float64) - [0, 0, w, h]).max() <= 1e-6
    assert np.abs(back[:, :4].astype(np.float64) - frame_edges(0, 0, w, h, box)).max() <= tol


@pytest.mark.parametrize(("w", "h"), EXACT_MAPPING_FRAMES)
def test_frame_to_input_to_frame_is_the_identity(w: int, h: int) -> None:
    box = Letterbox.fit(w, h, 320, 320)
    rng = np.random.default_rng(w * 7919 + h)
    a, b = rng.uniform(0, w, (50, 2)), rng.uniform(0, h, (50, 2))
    frame_xyxy = np.stack([a.min(1), b.min(1), a.max(1), b.max(1)], 1)
    dets = np.concatenate([to_input(frame_xyxy, box, w, h), np.tile([[0.9, 0]], (50, 1))], 1)
    back = to_frame_pixels(dets, box, None, w, h)
    assert np.abs(back[:, :4] - frame_xyxy).max() <= 1e-6


@pytest.mark.parametrize(
    ("w", "h", "tile"),
    [
        (1000, 333, Tile(600, 0, 1000, 333)),  # plan_tiles' last tile at min_defect_px=10: 400x333 -> 320x266
        (333, 1000, Tile(0, 600, 333, 1000)),
        (4096, 3000, Tile(1000, 2000, 4096, 3000)),  # 3096x1000 -> 320x103 (103.36 unrounded)
        (1280, 1024, Tile(400, 300, 720, 620)),
    ],
)
def test_tile_content_edges_map_to_the_tile_edges(w: int, h: int, tile: Tile) -> None:
    box = Letterbox.fit(tile.width, tile.height, 320, 320)
    back = to_frame_pixels(content_edges(box), box, tile, w, h)
    assert np.abs(back[:, :4] - frame_edges(tile.x0, tile.y0, tile.width, tile.height, box)).max() <= 1e-6
    rng = np.random.default_rng(tile.x0 + tile.y1)
    a, b = rng.uniform(0, tile.width, (20, 2)), rng.uniform(0, tile.height, (20, 2))
    local = np.stack([a.min(1), b.min(1), a.max(1), b.max(1)], 1)
    dets = np.concatenate([to_input(local, box, tile.width, tile.height), np.tile([[0.9, 0]], (20, 1))], 1)
    back = to_frame_pixels(dets, box, tile, w, h)
    assert np.abs(back[:, :4] - (local + [tile.x0, tile.y0, tile.x0, tile.y0])).max() <= 1e-6


def test_tiled_plan_content_edges_cover_the_frame() -> None:
    # every tile plan_tiles makes for a non-square frame maps back onto its own rectangle
    w, h = 1000, 333
    tiles = plan_tiles(w, h, 320, 320, min_defect_px=10)
    assert len(tiles) > 1 and any(Letterbox.fit(t.width, t.height, 320, 320).new_h != t.height * 0.8 for t in tiles)
    for t in tiles:
        box = Letterbox.fit(t.width, t.height, 320, 320)
        back = to_frame_pixels(content_edges(box), box, t, w, h)
        assert np.abs(back[:, :4] - frame_edges(t.x0, t.y0, t.width, t.height, box)).max() <= 1e-6


def test_rescale_of_no_detections_is_empty() -> None:
    box = Letterbox.fit(1000, 333, 320, 320)
    assert to_frame_pixels(np.zeros((0, 6), np.float32), box, None, 1000, 333).shape == (0, 6)


def test_a_frame_the_size_of_the_input_maps_back_by_clipping_alone() -> None:
    """No resize, no pad: boxes come back as they are, clipped to the frame, as the general mapping gives."""
    rng = np.random.default_rng(11)
    dets = np.concatenate([rng.uniform(-40, 360, (50, 4)), rng.uniform(0, 1, (50, 1)), rng.integers(0, 4, (50, 1))], 1)
    dets = dets.astype(np.float32)
    box = Letterbox.fit(320, 320, 320, 320)
    general = dets.copy()
    xs, ys = general[:, 0:4:2].astype(np.float64), general[:, 1:4:2].astype(np.float64)
    general[:, 0:4:2] = np.clip(xs * 320 / 320, 0, 320)
    general[:, 1:4:2] = np.clip(ys * 320 / 320, 0, 320)
    out = to_frame_pixels(dets, box, None, 320, 320)
    assert out is dets  # in place
    assert np.array_equal(out, general)
    assert out.min() >= 0 and out[:, :4].max() <= 320


@pytest.mark.parametrize(("w", "h", "tile"), [(320, 320, None), (640, 480, None), (200, 320, None), (4096, 3000, None),
                                              (1280, 1024, Tile(400, 300, 656, 556)), (97, 61, None)])
def test_a_few_rows_mapped_in_python_are_the_arrays_float32_values(w: int, h: int, tile: Tile | None) -> None:
    """`rows_to_frame_pixels` (one input's few rows as lists, as the worker maps the runtime's rows) gives exactly
    what `to_frame_pixels` stores in its float32 array, clipping included, for boxes partly outside the input."""
    from inspector.pipeline.postprocess import rows_to_frame_pixels

    rng = np.random.default_rng(w * 7 + h)
    sw, sh = (tile.width, tile.height) if tile is not None else (w, h)
    box = Letterbox.fit(sw, sh, 320, 320)
    for n in (0, 1, 3, 12):
        d = random_dets(rng, n)
        d[:, :4] += rng.uniform(-40, 40, (n, 4)).astype(np.float32)  # some past the input's edges
        d[:, 2:4] = np.maximum(d[:, 2:4], d[:, 0:2])
        want = to_frame_pixels(d.copy(), box, tile, w, h).tolist()
        got = rows_to_frame_pixels(d.tolist(), box, tile, w, h)
        assert got == want
        assert all(type(v) is float for row in got for v in row[:4])
