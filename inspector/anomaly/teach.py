"""Teach an anomaly model from good images, score images against it, and evaluate it.

What the command line (``inspector anomaly teach|score|eval``) runs; each takes a progress callback
``(stage, done, total)`` and returns a typed report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.anomaly import threshold as thresholds
from inspector.anomaly.alignment import Alignment, seen_cells, small_greys, teach_alignment
from inspector.anomaly.appearance import AppearanceLevel, block_means
from inspector.anomaly.appearance import teach as teach_appearance
from inspector.anomaly.backbone import BACKBONES, FeatureSpec, Levels, as_levels, block_stride
from inspector.anomaly.images import ImageError, Roi, crop, find_images, letterboxed, load_batch, read_image
from inspector.anomaly.int8 import activation_inputs
from inspector.anomaly.metrics import auroc, rate_above
from inspector.anomaly.model import AnomalyModel, load_anomaly_model, write_model
from inspector.anomaly.patchcore import (
    FOLDS,
    POSITION_RULE,
    STATIONARY_SHARE,
    WHITEN_RULE,
    Bands,
    band_banks,
    bank_rows,
    cell_divisors,
    cell_divisors_without_each,
    cross_validated_band_maps,
    cross_validated_maps,
    greedy_coreset,
    image_coreset_cells,
    level_nearest,
    position_share,
    whitened,
    whitening,
)
from inspector.anomaly.runtime import (
    AnomalyScorer,
    FeatureExtractor,
    ScoreBatch,
    cached_feature_model,
    default_precision,
    level_edges,
)
from inspector.anomaly.tone import WINDOWS as TONE_WINDOWS
from inspector.anomaly.tone import (
    ToneLevel,
    content_blocks,
    cross_validated_scores,
    grey_only,
    scored_cells,
    tone_features,
)
from inspector.anomaly.tone import fit as fit_tone

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

#: Fewest good images a model is taught from (the bank, and the cross-validated scores that set the threshold).
MIN_GOOD = 10
#: Memory bank size: this share of all patches, within [BANK_MIN, BANK_MAX] rows.
BANK_SHARE = 0.01
BANK_MIN, BANK_MAX = 1000, 4096
#: Two levels, each with its own bank (chosen by measurement; the card and docs/anomaly.md have the table):
#: the stride-4 and stride-8 blocks (texture: fabric's broken threads and stains) and the stride-16 block
#: (structure: a missing hole, missing print), which concatenated into one bank masked each other.
#: The fine level's features are standardised per frame and channel (``normalise="image"``): the bank then
#: covers the texture and print instead of each lamp and shade they were seen under, and a local change
#: (a stain's lost contrast, a broken thread) stands out of the frame's own statistics. Validation split,
#: f32 distances in numpy, image AUROC (good-only escape): fabric 0.9235 -> 0.9560 (71.0 -> 60.5%), label
#: 0.9803 -> 0.9854 (30.5 -> 16.0%), fabric Mono8 0.8543 -> 0.8828. The coarse level stays as it was: normalised
#: too, label's missing print fell 0.985 -> 0.973 (the frame's overall look is the coarse level's to see).
#: A fine level found a stationary texture (``WHITEN``) takes blocks 0 and 1 as well (``texture_taps``; block 0
#: in colour only, `COLOUR_STRIDE`), whitened and projected to `WHITEN_DIMS`: the first stride-4 block sees more of a
#: weave's broken thread and a stain's lost contrast, the stride-2 one a colour camera's colour.
DEFAULT_SPEC: Levels = (FeatureSpec((2, 4), 8, 3, normalise="image", texture_taps=(0, 1, 2, 4)),
                        FeatureSpec((10,), 16, 3))
#: Texture taps at this stride and finer (block 0, stride 2) are left out where every good image is grey: in colour
#: they carry the colour contrast later blocks wash out (wood's amber resin pockets), in grey only the weave's
#: fine phase, aliased onto the 8 px grid. Validation split, int8, good only, two teach seeds each, good-only escape
#: (the test's own at 1% false reject), texture taps 1 + 2 + 4 -> 0 + 1 + 2 + 4 (both projected to 80): wood 6.5,
#: 6.0% (3.5, 3.0) -> 1.0, 2.0% (0.5, 1.5), fabric 7.5, 8.5% (2.5, 3.0) -> 6.5, 9.5% (2.5, 2.0); fabric Mono8 21.5,
#: 18.5% (11.0, 11.5) -> 25.0, 24.5% (13.0, 17.0), wood Mono8 29.0, 29.0% (20.5, 21.0) -> 28.0, 27.5% (21.5, 22.5).
COLOUR_STRIDE = 2
#: A level is taught whitened (``whiten``, `patchcore.whitening`: its distances in the good patches' Mahalanobis
#: metric) where its good features are a stationary texture (`patchcore.position_share` under
#: `patchcore.STATIONARY_SHARE`); the card records each level's share. Validation split, the int8 scorer, good only,
#: image AUROC / escape, the fine level plain -> whitened: fabric 0.9634 / 36.0% -> 0.9912 / 17.0%, fabric Mono8
#: 0.9040 / 47.0% -> 0.9713 / 31.5% (both textures: whitened), label 0.9852 / 14.5% -> 0.9866 / 20.0%, label Mono8
#: 0.8763 / 41.0% -> 0.8587 / 43.5%, plate 0.9976 / 1.5% -> 0.9983 / 1.5%, plate Mono8 0.9959 / 1.5% -> 0.9958 / 2.0%
#: (false reject 0 -> 1.0%; held-out 1.5%): parts with a look of their own per position stay plain. The same cost.
#: Both levels whitened: label Mono8 escaped 80.5%; a third level (the fine one plain and whitened) 1.39x the
#: scoring time for label 12.0%, label Mono8 38.5% (docs/anomaly.md).
WHITEN = "textures"
WHITEN_CHOICES = ("textures", "spec")
#: A whitened level wider than this is projected to it after the whitening (`patchcore.whitening`). The textures'
#: fine level (measured with ``texture_taps`` blocks 1 + 2 + 4, 88 channels), validation split, int8, good only,
#: two teach seeds each: good-only escape (and the test's own escape at 1% false reject), blocks 2 + 4 (64 channels) -> all 88
#: -> projected to 80 -> to 64: fabric 10.0, 12.5% (6.5, 5.0) -> 6.0, 6.0% (1.5, 3.0) -> 7.5, 8.5% (2.5, 3.0) ->
#: 11.0, 8.0% (3.0, 3.0); fabric Mono8 26.0, 32.5% (13.0, 16.5) -> 21.5, 19.0% (10.5, 11.0) -> 21.5, 18.5% (11.0,
#: 11.5) -> 24.5, 27.0% (14.0, 18.0); wood 7.0, 12.0% -> 6.5, 6.5% -> 6.5, 6.0% -> 7.0, 6.0%; wood Mono8 29.5, 31.0% ->
#: 28.5, 29.5% -> 29.0, 29.0% -> 28.0, 28.0%. Scoring time (fabric, side by side): 1.00 -> 1.14 -> 1.07 -> 1.03x.
#: 80 keeps nearly all of the 88 channels' gain at half their cost (docs/anomaly.md, "Texture taps").
WHITEN_DIMS = 80
#: Where the finest level is a stationary texture (``WHITEN``), the model keeps its texture levels alone: the levels
#: that are not a texture are left out. On a texture, a coarse level's position dependence is the lamp's gradient
#: and the frame's border (fabric's block 10 varies 44% between positions, wood's 27%, the cloth and the board not
#: at all), and its distances add to the good parts' tail without finding what the fine level misses. Validation
#: split, f32 distances in numpy, two teach seeds each, good-only escape (the test's own at 1% false reject), both
#: levels -> the fine level alone: fabric 7.0, 9.5% (3.0, 2.5) -> 6.5, 5.5% (3.0, 1.5); fabric Mono8 19.5, 20.0%
#: (13.0, 10.0) -> 20.0, 17.5% (12.5, 10.0); wood 1.0, 2.0% (1.0, 0.5) -> 1.0, 2.0% (0, 0); wood Mono8 AUROC 0.9132
#: (int8, seed 0) -> 0.9302, 0.9237, escape 29.0% -> 24.5, 26.5%. The backbone then stops at the fine level's
#: deepest block (4 of Lite0's 16).
TEXTURE_ALONE = True
#: How the levels' distances are put on one scale: each divided by this quantile of its cross-validated scores.
LEVEL_QUANTILE = 0.99
LEVEL_RULE = (f"each level's distance / the quantile {LEVEL_QUANTILE} of that level's cross-validated good scores; "
              "a patch's score is the largest over the levels")
#: A model also has a tone level (`tone.ToneLevel`: each cell's colour mean and spread over 3 and 7 cell windows): a
#: texture's one Gaussian for every cell (a stain's lost contrast over a blob wider than a patch), a part's one per
#: cell (a missing print's or a shifted ink's tone where the print should be). The backbone's levels together and the
#: tone level are each divided by the highest of their own cross-validated scores (`TONE_LEVEL_RULE`), so that each
#: spends the same false-reject budget: at the 0.99 quantile the tone level's own tail raised the threshold and broken
#: threads escaped in its place. Validation split, good-only escape: f32 distances in numpy, two teach seeds (the
#: test's own at 1% false reject), the texture level alone -> with the tone level: fabric 6.5, 5.5% (3.0, 1.5) -> 2.0,
#: 2.0% (0.5, 0); fabric Mono8 AUROC 0.9633, 0.9720 -> 0.9821, 0.9830, escape 20.0, 17.5% -> 10.5, 10.0%; wood 1.0% ->
#: 1.0%; wood Mono8 0.9302 -> 0.9245, escape 24.5% either way. End to end, int8, the model alone -> with its tone
#: level per position: label 0.9821, 1.0% / 6.0% -> 0.9873, 1.0% / 4.0% (false reject / escape); label Mono8 0.8858,
#: 0.5% / 26.5% -> 0.8945, 0.5% / 25.0%; plate 0.9974, 0% / 2.0% -> 0.9971, 0% / 2.0%; plate Mono8 0.9989, 0% / 1.5%
#: -> 0.9987, 0% / 1.5%.
TONE = True
TONE_LEVEL_RULE = (f"each backbone level's distance / the quantile {LEVEL_QUANTILE} of that level's cross-validated good "
                   "scores, the largest over them; that and the tone level's distance each / the highest of its own "
                   "cross-validated good scores; a patch's score is the larger")
#: An aligned part's model also has an appearance level (`appearance.AppearanceLevel`: the part's whole look as a
#: subspace of the good parts' 8 px block means), normalised as the tone level is: its distance / the highest of its
#: own cross-validated good scores, a patch's score the largest. It sees what is wrong only beside the rest of the
#: part: label Mono8's logo in another ink, at a grey a good logo has at another print density. Fresh parts (600 good,
#: 1000 anomalous, seeds 700000-701599, int8, good only), image AUROC, false reject / escape, without -> with: label
#: Mono8 0.9315, 0 / 15.6% -> 0.9998, 0 / 0.2%; label 0.9993, 0.17 / 0.7% -> 1.0000, 0.50 / 0.1%; plate and plate Mono8
#: unchanged (docs/anomaly.md, "An appearance level").
APPEARANCE = True
APPEARANCE_LEVEL_RULE = TONE_LEVEL_RULE.replace("that and the tone level's distance each",
                                                "that, the tone level's and the appearance level's distance each")
#: Per-position normalisation (`patchcore.cell_divisors`, the card's ``[position]``): each cell's distance divided
#: by the mean + 3 sd of the good images' cross-validated distances in that cell, as PaDiM and PNI condition a
#: patch's normality on its position. Validation split, the int8 scorer, image AUROC / good-only escape, without
#: -> with: fabric 0.9665 / 51.5% -> 0.9637 / 34.0%, fabric Mono8 0.9055 / 54.5% -> 0.9047 / 48.5%, label
#: 0.9834 / 16.0% -> 0.9854 / 14.0%, label Mono8 0.8692 / 33.5% -> 0.8762 / 31.5%, plate 0.9985 / 2.0% -> 0.9976 /
#: 2.5%, plate Mono8 0.9972 / 2.0% -> 0.9958 / 2.5%; one constant per cell in the scoring graph's Multiply.
#: Blocks 1 + 2 + 4 on the fine level as well (~1.25x its distances) were mixed: label 0.9907 / 11.5%, fabric
#: 0.9618 / 36.5%, fabric Mono8 0.8928 / 44.5%; not taken (docs/anomaly.md).
POSITION = True
#: A part's frames are aligned to the good parts' mean pose (`alignment.Alignment`, the card's ``[alignment]``) before
#: anything is taught from them or scored; a texture's (the finest level's position share under
#: `patchcore.STATIONARY_SHARE`) are not. Validation split, int8, good only, image AUROC / false reject / escape, not
#: aligned -> aligned: label 0.9873 / 1.0% / 4.0% -> 0.9990 / 0% / 1.5%; label Mono8 without its colour shifts
#: (invisible in grey) 0.9834, escape 5.7% -> 0.9919, 2.5% (false reject 0.5% -> 2.5%); plate 0.9971 / 0% / 2.0% ->
#: 0.9983 / 0.5% / 1.0%; plate Mono8 0.9987 / 0% / 1.5% -> 0.9958 / 0.5% / 1.0%. Tried: the outer 5% of each
#: side cut instead of the unseen cells left out: label 1.0000 / 0% / 1.0%, but plate's chipped edges (at the frame's
#: edge) AUROC 0.9865 -> 0.658; the finest level alone for an aligned part: label 0.9993 / 0% / 1.5%, plate 0.9575.
ALIGN = True
#: An aligned part's finest level keeps its bank per band of grid rows (`patchcore.Bands`: each band of
#: `patchcore.BAND_HEIGHT` rows against the good patches taught within `patchcore.BAND_REACH` rows of it), its
#: threshold's scores cross-validated band by band (`patchcore.cross_validated_band_maps`).
BANDS = True
#: Grid cells along each side left out of the image score (`runtime.AnomalyScorer`): 2 cells, 16 px at 320.
EDGE_CELLS = 2
BATCH = 8


#: The scorer's precision where the CPU has bf16 (`runtime_precision`); teaching stays f32. Measured on plate's
#: 200 + 200 held-out parts: colour, the shipped model (taught f32) scored bf16 image AUROC 0.9991, false reject
#: 0%, escape 3.0%, against f32 0.9992, 0.5%, 3.0%, scores within 0.049 of f32's; keeping the distances in f32
#: (``bf16-features``) did not bring them closer (0.049: the difference is the features'), at 1.2x bf16's time.
#: Mono8, taught f32: scored f32 0.9991 / 0.5% / 3.0%, bf16 0.9990 / 0.5% / 3.0%; taught from bf16 features
#: (bank and threshold) 0.9967 / 0% / 7.0%, so the bank is built from f32 features.
BF16_PRECISION = "bf16"


def runtime_precision() -> str:
    """The precision a model taught here is scored in (`runtime.default_precision`: int8 where the CPU has
    VNNI or AMX, else `BF16_PRECISION` where it has bf16, else f32)."""
    return default_precision()


def _quiet(_stage: str, _done: int, _total: int) -> None:
    pass


@dataclass(frozen=True)
class TeachReport:
    """What `teach` did."""

    folder: Path
    good_images: int
    bank_images: int
    held_out: int  # images whose (cross-validated) scores set the threshold: all the good ones
    bad_images: int
    bank_rows: int
    raw_threshold: float
    good_scores: np.ndarray
    bad_scores: np.ndarray
    seconds: float
    whitened: tuple[int, ...] = ()  # the levels taught whitened (a stationary texture, or the spec's choice)
    position_shares: tuple[float, ...] = ()  # each level's `patchcore.position_share`
    levels: tuple[FeatureSpec, ...] = ()  # the levels as taught (a texture's taps and width)
    #: The spec's levels a texture's model left out (`TEXTURE_ALONE`): (the spec's level index, its position share).
    left_out: tuple[tuple[int, float], ...] = ()
    #: The tone level (`TONE`: a texture's, or a part's per position), None where the model has none.
    tone: ToneLevel | None = None
    #: A part's frames aligned to the good parts' pose (`ALIGN`): the card's ``[alignment]`` table; None: not.
    alignment: dict[str, object] | None = None
    #: An aligned part's appearance level (`APPEARANCE`), None where the model has none.
    appearance: AppearanceLevel | None = None

    @property
    def good_without_pose(self) -> int:
        """The good images an aligned part's model found no pose for (scored where they lay); 0 when not aligned."""
        lost = (self.alignment or {}).get("good_without_pose", 0)
        return int(lost) if isinstance(lost, (int, float)) else 0


def teach(good: Sequence[Path], out: Path, *, bad: Path | None = None, roi: Roi | None = None,
          name: str | None = None, spec: FeatureSpec | Sequence[FeatureSpec] = DEFAULT_SPEC, width: int = 320,
          height: int = 320, seed: int = 0, position: bool = POSITION, whiten: str = WHITEN, align: bool | None = None,
          progress: Progress = _quiet) -> TeachReport:
    """Teach a PatchCore model from the good images in ``good`` and write it to ``out``.

    Every level gets its own bank (greedy coreset of its patches). Each good image is then scored
    cross-validated (`patchcore.cross_validated_maps`: against a bank chosen without its fold; each image's
    worst inner cell); a level's distances are divided by the `LEVEL_QUANTILE` of its own cross-validated
    scores (so levels of different feature widths weigh alike, as PatchCore's ensembles normalise their
    members), a patch's score is the largest over the levels, and the threshold rule runs on those scores.
    Beside them a tone level (`TONE`, `tone.ToneLevel`), its scores cross-validated by the same folds; the
    backbone's levels together and it each at their highest (`TONE_LEVEL_RULE`).

    Args:
        good: Folders (searched recursively) or files of good parts.
        out: The model folder to write.
        bad: A folder of NG images that refines the threshold (`threshold.with_bad`).
        roi: The rectangle of each image to inspect.
        name: The model's name (default: the folder's).
        spec: Backbone features: one spec, or one per level (the finest first).
        width: Letterboxed input width.
        height: Letterboxed input height.
        seed: Seeds the coreset.
        position: Divide each cell's distance by its own divisor (`patchcore.cell_divisors`; the card's
            ``[position]``), the threshold's scores by the divisors without their own image.
        whiten: ``"textures"``: whiten the levels the spec whitens and every level whose good features are a
            stationary texture (`patchcore.position_share` < `patchcore.STATIONARY_SHARE`), and where the finest
            level is one, keep the texture levels alone (`TEXTURE_ALONE`); ``"spec"``: only the levels the spec
            whitens, every level kept.
        align: Align a part's frames to the good parts' pose (`ALIGN`, the default: None); False: frames as they
            come (1.3x faster to score, less exact: see `ALIGN`). A texture's frames are never aligned.
        progress: ``(stage, done, total)``.

    Raises:
        ImageError: A folder without images, an unreadable image, or fewer than `MIN_GOOD` good images.
    """
    t0 = time.perf_counter()
    if whiten not in WHITEN_CHOICES:
        raise ValueError(f"whiten = {whiten!r}: one of {', '.join(WHITEN_CHOICES)}")
    files = find_images(good)
    if len(files) < MIN_GOOD:
        raise ImageError(f"{', '.join(map(str, good))}: {len(files)} good images, at least {MIN_GOOD} are needed "
                         "(a memory bank and enough good scores to set the threshold)")
    bad_files = find_images([bad]) if bad is not None else []
    levels = spec_levels = as_levels(spec)
    # a level with texture taps is extracted with both sets of taps until its share says which it keeps
    extracted = tuple(dataclasses.replace(lv, taps=tuple(sorted({*lv.taps, *lv.texture_taps})))
                      if whiten == "textures" and lv.texture_taps else lv for lv in levels)
    # the bank from f32 features whatever the scorer runs: a bank from bf16 features lost accuracy (see BF16_PRECISION)
    precision = runtime_precision()
    edge = min(EDGE_CELLS, max(0, min(width, height) // levels[0].grid_stride // 2 - 1))
    grids = [(height // lv.grid_stride, width // lv.grid_stride) for lv in levels]
    edges = level_edges(edge, grids)  # the cells the scorer leaves out, in each level's own

    def shares_of(i: int, scored: list[list[np.ndarray]]) -> float:
        """Level ``i``'s `patchcore.position_share`, of its own taps' features."""
        every = np.concatenate(scored[i])
        own = extracted[i].tap_channels(levels[i].taps)
        return position_share(every[:, own].reshape(-1, *grids[i], len(own)), edges[i])

    def gather(alignment: Alignment | None) -> tuple[FeatureExtractor, bool, list[np.ndarray], list[np.ndarray],
                                                      np.ndarray, list[list[np.ndarray]], list[int],
                                                      list[np.ndarray], np.ndarray | None]:
        """One pass over the good images (warped to the reference pose where ``alignment``): the extractor (its
        activation ranges), every image grey, the tone features, the block means (`APPEARANCE`: an aligned pass's),
        the content blocks, every patch per level,
        the patch counts, the small grey copies (`alignment.small_greys`), the warps' matrices (or None)."""
        extractor = FeatureExtractor(extracted, width, height, "f32", record_ranges=True)  # ranges: int8's
        scored: list[list[np.ndarray]] = [[] for _ in levels]  # every patch, for the cross-validated maps
        patches = [0] * len(levels)
        grey = True  # every good image grey (a Mono8 camera): texture taps that see colour are left out
        tones: list[np.ndarray] = []  # the tone level's features (`TONE`)
        blocks: list[np.ndarray] = []  # the appearance level's block means (`APPEARANCE`; an aligned part's)
        content = np.zeros((height // levels[0].grid_stride, width // levels[0].grid_stride), bool)
        greys: list[np.ndarray] = []
        matrices: list[np.ndarray] = []
        for start in range(0, len(files), BATCH):
            batch, warps = _load(files[start:start + BATCH], width, height, roi, alignment)
            if warps is not None:
                matrices.append(warps)
            if alignment is None:
                greys += small_greys(batch, width, height)
            grey = grey and bool((batch[..., 0] == batch[..., 1]).all() and (batch[..., 1] == batch[..., 2]).all())
            tones.append(tone_features(batch, levels[0].grid_stride, TONE_WINDOWS))
            if alignment is not None and APPEARANCE:
                blocks.append(block_means(batch, levels[0].grid_stride))
            content |= content_blocks(batch, levels[0].grid_stride)
            outs = extractor.all_levels(batch)
            for lv, feats in enumerate(outs):
                for f in feats:
                    scored[lv].append(f.reshape(-1, f.shape[-1]).copy())
                    patches[lv] += len(scored[lv][-1])
            progress("features" if alignment is None else "aligned features", min(start + BATCH, len(files)),
                     len(files))
        return (extractor, grey, tones, blocks, content, scored, patches, greys,
                np.concatenate(matrices) if matrices else None)

    extractor, grey, tones, blocks, content, scored, patches, greys, warps = gather(None)
    # the finest level's share on the frames as they came decides, once, whether the product is a texture; the card
    # records it (a part's aligned features are not asked again)
    first_share = shares_of(0, scored)
    alignment, poses = None, dict[str, Any]()
    if (ALIGN if align is None else align) and whiten == "textures" and first_share >= STATIONARY_SHARE:  # a part
        alignment, poses = teach_alignment(greys, width, height)
        extractor, grey, tones, blocks, content, scored, patches, _, warps = gather(alignment)
    del greys
    ranges = extractor.activation_ranges()  # of the good images only (the NG ones pass through it below)
    # a whitened level's bank and distances live in the good patches' own metric (`patchcore.whitening`)
    shares: list[float] = []
    whitenings: list[np.ndarray | None] = []
    taught_levels = []
    for i, level in enumerate(levels):
        every = np.concatenate(scored[i])  # the level's every good patch, (images x cells, C): gathered once
        own = extracted[i].tap_channels(level.taps)
        shares.append(first_share if i == 0 else position_share(every[:, own].reshape(-1, *grids[i], len(own)),
                                                                 edges[i]))
        if whiten == "textures" and shares[-1] < STATIONARY_SHARE:
            level = dataclasses.replace(level, whiten=True, taps=_texture_taps(level, grey))
        if level.whiten and level.channels > WHITEN_DIMS:
            level = dataclasses.replace(level, whiten_dims=WHITEN_DIMS)
        level = dataclasses.replace(level, texture_taps=())
        kept = extracted[i].tap_channels(level.taps)
        if len(kept) < every.shape[1]:
            every, scored[i] = every[:, kept], [f[:, kept] for f in scored[i]]
        taught_levels.append(level)
        whitenings.append(whitening(every, dims=level.whiten_dims, seed=seed + i) if level.whiten else None)
    levels = tuple(taught_levels)
    texture = whiten == "textures" and shares[0] < STATIONARY_SHARE  # the finest level a stationary texture
    left_out: dict[int, float] = {}  # a texture's levels that are not one: level index -> its position share
    if texture and TEXTURE_ALONE and len(levels) > 1:
        kept_levels = [i for i, share in enumerate(shares) if share < STATIONARY_SHARE]
        left_out = {i: shares[i] for i in range(len(levels)) if i not in kept_levels}
        levels, whitenings, scored, shares, patches, grids, edges = (
            tuple(levels[i] for i in kept_levels), [whitenings[i] for i in kept_levels],
            [scored[i] for i in kept_levels], [shares[i] for i in kept_levels], [patches[i] for i in kept_levels],
            [grids[i] for i in kept_levels], [edges[i] for i in kept_levels])
        # the backbone stops at the kept levels' deepest block: its convolutions are the first of the full one's
        ranges = ranges[:len(activation_inputs(cached_feature_model(levels, height, width)))]
    # an aligned part's seen cells on the (kept levels') first grid, each good image's (None: not aligned): the tone
    # level's and, repeated onto their grids, the backbone levels' threshold scores leave the others out, as the
    # scorer does
    seen = _seen(warps, width, height, levels[0].grid_stride)
    tone, tone_scores = None, np.empty(0)
    cells = scored_cells(content, TONE_WINDOWS)
    if TONE and cells is not None:  # a texture: one Gaussian for every cell; a part: one per cell
        every_tone = np.concatenate(tones)
        if grey:
            every_tone = grey_only(every_tone)
        tone_scores = cross_validated_scores(every_tone, cells, not texture, seen)  # the threshold's, as the levels'
        tone = ToneLevel(levels[0].grid_stride, TONE_WINDOWS, 1 if grey else 3,
                         fit_tone(every_tone, cells, not texture), cells)
    del tones
    appearance, appearance_scores = None, np.empty(0)
    if blocks:  # an aligned part's whole look (`APPEARANCE`), scored where the backbone's first level is
        gh, gw = grids[0]
        every_block = np.concatenate(blocks)
        appearance, appearance_scores = teach_appearance(every_block[..., :1] if grey else every_block,
                                                         levels[0].grid_stride, (edge, edge, gh - edge, gw - edge),
                                                         None if seen is None else seen > 0)
    del blocks
    per_image: list[list[np.ndarray]] = [[] for _ in levels]  # each image's first-stage patches' cell indices
    for lv, transform in enumerate(whitenings):
        if transform is not None:
            scored[lv] = [whitened(f, transform) for f in scored[lv]]
        # the first coreset stage per image (greedy k-center keeps the outlying patches)
        per_image[lv] = [image_coreset_cells(f, 0.1, seed=seed + i) for i, f in enumerate(scored[lv])]
    banks: list[np.ndarray | Bands] = []
    loo, divisors = [], []
    for lv in range(len(levels)):
        size = int(np.clip(BANK_SHARE * patches[lv], BANK_MIN, BANK_MAX))
        candidates = np.concatenate([f[c] for f, c in zip(scored[lv], per_image[lv])])
        owners = np.repeat(np.arange(len(per_image[lv])), [len(c) for c in per_image[lv]])
        # the threshold's scores: each image against a bank chosen without it (`patchcore.cross_validated_maps`)
        def folds_done(f: int, n: int, level: int = lv) -> None:
            progress("threshold", level * n + f, len(levels) * n)

        if BANDS and alignment is not None and lv == 0:  # an aligned part's finest level: a bank per band of rows
            rows = np.concatenate(per_image[lv]) // grids[lv][1]
            progress("coreset", 0, 1)
            banks.append(band_banks(candidates, rows, grids[lv][0], size, seed=seed))
            progress("coreset", 1, 1)
            maps = cross_validated_band_maps(scored[lv], candidates, owners, rows, grids[lv], size, seed=seed,
                                             progress=folds_done)
        else:
            chosen = greedy_coreset(candidates, size, seed=seed, proj_dim=64,
                                    progress=lambda k, n: progress("coreset", k, n))
            banks.append(np.ascontiguousarray(candidates[chosen]))
            maps = cross_validated_maps(scored[lv], candidates, owners, len(chosen), seed=seed, progress=folds_done)
        if position:  # each image by the cells' divisors of the others: its own distances do not widen them
            divisors.append(cell_divisors(maps).reshape(grids[lv]))
            maps = maps / cell_divisors_without_each(maps)
        level_seen = _coarse(seen, grids[lv])
        loo.append(_inner_max(maps.reshape(-1, *grids[lv]) * (1.0 if level_seen is None else level_seen), edges[lv]))
    scales = [float(np.quantile(v, LEVEL_QUANTILE)) for v in loo]
    good_raw = np.max([v / sc for v, sc in zip(loo, scales)], axis=0)
    # the backbone's levels together and the numpy levels below (tone, appearance), each at its highest
    if tone is not None or appearance is not None:
        top = float(good_raw.max())
        scales, good_raw = [sc * top for sc in scales], good_raw / top
    correction, shipped = 1.0, None
    if precision != "f32":  # the threshold from the scores the shipped scorer gives (`threshold.scorer_correction`)
        shipped, plain = (AnomalyScorer(levels, width, height, banks, scales, p, edge=edge, activation_ranges=ranges,
                                        cell_divisors=divisors or None, whitening=whitenings, alignment=alignment)
                           for p in (precision, "f32"))
        step = max(1, len(files) // thresholds.CORRECTION_IMAGES)
        sample = load_batch(files[::step][:thresholds.CORRECTION_IMAGES], width, height, roi)
        correction = thresholds.scorer_correction(shipped, plain, sample)
        good_raw = good_raw * correction
    if shipped is not None:
        bad_raw = _score_files(shipped, bad_files, roi, lambda d, n: progress("NG images", d, n)).scores
    else:  # an f32 scorer: in numpy, through the taps the model kept (the extractor above may have more)
        numpy_extractor = extractor
        if bad_files and levels != extracted:
            numpy_extractor = FeatureExtractor(levels, width, height, "f32")
        bad_raw = _raw_scores(numpy_extractor, bad_files, banks, scales, edges, roi, width, height,
                              lambda d, n: progress("NG images", d, n), divisors or None, whitenings, alignment)
    # the numpy levels (tone, appearance) whatever the scorer's precision: the same in both; each at the highest of its
    # own cross-validated good scores, the NG images loaded and warped once for them all
    beside = [(level, scores, float(scores.max())) for level, scores in ((tone, tone_scores),
                                                                         (appearance, appearance_scores))
              if level is not None]
    for _, scores, scale in beside:
        good_raw = np.maximum(good_raw, scores / scale)
    if beside:
        bad_beside = _beside_scores([level for level, _, _ in beside], bad_files, roi, width, height, alignment)
        for (_, _, scale), scores in zip(beside, bad_beside, strict=True):
            bad_raw = np.maximum(bad_raw, scores / scale)
    th = thresholds.with_bad(good_raw, bad_raw) if len(bad_raw) else thresholds.good_only(good_raw)
    raws = [sc * th.raw for sc in scales]
    if tone is not None:
        tone = dataclasses.replace(tone, raw_threshold=float(tone_scores.max()) * th.raw)
    if appearance is not None:
        appearance = dataclasses.replace(appearance, raw_threshold=float(appearance_scores.max()) * th.raw)
    seconds = time.perf_counter() - t0
    taught = {
        "good_images": len(files), "bank_images": len(files), "threshold_images": len(files),
        "bad_images": len(bad_files), "sources": [str(p) for p in good] + ([str(bad)] if bad else []),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "seed": seed,
        "patches": sum(patches), "bank_rows": sum(bank_rows(b) for b in banks), "teach_seconds": round(seconds, 2),
        "cpu": _cpu_text(),
        "coreset": "greedy k-center per level, two stages: 10% of each image's patches, then "
                   f"{BANK_SHARE:.0%} of the level's patches within [{BANK_MIN}, {BANK_MAX}] rows "
                   "(Gaussian projection to 64 dims for the distances where the features are wider)",
        "threshold_scores": f"cross-validated, {FOLDS} folds: each good image scored against banks greedy-coreset "
                            "from the other folds' images (patchcore.cross_validated_maps)",
    }
    if isinstance(banks[0], Bands):
        taught["bands"] = (f"the finest level's bank per band of {banks[0].height} grid rows, each band's a greedy "
                           f"coreset of the candidates within {banks[0].reach} rows of it, as many rows per grid row "
                           "as the level's share gives (patchcore.band_banks); its threshold's scores cross-validated "
                           "band by band (patchcore.cross_validated_band_maps)")
    if left_out:  # what the spec asked for and the texture rule dropped
        taught["levels_left_out"] = (
            "; ".join(f"the spec's level {i} (blocks {', '.join(map(str, spec_levels[i].taps))}): position share "
                      f"{share:.3f}" for i, share in left_out.items())
            + f": the finest level is a stationary texture (position share under {STATIONARY_SHARE:g}); its model "
              "keeps the texture levels alone (teach.TEXTURE_ALONE)")
    table: dict[str, object] = {
        "rule": th.rule,
        "level_normalisation": APPEARANCE_LEVEL_RULE if appearance is not None else LEVEL_RULE if tone is None
        else TONE_LEVEL_RULE,
        "scorer_correction": round(correction, 4), "scorer_correction_rule": thresholds.CORRECTION_RULE,
        "good_quantile": th.good_quantile / th.raw,
        # the scores the threshold was set from, in score units (a histogram for the teach dialog)
        "good_scores": [round(float(v / th.raw), 4) for v in good_raw],
        "bad_scores": [round(float(v / th.raw), 4) for v in bad_raw]}
    if th.lowest_bad is not None:
        table["lowest_bad"] = th.lowest_bad / th.raw
    if th.floor is not None:  # what the NG refinement did, and how low it could have gone
        table["false_reject_floor"] = th.floor / th.raw
        table["refinement"] = th.note
    metrics: dict[str, object] = {"cross_validated_false_reject": rate_above(good_raw, th.raw)}
    if len(bad_raw):
        metrics["taught_bad_escape"] = 1.0 - rate_above(bad_raw, th.raw)
    write_model(out, name or out.name, banks, levels, width, height, raws, roi,
                {"threshold": table, "taught": taught, "metrics": metrics,
                 "runtime": {"activation_ranges": [list(r) for r in ranges]}},
                notes="PatchCore on EfficientNet-Lite0 (ImageNet) features, taught from good images only",
                edge_cells=edge, precision=precision, cell_divisors=divisors or None, position_rule=POSITION_RULE,
                whitening=whitenings, position_shares=shares, tone=tone, appearance=appearance,
                alignment=(alignment, poses) if alignment is not None else None,
                whitening_rule=WHITEN_RULE + (f"; the levels whose good features vary under {STATIONARY_SHARE:.0%} "
                                              "between positions (position_share: a stationary texture)"
                                              if whiten == "textures" else "; the levels the spec whitens"))
    return TeachReport(out, len(files), len(files), len(files), len(bad_files), sum(bank_rows(b) for b in banks),
                       raws[0], good_raw / th.raw, bad_raw / th.raw, seconds,
                       tuple(i for i, w in enumerate(whitenings) if w is not None), tuple(shares), levels,
                       tuple(left_out.items()), tone,
                       None if alignment is None else alignment.card_table("", "", **poses), appearance)


def _texture_taps(level: FeatureSpec, grey: bool) -> tuple[int, ...]:
    """The taps a level found a texture takes: its ``texture_taps`` (its own taps without them), less the
    stride-2 blocks where every good image is grey (`COLOUR_STRIDE`)."""
    taps = level.texture_taps or level.taps
    blocks = BACKBONES[level.backbone].blocks
    return tuple(t for t in taps if not grey or block_stride(t, blocks) > COLOUR_STRIDE) or level.taps


def _inner_max(maps: np.ndarray, edge: int) -> np.ndarray:
    """(n,) the largest of each (gh, gw) map of ``maps`` without ``edge`` cells along each side."""
    inner = maps[:, edge:maps.shape[1] - edge, edge:maps.shape[2] - edge] if edge else maps
    return inner.reshape(len(maps), -1).max(axis=1)


def _raw_scores(extractor: FeatureExtractor, files: Sequence[Path], banks: Sequence[np.ndarray | Bands],
                scales: Sequence[float], edges: Sequence[int], roi: Roi | None, width: int, height: int,
                progress: Callable[[int, int], None], divisors: Sequence[np.ndarray] | None = None,
                whitenings: Sequence[np.ndarray | None] = (), alignment: Alignment | None = None) -> np.ndarray:
    """Image scores of ``files`` in numpy (teaching: no scoring graph compiled): the largest over the levels
    of the worst inner patch's distance (/ its cell's divisor, where given) / the level's scale, a level's
    features whitened first where ``whitenings`` has its transform."""
    out = []
    for start in range(0, len(files), BATCH):
        batch, warps = _load(files[start:start + BATCH], width, height, roi, alignment)
        outs = extractor.all_levels(batch)
        # an aligned part's seen cells, per level: each image's of this batch (found once, on the first grid)
        fine = _seen(warps, width, height, height // outs[0].shape[1])
        seen = [_coarse(fine, f.shape[1:3]) for f in outs]
        for i in range(len(outs[0])):
            level_scores = []
            for lv, feats in enumerate(outs):
                grid = feats[i].shape[:2]
                rows = feats[i].reshape(-1, feats.shape[-1])
                if lv < len(whitenings) and whitenings[lv] is not None:
                    rows = whitened(rows, whitenings[lv])  # type: ignore[arg-type]
                dist = level_nearest(banks[lv], rows, grid).reshape(grid)
                if divisors is not None:
                    dist = dist / divisors[lv]
                level_seen = seen[lv]
                if level_seen is not None:
                    dist = dist * level_seen[i]
                level_scores.append(float(_inner_max(dist[None], edges[lv])[0]) / scales[lv])
            out.append(max(level_scores))
        progress(min(start + BATCH, len(files)), len(files))
    return np.asarray(out, np.float32)


def _beside_scores(levels: Sequence[ToneLevel | AppearanceLevel], files: Sequence[Path], roi: Roi | None, width: int,
                   height: int, alignment: Alignment | None = None) -> np.ndarray:
    """(len(levels), n) the image scores of ``files`` of each level scored in numpy beside the graph (the tone and the
    appearance level: distance / its ``raw_threshold``; the largest cell), each batch loaded and warped once."""
    out = np.empty((len(levels), len(files)), np.float32)
    for start in range(0, len(files), BATCH):
        batch, warps = _load(files[start:start + BATCH], width, height, roi, alignment)
        for i, level in enumerate(levels):
            seen = _seen(warps, width, height, level.stride)
            maps = level.maps(batch) * (1.0 if seen is None else seen)
            out[i, start:start + len(batch)] = maps.reshape(len(maps), -1).max(axis=1)
    return out


def _load(files: Sequence[Path], width: int, height: int, roi: Roi | None, alignment: Alignment | None
          ) -> tuple[np.ndarray, np.ndarray | None]:
    """A letterboxed batch of ``files``, warped to the reference pose where ``alignment`` (with the warps'
    matrices, `alignment.Alignment.warp`; else None)."""
    batch = load_batch(files, width, height, roi)
    return alignment.warp(batch) if alignment is not None else (batch, None)


def _coarse(seen: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray | None:
    """(N, gh, gw) seen cells of the first grid on a coarser level's ``grid``: a coarse cell counts where one of the
    fine cells it is repeated onto counts (`runtime.AnomalyScorer` takes the levels' largest on the first grid)."""
    if seen is None or seen.shape[1:] == grid:
        return seen
    fy, fx = seen.shape[1] // grid[0], seen.shape[2] // grid[1]
    cut = seen[:, :grid[0] * fy, :grid[1] * fx]
    return cut.reshape(len(seen), grid[0], fy, grid[1], fx).max(axis=(2, 4))


def _seen(matrices: np.ndarray | None, width: int, height: int, stride: int) -> np.ndarray | None:
    """`alignment.seen_cells` of warped frames, as float32 (a map's factor); None for frames not warped."""
    return None if matrices is None else seen_cells(matrices, width, height, stride).astype(np.float32)


def _cpu_text() -> str:
    from inspector.bench import cpu_description

    cpu = cpu_description()
    return f"{cpu['model']}, {cpu['cores']} cores, {' '.join(cpu['isa']) or 'no avx2'}"


def record_metrics(folder: Path, report: EvalReport, good: Path, bad: Path) -> None:
    """Write an evaluation into the model's card as ``[metrics.eval]`` (the bank, and so its sha256, unchanged)."""
    import tomllib

    from inspector.pipeline.model_repo import dump_toml

    path = folder / "card.toml"
    card = tomllib.loads(path.read_text(encoding="utf-8"))
    metrics = card.setdefault("metrics", {})
    metrics["eval"] = {
        "image_auroc": round(report.image_auroc, 4),
        "pixel_auroc": round(report.pixel_auroc, 4) if report.pixel_auroc is not None else "none (no masks)",
        "false_reject": report.false_reject, "escape": report.escape, "threshold": 1.0,
        "good_images": report.good, "bad_images": report.bad, "masks": report.masks,
        "good": str(good), "bad": str(bad),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    path.write_text(dump_toml(card), encoding="utf-8")


def _score_files(scorer: AnomalyScorer, files: Sequence[Path], roi: Roi | None,
                 progress: Callable[[int, int], None]) -> ScoreBatch:
    scores, maps = [], []
    for start in range(0, len(files), BATCH):
        batch = load_batch(files[start:start + BATCH], scorer.width, scorer.height, roi)
        out = scorer.score(batch)
        scores.append(out.scores)
        maps.append(out.maps)
        progress(min(start + BATCH, len(files)), len(files))
    if not scores:
        return ScoreBatch(np.empty(0, np.float32), np.empty((0, 1, 1), np.float32))
    return ScoreBatch(np.concatenate(scores), np.concatenate(maps))


def scorer_for(model: AnomalyModel) -> AnomalyScorer:
    """The compiled scorer of a loaded model (scores normalised: threshold 1.0)."""
    return AnomalyScorer.for_model(model)


@dataclass(frozen=True)
class FileScore:
    """One scored file."""

    file: str
    score: float
    verdict: str
    #: An aligned part's model: whether the image's part pose was found (False: scored where it lay); None: the
    #: model does not align.
    posed: bool | None = None


def score_paths(spec: str | Path, paths: Sequence[Path], *, heatmaps: Path | None = None,
                progress: Progress = _quiet) -> tuple[AnomalyModel, list[FileScore]]:
    """Score image files (folders searched recursively); write heat map overlays to ``heatmaps``."""
    model = load_anomaly_model(spec)
    files = find_images(paths)
    scorer = scorer_for(model)
    results: list[FileScore] = []
    if heatmaps is not None:
        heatmaps.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(files), BATCH):
        chunk = files[start:start + BATCH]
        images = [crop(read_image(p), model.roi, str(p)) for p in chunk]
        out = scorer.score(letterboxed(images, model.input_width, model.input_height))
        posed = [None] * len(chunk) if out.posed is None else [bool(x) for x in out.posed]
        for p, img, s, m, found in zip(chunk, images, out.scores, out.maps, posed):
            results.append(FileScore(str(p), float(s), "NG" if s >= 1.0 else "OK", found))
            if heatmaps is not None:
                _write_overlay(heatmaps / f"{len(results) - 1:05d}_{p.stem}.png", img, m, model)
        progress("score", min(start + BATCH, len(files)), len(files))
    return model, results


def heat_map(patch_map: np.ndarray, model: AnomalyModel, shape: tuple[int, int]) -> np.ndarray:
    """Patch scores as a float32 map over an image of ``shape`` (h, w): upsampled to the letterboxed input,
    blurred (sigma 4 px, as PatchCore), the letterbox's padding cut away and resized to the image."""
    from inspector.pipeline.preprocess import Letterbox

    up = cv2.resize(patch_map.astype(np.float32), (model.input_width, model.input_height),
                    interpolation=cv2.INTER_LINEAR)
    up = cv2.GaussianBlur(up, (0, 0), 4.0)
    box = Letterbox.fit(shape[1], shape[0], model.input_width, model.input_height)
    inner = up[box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w]
    return cv2.resize(inner, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _write_overlay(path: Path, image: np.ndarray, patch_map: np.ndarray, model: AnomalyModel) -> None:
    heat = heat_map(patch_map, model, image.shape[:2])
    # colour scale: 0 .. 2x the threshold, so the threshold sits mid-scale
    colour = cv2.applyColorMap(np.clip(heat * 127.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    base = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if not cv2.imwrite(str(path), cv2.addWeighted(base, 0.55, colour, 0.45, 0.0)):
        raise ImageError(f"{path}: cannot write the heat map")


@dataclass(frozen=True)
class EvalReport:
    """Image and pixel metrics of a model on labelled folders."""

    model: str
    good: int
    bad: int
    image_auroc: float
    false_reject: float
    escape: float
    pixel_auroc: float | None
    masks: int
    good_scores: np.ndarray = field(repr=False)
    bad_scores: np.ndarray = field(repr=False)


def evaluate(spec: str | Path, good: Path, bad: Path, *, masks: Path | None = None,
             progress: Progress = _quiet) -> EvalReport:
    """Image AUROC, false reject and escape at the threshold, pixel AUROC where ``masks`` has the bad
    images' masks (same file name, non-zero = anomalous)."""
    model = load_anomaly_model(spec)
    scorer = scorer_for(model)
    good_files, bad_files = find_images([good]), find_images([bad])
    g = _score_files(scorer, good_files, model.roi, lambda d, n: progress("good", d, n))
    b = _score_files(scorer, bad_files, model.roi, lambda d, n: progress("bad", d, n))
    pixel = None
    used = 0
    if masks is not None:
        neg, pos = [], []
        for files, out, with_mask in ((good_files, g, False), (bad_files, b, True)):
            for p, m in zip(files, out.maps):
                mask_path = masks / p.name
                if with_mask and not mask_path.is_file():
                    continue
                img_shape = crop(read_image(p), model.roi, str(p)).shape[:2]
                # pixels at 1/4 of the image side: the metric, at a sixteenth of the pixels
                small = (max(8, img_shape[0] // 4), max(8, img_shape[1] // 4))
                heat = cv2.resize(heat_map(m, model, img_shape), (small[1], small[0]), interpolation=cv2.INTER_AREA)
                if with_mask:
                    mk = crop(read_image(mask_path), model.roi, str(mask_path))
                    mk = cv2.resize((mk if mk.ndim == 2 else mk.max(axis=2)), (small[1], small[0]),
                                    interpolation=cv2.INTER_NEAREST) > 0
                    used += 1
                    pos.append(heat[mk])
                    neg.append(heat[~mk])
                else:
                    neg.append(heat.ravel())
        if used:
            pixel = auroc(np.concatenate(neg), np.concatenate(pos))
    return EvalReport(model.name, len(good_files), len(bad_files), auroc(g.scores, b.scores),
                      rate_above(g.scores, 1.0), 1.0 - rate_above(b.scores, 1.0), pixel, used, g.scores, b.scores)
