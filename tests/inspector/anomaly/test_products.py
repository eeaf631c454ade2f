"""The new product families: seeded, masked, in Mono8 and colour, at any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camera.products import FAMILIES, anomaly_kinds, render_product, write_family


@pytest.mark.parametrize("family", FAMILIES)
def test_a_seed_decides_every_pixel_and_good_parts_differ(family: str) -> None:
    a = render_product(family, 5, 96, 80)
    b = render_product(family, 5, 96, 80)
    c = render_product(family, 6, 96, 80)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (80, 96, 3) and a.image.dtype == np.uint8
    assert not a.mask.any() and a.anomaly is None
    assert np.abs(a.image.astype(int) - c.image.astype(int)).mean() > 3  # texture, placement and light vary


@pytest.mark.parametrize("family", FAMILIES)
def test_every_anomaly_kind_has_a_mask_where_the_pixels_changed(family: str) -> None:
    for i, kind in enumerate(anomaly_kinds(family)):
        f = render_product(family, 100 + i, 128, 128, anomalous=True, kind=kind)
        assert f.anomaly == kind and f.anomalous
        assert f.mask.shape == (128, 128) and f.mask.dtype == np.uint8
        share = (f.mask > 0).mean()
        assert 0 < share < 0.2, (kind, share)  # a local anomaly, not a different product


def test_mono8_frames_are_single_channel() -> None:
    f = render_product("label", 1, 64, 64, mono=True, anomalous=True)
    assert f.image.shape == (64, 64) and f.mask.any()


def test_an_unknown_family_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="granite"):
        render_product("granite", 1)
    with pytest.raises(ValueError, match="has no anomaly"):
        render_product("plate", 1, anomalous=True, kind="stain")


def test_write_family_writes_images_and_same_named_masks(tmp_path: Path) -> None:
    n = write_family("plate", tmp_path, 3, 2, seed=10, width=64, height=64)
    assert n == {"good": 3, "bad": 2, "masks": 2}
    good = sorted(p.name for p in (tmp_path / "good").iterdir())
    bad = sorted(p.name for p in (tmp_path / "bad").iterdir())
    assert good == ["000010.png", "000011.png", "000012.png"]
    assert len(bad) == 2 and bad == sorted(p.name for p in (tmp_path / "masks").iterdir())
