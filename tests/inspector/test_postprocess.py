from __future__ import annotations

import numpy as np
import pytest

from inspector.pipeline.postprocess import decode_yolo, iou_matrix, nms, to_frame_pixels
from inspector.pipeline.preprocess import Letterbox, Tile


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
