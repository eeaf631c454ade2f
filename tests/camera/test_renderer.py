from __future__ import annotations

import numpy as np
import pytest

from camera.renderer import DEFECT_CLASSES, PART_KINDS, render_part


def test_same_seed_same_frame_and_boxes() -> None:
    a, b = render_part(123, 320, 320), render_part(123, 320, 320)
    assert np.array_equal(a.image, b.image) and a.truth == b.truth
    assert not np.array_equal(render_part(124, 320, 320).image, a.image)


@pytest.mark.parametrize(("w", "h", "mono"), [(320, 320, False), (320, 320, True), (640, 480, False), (200, 300, True)])
def test_frame_shape_and_boxes_inside_the_frame(w: int, h: int, mono: bool) -> None:
    for seed in range(20):
        f = render_part(seed, w, h, mono=mono, ok_share=0.0)
        assert f.image.shape == ((h, w) if mono else (h, w, 3)) and f.image.dtype == np.uint8
        for b in f.truth.boxes:
            assert 0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h


def test_the_line_covers_every_part_kind_and_defect_class_and_size_range() -> None:
    frames = [render_part(s, 320, 320, ok_share=0.6) for s in range(300)]
    kinds = {f.truth.part_kind for f in frames}
    classes = {b.class_id for f in frames for b in f.truth.boxes}
    sides = [max(b.x2 - b.x1, b.y2 - b.y1) for f in frames for b in f.truth.boxes]
    assert kinds == set(PART_KINDS) and len(kinds) >= 3
    assert classes == set(range(len(DEFECT_CLASSES))) and len(classes) >= 4
    assert min(sides) <= 12 and max(sides) >= 60  # small (~8-12 px) to large
    ok = sum(not f.truth.defective for f in frames) / len(frames)
    assert 0.5 < ok < 0.7  # a line is mostly OK
    assert max(len(f.truth.boxes) for f in frames) >= 2  # 0..N defects per part


def test_defects_change_the_pixels_inside_their_boxes() -> None:
    # the same part without and with defects differs where the boxes are, and only a little elsewhere
    for seed in range(10):
        f = render_part(seed, 320, 320, ok_share=0.0)
        if not f.truth.boxes:
            continue
        img = f.image.astype(np.float32)
        for b in f.truth.boxes:
            patch = img[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)]
            assert patch.std() > 3.0  # a defect is visible, not an empty box


def test_contamination_stays_visible_in_mono8_on_every_part_kind() -> None:
    # Oil darkens the surface it lands on: in grey its stain must stand out from the
    # surface around it, also on the green PCB (a fixed brown was as bright as the board).
    contrast: dict[str, list[float]] = {k: [] for k in PART_KINDS}
    contamination = DEFECT_CLASSES.index("contamination")
    for seed in range(500):
        frame = render_part(seed, 256, 256, mono=True, ok_share=0.0)
        for b in frame.truth.boxes:
            if b.class_id != contamination:
                continue
            x1, y1, x2, y2 = int(b.x1), int(b.y1), int(b.x2), int(b.y2)
            inside = frame.image[y1:y2, x1:x2].astype(float)
            around = frame.image[max(0, y1 - 6) : y2 + 6, max(0, x1 - 6) : x2 + 6].astype(float)
            contrast[frame.truth.part_kind].append(float(np.median(around) - np.percentile(inside, 10)))
    for kind, values in contrast.items():
        assert len(values) >= 10, kind
        assert np.percentile(values, 10) >= 20, (kind, np.percentile(values, [10, 50]))
