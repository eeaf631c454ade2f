"""The backbone built in code for OpenVINO: it computes what its weights say (a numpy reference of the first
layers), its features have the declared shape, and the converted graph is cached under the weights' sha256."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly.backbone import (
    BN_EPS,
    INPUT_MEAN,
    INPUT_STD,
    WEIGHTS_SHA256,
    FeatureSpec,
    block_outputs,
    block_stride,
    cached_feature_model,
    load_weights,
)


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return load_weights()


def _same_pad(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """TF "same" padding of an (H, W, C) array: the odd pixel goes at the end."""
    out = []
    for n in x.shape[:2]:
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        out.append((total // 2, total - total // 2))
    return np.pad(x, (out[0], out[1], (0, 0)))


def _conv(x: np.ndarray, w: np.ndarray, stride: int, depthwise: bool = False) -> np.ndarray:
    """Plain-loop reference convolution, (H, W, Cin) -> (H', W', Cout), weights (Cout, Cin|1, k, k)."""
    k = w.shape[-1]
    xp = _same_pad(x, k, stride)
    ho, wo = -(-x.shape[0] // stride), -(-x.shape[1] // stride)
    out = np.zeros((ho, wo, w.shape[0]), np.float64)
    for dy in range(k):
        for dx in range(k):
            patch = xp[dy:dy + stride * ho:stride, dx:dx + stride * wo:stride]
            out += patch * w[:, 0, dy, dx] if depthwise else patch @ w[:, :, dy, dx].T
    return out


def _bn(x: np.ndarray, sd: dict[str, np.ndarray], name: str) -> np.ndarray:
    return (x - sd[f"{name}.running_mean"]) / np.sqrt(sd[f"{name}.running_var"] + BN_EPS) * sd[f"{name}.weight"] + \
        sd[f"{name}.bias"]


def test_the_graph_equals_a_numpy_reference_of_stem_and_first_block(weights: dict[str, np.ndarray]) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (1, 40, 56, 3), dtype=np.uint8)
    image = ops.parameter([-1, 40, 56, 3], ov.Type.u8)
    block0 = block_outputs(weights, image, 0)[0]
    got = ov.Core().compile_model(ov.Model([block0], [image]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(bgr)[0]

    x = (bgr[0, :, :, ::-1].astype(np.float64) - INPUT_MEAN) / INPUT_STD  # RGB, the weights' own scaling
    x = np.clip(_bn(_conv(x, weights["_conv_stem.weight"], 2), weights, "_bn0"), 0, 6)
    x = np.clip(_bn(_conv(x, weights["_blocks.0._depthwise_conv.weight"], 1, True), weights, "_blocks.0._bn1"), 0, 6)
    x = _bn(_conv(x, weights["_blocks.0._project_conv.weight"], 1), weights, "_blocks.0._bn2")
    want = x.transpose(2, 0, 1)[None]
    assert got.shape == want.shape == (1, 16, 20, 28)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_features_have_the_declared_grid_and_channels(weights: dict[str, np.ndarray]) -> None:
    import openvino as ov

    spec = FeatureSpec((4, 10), 8, 3)
    assert (block_stride(4), block_stride(10), spec.channels) == (8, 16, 40 + 112)
    model = cached_feature_model(spec, 64, 96)
    out = ov.Core().compile_model(model, "CPU")(np.zeros((2, 64, 96, 3), np.uint8))[0]
    assert out.shape == (2, 152, 8, 12)
    assert np.isfinite(out).all()


def test_the_converted_backbone_is_cached_under_the_weights_sha256(_backbone_cache: Path) -> None:
    cached_feature_model(FeatureSpec((4,), 8, 1), 64, 64)
    files = {p.name for p in (_backbone_cache / "anomaly").iterdir()}
    assert {f"{WEIGHTS_SHA256[:16]}_t4_g8_p1_64x64.bin", f"{WEIGHTS_SHA256[:16]}_t4_g8_p1_64x64.xml"} <= files
    again = cached_feature_model(FeatureSpec((4,), 8, 1), 64, 64)  # read back from the IR
    assert again.output(0).get_partial_shape()[1] == 40


def test_an_image_normalised_level_is_each_frames_features_standardised_per_channel() -> None:
    import openvino as ov

    from inspector.anomaly.backbone import IMAGE_NORM_EPS

    plain, normalised = FeatureSpec((2, 4), 8, 3), FeatureSpec((2, 4), 8, 3, normalise="image")
    assert plain.key() != normalised.key() and normalised.channels == plain.channels
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    frames[1] = frames[1] // 2 + 40  # a dimmer, flatter frame: its own statistics, not the batch's
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    raw = ov.Core().compile_model(cached_feature_model(plain, 64, 96), "CPU", config)(frames)[0]
    got = ov.Core().compile_model(cached_feature_model(normalised, 64, 96), "CPU", config)(frames)[0]
    mean = raw.mean(axis=(2, 3), keepdims=True)
    want = (raw - mean) / (raw.std(axis=(2, 3), keepdims=True) + IMAGE_NORM_EPS)
    assert got.shape == raw.shape == (2, 64, 8, 12)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_a_feature_normalisation_other_than_none_or_image_is_refused() -> None:
    with pytest.raises(ValueError, match="normalise"):
        FeatureSpec((4,), 8, 3, normalise="batch")
