"""The anomaly model at run time: one OpenVINO graph from letterboxed u8 frames to patch scores.

The feature extractor (`backbone.feature_model`) is followed in the same graph by the nearest-neighbour
search against the memory bank (MatMuls with the bank as a constant, each a chunk of the patches, ReduceMin
over each) and the division by the raw threshold, so a batch is scored asynchronously, as the detector's is
(each frame one request of the graph compiled for one frame, the frames shared among the cores' streams):

    scorer = AnomalyScorer.for_model(model)           # compiles once, at the card's precision
    pending = scorer.start(batch_u8)                  # u8 BGR NHWC, letterboxed like the detector's input
    ...                                               # the worker does other work meanwhile
    scores = pending.wait()                           # ScoreBatch: image scores, patch maps (threshold = 1.0)

Precision (`PRECISIONS`, the card's ``[runtime] precision``): where the CPU has an int8 dot product (VNNI,
AMX) models are scored in ``int8``: the backbone's convolutions at the activation ranges recorded while
teaching (`int8.quantized`) and the nearest-neighbour products (`_Int8Bank`); elsewhere bf16 or f32.
The memory bank and the threshold always come from f32 features (`teach`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.anomaly import int8 as int8_graph
from inspector.anomaly.alignment import Alignment, seen_cells, to_frame
from inspector.anomaly.backbone import FeatureSpec, as_levels, cached_feature_model
from inspector.anomaly.patchcore import Bands, band_count, bank_width

if TYPE_CHECKING:
    from inspector.anomaly.appearance import AppearanceLevel
    from inspector.anomaly.model import AnomalyModel
    from inspector.anomaly.tone import ToneLevel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of one batch, normalised so that the model's threshold is 1.0.

    Attributes:
        scores: (N,) image scores (the worst patch, the grid's edge cells left out: see `AnomalyScorer`).
        maps: (N, gh, gw) patch scores on the feature grid (model input / grid stride).
        posed: (N,) bool: each frame's part pose found (an aligned part's model, `alignment.Alignment.pose`); a
            frame without one was scored where it lay. None: the model does not align.
    """

    scores: np.ndarray
    maps: np.ndarray
    posed: np.ndarray | None = None


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


#: CPU flags of an int8 dot product (VNNI, AMX): where the ``int8`` scorer is the default (`default_precision`).
#: Without them oneDNN's int8 kernels pair u8 x s8 products into saturating 16-bit sums (AVX2).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_int8_dot() -> bool:
    """Whether the CPU (under any ``ONEDNN_MAX_CPU_ISA`` limit) has one of `INT8_FLAGS`."""
    from inspector.pipeline.backends import isa

    _model, flags = isa.read_cpuinfo()
    return any(flag in INT8_FLAGS for flag in isa.kept_flags(sorted(flags)))


def default_precision() -> str:
    """The precision a model taught here is scored in: ``int8`` where the CPU has an int8 dot product,
    else ``bf16`` where it has bf16, else ``f32``."""
    if cpu_has_int8_dot():
        return "int8"
    return "bf16" if cpu_has_bf16() else "f32"


#: Streams a scorer shares each batch's frames among (`AnomalyScorer`), at most one per core: the cores' threads
#: work on their own frames instead of meeting after every layer. Measured on the shared 2-core EPYC (int8,
#: plate, batch 8, interleaved rounds, load 10-14): a batch split over 2 single-thread streams took 0.60-0.67x
#: the time of the same batch on one stream of 2 threads (PERFORMANCE_HINT LATENCY).
BATCH_STREAMS = 2


def batch_streams() -> int:
    """`BATCH_STREAMS`, or fewer where the process has fewer cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(BATCH_STREAMS, cores))


def compile_for_cpu(model: Any, precision: str = "f32", profile: bool = False, streams: int = 1) -> Any:
    """Compile ``model`` for the CPU at ``precision`` (``f32``; ``bf16`` where the CPU has it, else f32);
    ``profile``: with OpenVINO's per-layer counters on (PERF_COUNT, `benchmarks/anomaly_speed.py`);
    ``streams``: that many streams sharing the cores (1: one stream, PERFORMANCE_HINT LATENCY)."""
    import openvino as ov

    if precision == "bf16" and not cpu_has_bf16():
        log.warning("anomaly: this CPU has no bf16; the model runs in f32 (scores may differ by a few percent "
                    "from those its threshold was set with)")
        precision = "f32"
    config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision}
    if streams > 1:
        config["NUM_STREAMS"] = streams
    else:
        config["PERFORMANCE_HINT"] = "LATENCY"
    if profile:
        config["PERF_COUNT"] = True
    return ov.Core().compile_model(model, "CPU", config)


class FeatureExtractor:
    """Patch features of letterboxed u8 BGR NHWC batches (teaching), one array per level.

    With ``record_ranges`` the same pass also records the range of every convolution's activation input
    (`activation_ranges`: what the ``int8`` scorer quantises them to).
    """

    def __init__(self, spec: FeatureSpec | Sequence[FeatureSpec], width: int, height: int,
                 precision: str = "f32", record_ranges: bool = False) -> None:
        self.levels = as_levels(spec)
        self.spec = self.levels[0]
        model = cached_feature_model(self.levels, height, width)
        self._ranges: int8_graph.RangeTracker | None = None
        if record_ranges:
            self._ranges = int8_graph.RangeTracker(len(model.outputs), len(int8_graph.activation_inputs(model)))
            model = int8_graph.with_range_outputs(model)
        self._compiled = compile_for_cpu(model, precision)
        self._request = self._compiled.create_infer_request()

    def all_levels(self, batch_u8: np.ndarray) -> list[np.ndarray]:
        """One (N, gh, gw, C) float32 array per level."""
        self._request.infer({0: batch_u8})
        if self._ranges is not None:
            self._ranges.update(self._request)
        return [np.array(self._request.get_output_tensor(i).data).transpose(0, 2, 3, 1).copy()
                for i in range(len(self.levels))]

    def __call__(self, batch_u8: np.ndarray) -> np.ndarray:
        """(N, gh, gw, C) float32 features of the first level."""
        return self.all_levels(batch_u8)[0]

    def activation_ranges(self) -> list[tuple[float, float]]:
        """(low, high) of every convolution's activation input over the batches seen (``record_ranges``).

        Raises:
            ValueError: Made without ``record_ranges``, or no batch seen yet.
        """
        if self._ranges is None:
            raise ValueError("anomaly: this feature extractor does not record activation ranges")
        return self._ranges.ranges()


#: Where the int8 distances clamp a query's (centred, per-channel scaled) features: this many times the
#: bank's own largest magnitude per channel (`_Int8Bank`).
QUERY_RANGE = 2.0
#: Bytes of one chunk of the nearest-neighbour product (f32 query rows x bank rows): the product is computed a
#: chunk of query rows at a time, each chunk reduced to its nearest rows while it is still in the core's cache
#: (1 MiB: a Zen 4 core's L2), instead of the whole product written out and read back (the fine level of a
#: 320 x 320 frame: 1600 x 3200 x 4 B = 20 MB).
PRODUCT_CHUNK_BYTES = 1 << 20


def product_rows(bank_rows: int) -> int:
    """Query rows (of one frame) per chunk of the product against a bank of ``bank_rows``: a multiple of 16
    that keeps the chunk within `PRODUCT_CHUNK_BYTES`, at least 16."""
    return max(16, PRODUCT_CHUNK_BYTES // (4 * max(1, bank_rows)) // 16 * 16)


def _level_scores(ops: Any, feats: Any, grid: tuple[int, int], bank: np.ndarray | Bands, raw_threshold: float,
                  int8: bool = False, divisors: np.ndarray | None = None, whitening: np.ndarray | None = None,
                  edge: int = 0) -> Any:
    """[N, gh, gw] nearest-neighbour distance of every patch of ``feats`` [N, C, gh, gw] to ``bank`` (K, C),
    divided by ``raw_threshold`` (and by each cell's own divisor where ``divisors`` (gh, gw) is given: one
    constant per cell in the same Multiply): a MatMul against the bank and a ReduceMin over it per chunk of
    `product_rows` patches (``int8``: the products in int8, see `_Int8Bank`). With ``whitening`` ((C + 1, D),
    `patchcore.whitening`) the patches are first whitened (the bank was taught whitened).
    ``edge`` cells along each side are not scored: 0 in the map (the image score leaves them out). A whitening
    (C + 1, D) with D < C also projects the patches to the bank's D dimensions (`patchcore.whitening`). A banded
    ``bank`` (`patchcore.Bands`, an aligned part's): each band's scored rows are their own chunks, against that
    band's bank only."""
    if divisors is not None and np.shape(divisors) != grid:
        raise ValueError(f"anomaly: cell divisors {np.shape(divisors)} do not fit the level's grid {grid}")
    channels = feats.get_partial_shape()[1].get_length()  # an ov.Output
    full = grid
    if edge:
        feats = ops.slice(feats, ops.constant(np.array([edge, edge], np.int64)),
                          ops.constant(np.array([grid[0] - edge, grid[1] - edge], np.int64)),
                          ops.constant(np.array([1, 1], np.int64)), ops.constant(np.array([2, 3], np.int64)))
        grid = (grid[0] - 2 * edge, grid[1] - 2 * edge)
        if divisors is not None:
            divisors = np.asarray(divisors)[edge:full[0] - edge, edge:full[1] - edge]
    n_c_p = ops.reshape(feats, ops.constant(np.array([0, 0, -1], np.int64)), special_zero=True)
    queries = ops.transpose(n_c_p, ops.constant(np.array([0, 2, 1], np.int64)))  # [N, P, C]
    width = bank_width(bank)
    if whitening is None and channels != width:
        raise ValueError(f"anomaly: {channels} feature channels: a bank of {width} does not fit them")
    if whitening is not None:
        if whitening.shape != (channels + 1, width):
            raise ValueError(f"anomaly: whitening {whitening.shape} does not fit {channels} feature channels and a "
                             f"bank of {width} channels")
        product = ops.matmul(queries, ops.constant(np.ascontiguousarray(whitening[1:], np.float32)), False, False)
        queries = ops.subtract(product, ops.constant(whitening[:1][None].astype(np.float32)))
    if isinstance(bank, Bands):  # each band's scored rows against its own bank, in order
        if band_count(full[0], bank.height) != len(bank.banks):
            raise ValueError(f"anomaly: {len(bank.banks)} bands of {bank.height} rows do not fit a grid of {full[0]} "
                             "rows")
        banks = [np.ascontiguousarray(b, np.float32) for b in bank.banks]
        union = np.concatenate(banks)  # one centring and scale for every band: the queries are quantised once
        spans = [bank.span(b, full[0]) for b in range(len(banks))]
        cells = [(min(stop, full[0] - edge) - max(start, edge)) * grid[1] for start, stop in spans]
        parts = [(_Int8Bank(ops, b, union) if int8 else _F32Bank(ops, b), n) for b, n in zip(banks, cells) if n > 0]
    else:
        flat_bank = np.ascontiguousarray(bank, np.float32)
        parts = [(_Int8Bank(ops, flat_bank) if int8 else _F32Bank(ops, flat_bank), grid[0] * grid[1])]
    queries, q2 = parts[0][0].queries(queries)
    pieces = []  # (side, query rows): each part cut into chunks of `product_rows`
    for side, patches in parts:
        rows = product_rows(side.rows)
        pieces += [(side, min(rows, patches - start)) for start in range(0, patches, rows)]
    chunks = ops.variadic_split(queries, ops.constant(np.int64(1)),
                                ops.constant(np.array([n for _, n in pieces], np.int64)))
    nearest = ops.concat([_chunk_nearest(ops, side, chunks.output(i), n, width)
                          for i, (side, n) in enumerate(pieces)], 1)
    dist = ops.sqrt(ops.maximum(ops.add(nearest, q2), ops.constant(np.float32(0.0))))
    factor: np.ndarray
    if divisors is None:
        factor = np.array(1.0 / raw_threshold, np.float32)
    else:
        factor = (1.0 / (raw_threshold * np.asarray(divisors, np.float64))).astype(np.float32).reshape(1, -1)
    scaled = ops.multiply(dist, ops.constant(factor))
    maps = ops.reshape(scaled, ops.constant(np.array([-1, *grid], np.int64)), special_zero=False)
    if not edge:
        return maps
    pads = ops.constant(np.array([0, edge, edge], np.int64))
    return ops.pad(maps, pads, pads, "constant", ops.constant(np.float32(0.0)))


def _chunk_nearest(ops: Any, side: _F32Bank | _Int8Bank, chunk: Any, rows: int, channels: int) -> Any:
    """[N, rows] of ``side.nearest`` over a chunk [N, rows, C] of the queries, the product taken 2-D ([N x rows, C]):
    OpenVINO fuses the bank's norms into the 2-D product as its bias, where it adds them in a pass of its own
    over a 3-D one."""
    flat = ops.reshape(chunk, ops.constant(np.array([-1, channels], np.int64)), False)
    return ops.reshape(side.nearest(flat), ops.constant(np.array([-1, rows], np.int64)), False)


class _F32Bank:
    """The bank's side of the f32 product: ``nearest`` is min over the bank of ||b||^2 - 2 q.b."""

    def __init__(self, ops: Any, bank: np.ndarray) -> None:
        self.ops = ops
        self.rows = len(bank)
        self.weights = ops.constant(np.ascontiguousarray((-2.0 * bank).T))  # [C, K]
        self.norms = ops.constant(np.einsum("ij,ij->i", bank, bank))

    def queries(self, queries: Any) -> tuple[Any, Any]:
        """(the queries as the product takes them, their squared norms [N, P])."""
        ops = self.ops
        return queries, ops.reduce_sum(ops.multiply(queries, queries), ops.constant(np.array([2], np.int64)), False)

    def nearest(self, queries: Any) -> Any:
        """[M] min over the bank of ||b||^2 - 2 q.b, for queries [M, C] (as `queries` returned them)."""
        ops = self.ops
        d2 = ops.add(ops.matmul(queries, self.weights, False, False), self.norms)  # [M, K]
        return ops.reduce_min(d2, ops.constant(np.array([1], np.int64)), False)


class _Int8Bank:
    """The bank's side of the int8 product: ``nearest`` is min over the bank of ||b||^2 - 2 q.b, the product in int8.

    Queries and bank are centred on the bank's mean (the distances do not change; the products shrink)
    and each channel is divided by the bank's largest magnitude in it (the bank multiplied by it, so the
    products do not change either): every channel then spans [-1, 1] in the bank, and one per-tensor
    int8 range (+-`QUERY_RANGE`) fits the queries; the bank is quantised per row. OpenVINO runs the
    MatMul as an int8 GEMM (VNNI) whose output comes out in f32, which also spares the bf16 -> f32
    reorder of the whole product that the bf16 graph pays before its ReduceMin. ``reference``: the rows the centring
    and scale are taken from (default the bank's own; a banded level's every band, `patchcore.Bands`: its queries
    are quantised once for all bands)."""

    def __init__(self, ops: Any, bank: np.ndarray, reference: np.ndarray | None = None) -> None:
        self.ops = ops
        self.rows = len(bank)
        reference = bank if reference is None else reference
        self.mean = reference.mean(axis=0)
        centred = bank - self.mean
        self.scale = np.maximum(np.abs(reference - self.mean).max(axis=0), 1e-6).astype(np.float32)
        weights = (-2.0 * centred * self.scale).astype(np.float32)  # [K, C]
        w_max = np.maximum(np.abs(weights).max(axis=1, keepdims=True), 1e-12).astype(np.float32)
        self.weights = ops.fake_quantize(ops.constant(weights), ops.constant(-w_max), ops.constant(w_max),
                                         ops.constant(-w_max), ops.constant(w_max), 255)
        self.norms = ops.constant(np.einsum("ij,ij->i", centred, centred).astype(np.float32))

    def queries(self, queries: Any) -> tuple[Any, Any]:
        """(the centred, scaled queries quantised, their centred squared norms [N, P]).

        Quantised once, before they are split into chunks: one pass fused with the centring and scaling
        instead of one per chunk; OpenVINO carries the u8 through the split into each chunk's product."""
        ops = self.ops
        q = ops.subtract(queries, ops.constant(self.mean.reshape(1, 1, -1).astype(np.float32)))
        q2 = ops.reduce_sum(ops.multiply(q, q), ops.constant(np.array([2], np.int64)), False)
        lim, neg = ops.constant(np.float32(QUERY_RANGE)), ops.constant(np.float32(-QUERY_RANGE))
        scaled = ops.multiply(q, ops.constant((1.0 / self.scale).reshape(1, 1, -1)))
        return ops.fake_quantize(scaled, neg, lim, neg, lim, 256), q2

    def nearest(self, queries: Any) -> Any:
        """[M] min over the bank of ||b||^2 - 2 q.b, for queries [M, C] (as `queries` returned them)."""
        ops = self.ops
        d2 = ops.add(ops.matmul(queries, self.weights, False, True), self.norms)  # [M, K]
        return ops.reduce_min(d2, ops.constant(np.array([1], np.int64)), False)


def _largest(ops: Any, levels: Sequence[Any], grids: Sequence[tuple[int, int]]) -> Any:
    """The levels' [N, gh, gw] score maps, coarser ones repeated onto the first (finest) grid, the largest taken."""
    maps, top = levels[0], grids[0]
    for level, grid in zip(levels[1:], grids[1:]):
        if grid != top:  # each coarse cell covers whole fine cells: repeat it (nearest), no blur
            level = ops.interpolate(ops.unsqueeze(level, ops.constant(np.int64(1))),
                                    ops.constant(np.array(top, np.int64)), "nearest", "sizes",
                                    axes=ops.constant(np.array([2, 3], np.int64)),
                                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            level = ops.squeeze(level, ops.constant(np.array([1], np.int64)))
        maps = ops.maximum(maps, level)
    return maps


def _per_level(divisors: Sequence[np.ndarray | None] | None, levels: int, what: str = "maps of cell divisors"
               ) -> list[np.ndarray | None]:
    """One map of cell divisors (or whitening) per level (None each: every cell alike, no whitening), checked
    against the levels' count."""
    if divisors is None:
        return [None] * levels
    if len(divisors) != levels:
        raise ValueError(f"anomaly: {levels} feature levels, {len(divisors)} {what}")
    return list(divisors)


def _inner_only(ops: Any, maps: Any, edge: int, grid: tuple[int, int]) -> Any:
    """``maps`` [N, gh, gw] with ``edge`` cells along each side set to 0 (a coarse level that still covers
    inner fine cells is repeated onto edge ones; the map shows only what the image score reads). ``edge``: the
    first level's of `level_edges` (0 where it left none out)."""
    if not edge:
        return maps
    mask = np.zeros((1, *grid), np.float32)
    mask[:, edge:grid[0] - edge, edge:grid[1] - edge] = 1.0
    return ops.multiply(maps, ops.constant(mask))


def level_edges(edge: int, grids: Sequence[tuple[int, int]]) -> list[int]:
    """Per level, the cells along each side left unscored: ``edge`` cells of the first (finest) grid, in each
    level's own cells (rounded down: a coarse cell that covers any inner fine cell is scored); none where the
    edge would leave no inner cell."""
    top = grids[0]
    if edge <= 0 or 2 * edge >= min(top):
        return [0] * len(grids)
    return [edge * g[0] // top[0] for g in grids]


def distance_model(banks: Sequence[np.ndarray | Bands], raw_threshold: Sequence[float],
                   grids: Sequence[tuple[int, int]], frames: int = -1,
                   divisors: Sequence[np.ndarray] | None = None,
                   whitening: Sequence[np.ndarray | None] | None = None, edge: int = 0) -> Any:
    """The scoring graph's second half on its own: one input [N, C, gh, gw] per level (the feature model's
    outputs; N = ``frames``, -1: any), the one output ``patch_scores`` [N, gh, gw] (as `scoring_model`'s)."""
    import openvino as ov
    import openvino.opset13 as ops

    whitenings = _per_level(whitening, len(banks), "whitenings")
    params = [ops.parameter([frames, bank_width(b) if w is None else len(w) - 1, *g], ov.Type.f32, name=f"level{i}")
              for i, (b, g, w) in enumerate(zip(banks, grids, whitenings))]
    edges = level_edges(edge, grids)
    levels = [_level_scores(ops, p.output(0), g, b, float(r), divisors=d, whitening=w, edge=e)
              for p, g, b, r, d, w, e in zip(params, grids, banks, raw_threshold, _per_level(divisors, len(banks)),
                                             whitenings, edges)]
    maps = _inner_only(ops, _largest(ops, levels, grids), edges[0], grids[0])
    maps.output(0).get_tensor().set_names({"patch_scores"})
    return ov.Model([maps.output(0)], params, "anomaly_distances")


def scoring_model(features: Any, bank: np.ndarray | Sequence[np.ndarray | Bands], raw_threshold: float | Sequence[float],
                  grids: Sequence[tuple[int, int]] | None = None, int8: bool = False,
                  divisors: Sequence[np.ndarray] | None = None,
                  whitening: Sequence[np.ndarray | None] | None = None, edge: int = 0) -> Any:
    """``features`` (an ov.Model with one output [N, C, gh, gw] per level; changed in place and returned)
    followed by each level's nearest-neighbour distance to its bank (K, C), divided by its raw threshold
    (and each cell by its own divisor, one (gh, gw) map per level, where ``divisors`` is given);
    coarser levels repeated onto the first (finest) level's grid, and the largest of the levels taken:
    the one output ``patch_scores`` [N, gh, gw]. ``int8``: the distances' products in int8 (`_Int8Bank`).
    ``whitening``: per level, the (C + 1, D) transform its patches are whitened by first, or None. ``edge``:
    cells of the first grid along each side that are not scored (0 in the map; `level_edges`)."""
    import openvino.opset13 as ops

    banks = [bank] if isinstance(bank, np.ndarray) else list(bank)
    raws = [float(raw_threshold)] if isinstance(raw_threshold, (int, float)) else [float(r) for r in raw_threshold]
    results = list(features.get_results())
    if not len(results) == len(banks) == len(raws):
        raise ValueError(f"anomaly: {len(results)} feature levels, {len(banks)} banks, {len(raws)} thresholds")
    per_cell = _per_level(divisors, len(banks))
    whiten = _per_level(whitening, len(banks), "whitenings")
    if grids is None:
        grids = [tuple(int(d) for d in r.get_input_partial_shape(0).to_shape()[2:]) for r in results]  # type: ignore[misc]
    levels = []
    edges = level_edges(edge, grids)
    for result, lv_bank, raw, grid, div, wh, e in zip(results, banks, raws, grids, per_cell, whiten, edges):
        feats = result.input_value(0)
        levels.append(_level_scores(ops, feats, grid, lv_bank, raw, int8, div, wh, e))
        feats.get_tensor().set_names(set())
    maps = _inner_only(ops, _largest(ops, levels, grids), edges[0], grids[0])
    assert maps is not None
    maps.output(0).get_tensor().set_names({"patch_scores"})
    results[0].input(0).replace_source_output(maps.output(0))  # the model's one output is now the scores
    for extra in results[1:]:
        features.remove_result(extra)
    features.validate_nodes_and_infer_types()
    return features


#: The scorer's precisions: the whole graph in f32 or bf16, or the features in bf16 and the distances in f32
#: (two compiled models, the second run by `PendingScores.wait`), or ``int8-distances``: the graph in bf16
#: (f32 where the CPU has no bf16) with the nearest-neighbour products in int8 (`_Int8Bank`), or ``int8``:
#: that, and the backbone's convolutions in int8 too, at the activation ranges recorded when it was taught
#: (`int8.quantized`; the card's ``[runtime] activation_ranges``).
PRECISIONS = ("f32", "bf16", "bf16-features", "int8-distances", "int8")
#: The precisions whose scorer needs the card's activation ranges.
NEEDS_RANGES = ("int8",)


class PendingScores:
    """A batch inside the runtime (one request per frame of it); `wait` returns its `ScoreBatch`.

    Args:
        parts: Per part of the batch, in order: its request, its frame count, and (``bf16-features``) the
            request of the f32 distances, run on the features when the part is waited for.
        edge: Grid cells along each side left out of the image score.
        beside_maps: The numpy levels' (N, gh, gw) score maps (the tone and the appearance level's, the larger:
            `AnomalyScorer._beside_maps`), being computed, or None.
        aligned: The frames were warped to the model's reference pose (`alignment.Alignment`): their (N, 3, 3)
            matrices and the first level's grid stride, to bring the maps back to the frames (`alignment.to_frame`),
            and (N,) whether each one's pose was found (`ScoreBatch.posed`); None: scored as they came.
    """

    def __init__(self, parts: Sequence[tuple[Any, int, Any]], edge: int, beside_maps: Future[np.ndarray] | None = None,
                 aligned: tuple[np.ndarray, int, np.ndarray] | None = None) -> None:
        self._parts = list(parts)
        self._edge = edge
        self._beside = beside_maps
        self._aligned = aligned
        self._result: ScoreBatch | None = None
        self._error: Exception | None = None

    def wait(self) -> ScoreBatch:
        """The batch's scores (waited for and read once, a failure kept too: its requests are free for another
        batch afterwards).

        Raises:
            RuntimeError: The runtime failed on the batch (OpenVINO's error), again at every call.
        """
        if self._error is not None:
            raise self._error
        if self._result is None:
            try:
                self._result = self._read()
            except Exception as exc:
                self._error = exc
                raise
            finally:
                self._parts = []
        return self._result

    def _read(self) -> ScoreBatch:
        maps_of = []
        for request, n, distances in self._parts:
            request.wait()
            out = request
            if distances is not None:  # bf16-features: the f32 distances on the features' own tensors
                distances.infer([request.get_output_tensor(i) for i in range(len(request.model_outputs))])
                out = distances
            maps_of.append(np.array(out.get_output_tensor(0).data[:n], copy=True))
        maps = maps_of[0] if len(maps_of) == 1 else np.concatenate(maps_of)
        if self._beside is not None:  # the numpy levels' maps, on the first level's grid: the larger taken
            np.maximum(maps, self._beside.result(), out=maps)
        if self._aligned is not None:  # nothing scored next to what the camera did not see
            matrices, stride, _ = self._aligned
            maps *= seen_cells(matrices, maps.shape[2] * stride, maps.shape[1] * stride, stride)
        e = self._edge
        inner = maps[:, e:maps.shape[1] - e, e:maps.shape[2] - e] if e else maps
        scores = inner.reshape(len(maps), -1).max(axis=1)
        if self._aligned is None:
            return ScoreBatch(scores, maps)
        matrices, stride, posed = self._aligned  # the scores the aligned frames', the maps on the frames as they came
        return ScoreBatch(scores, to_frame(maps, matrices, stride), posed)


class AnomalyScorer:
    """Scores batches of letterboxed frames against one anomaly model (see the module's example).

    Args:
        spec: The backbone's feature spec, or one per level (the card's).
        width: Model input width (the card's).
        height: Model input height.
        bank: (K, C) memory bank, or one per level.
        raw_threshold: The distance that maps to score 1.0, or one per level (a patch's score is the
            largest of its levels' distance / raw threshold).
        precision: One of `PRECISIONS` (the card's ``[runtime] precision``; ``f32`` for cards without it).
            ``bf16-features`` compiles the feature extractor in bf16 and the nearest-neighbour distances as
            a second model in f32, run when the batch is waited for. ``int8-distances`` runs the features
            in bf16 (where the CPU has it) and the distances' products in int8; ``int8`` quantises the
            backbone's convolutions too, at ``activation_ranges``.
        depth: Batches that may be inside the runtime at once.
        streams: OpenVINO streams the frames of a batch are shared among, each stream running one frame at a
            time on its own share of the cores (default `batch_streams`). Each frame is its own request of a
            graph compiled for one frame: static shapes, and one frame's product chunks stay in its core's
            cache (`PRODUCT_CHUNK_BYTES`).
        edge: Grid cells along each side of the input left out of the image score; they are not scored at
            all (0 in the maps: the heat map shows only what the verdict reads). Patches at the frame's edge
            see the convolutions' zero padding and whatever the edge cuts, and vary more than the rest: on the
            three rendered families 86-98% of good images had their worst patch within 2 cells of the edge.
            PatchCore's reference setup leaves the edge out too (resize to 256, centre crop 224).
        activation_ranges: One (low, high) per backbone convolution (``int8``; the card's
            ``[runtime] activation_ranges``, `FeatureExtractor.activation_ranges` when it was taught).
        profile: Per-layer counters on (`profiling`).
        cell_divisors: One (gh, gw) map per level that each cell's distance is divided by, before the raw
            threshold (per-position normalisation, the card's ``[position]``); None: every cell alike.
        whitening: Per level, the (C + 1, C) transform (`patchcore.whitening`) its patches are whitened by before
            the distances (the card's ``[whitening]``), or None for a level taught plain; None: no level.
        tone: The model's tone level (`tone.ToneLevel`, the card's ``[tone]``: a texture's or a part's), scored in
            numpy in a thread of its own while the graph runs, its map on the first level's grid; None: none.
        alignment: A part's model's alignment (`alignment.Alignment`, the card's ``[alignment]``): each frame is
            warped to the good parts' pose before it is scored, the maps warped back; None: frames as they come.
        appearance: An aligned part's appearance level (`appearance.AppearanceLevel`, the card's ``[appearance]``),
            scored in numpy in the tone level's thread (`_beside_maps`), on the aligned frames; None: none.
    """

    def __init__(self, spec: FeatureSpec | Sequence[FeatureSpec], width: int, height: int,
                 bank: np.ndarray | Sequence[np.ndarray | Bands], raw_threshold: float | Sequence[float],
                 precision: str = "f32", depth: int = 2, edge: int = 0,
                 activation_ranges: Sequence[Sequence[float]] | None = None, profile: bool = False,
                 streams: int | None = None, cell_divisors: Sequence[np.ndarray] | None = None,
                 whitening: Sequence[np.ndarray | None] | None = None, tone: ToneLevel | None = None,
                 alignment: Alignment | None = None, appearance: AppearanceLevel | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"anomaly: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision in NEEDS_RANGES and not activation_ranges:
            raise ValueError(f"anomaly: precision {precision!r} needs the activation ranges recorded when the model "
                             "was taught (the card's [runtime] activation_ranges); teach it again")
        levels = as_levels(spec)
        grids = [(height // lv.grid_stride, width // lv.grid_stride) for lv in levels]
        if tone is not None and tone.stride != levels[0].grid_stride:
            raise ValueError(f"anomaly: the tone level's cells ({tone.stride} px) are not the first level's "
                             f"({levels[0].grid_stride} px)")
        if appearance is not None and (alignment is None or appearance.stride != levels[0].grid_stride):
            raise ValueError("anomaly: an appearance level scores frames aligned to the good parts' pose, in the first "
                             f"level's cells ({levels[0].grid_stride} px)")
        self.tone = tone
        self.appearance = appearance
        self.alignment = alignment
        self._stride = levels[0].grid_stride
        # the numpy levels' maps (tone, appearance) in a thread of their own: start() returns at once, as without them,
        # and the caller's next batch does not wait behind them (their CPU, 0.4-0.6 ms a frame for the tone level, is
        # shared with the graph's streams either way)
        self._beside_thread = (ThreadPoolExecutor(1, thread_name_prefix="anomaly-beside")
                               if tone is not None or appearance is not None else None)
        self.width, self.height = width, height
        self.edge = edge
        self.precision = precision
        self.streams = batch_streams() if streams is None else max(1, streams)
        features = cached_feature_model(levels, height, width)
        features.reshape({features.inputs[0]: [1, height, width, 3]})  # one frame per request
        self._distances: list[list[Any]] = []
        self._distances_model: Any = None
        if precision == "bf16-features":
            banks = [bank] if isinstance(bank, np.ndarray) else list(bank)
            raws = [float(raw_threshold)] if isinstance(raw_threshold, (int, float)) else list(raw_threshold)
            self._compiled = compile_for_cpu(features, "bf16", profile, self.streams)
            distances = distance_model(banks, raws, grids, frames=1, divisors=cell_divisors, whitening=whitening,
                                       edge=edge)
            self._distances_model = compile_for_cpu(distances, "f32", profile, self.streams)
            self._distances = [[] for _ in range(depth)]
        else:
            int8 = precision in ("int8-distances", "int8")
            if precision == "int8":
                assert activation_ranges is not None
                features = int8_graph.quantized(features, activation_ranges)
            model = scoring_model(features, bank, raw_threshold, grids, int8=int8, divisors=cell_divisors,
                                  whitening=whitening, edge=edge)
            self._compiled = compile_for_cpu(model, ("bf16" if cpu_has_bf16() else "f32") if int8 else precision, profile,
                                             self.streams)
        self._requests: list[list[Any]] = [[] for _ in range(depth)]
        self._pending: list[PendingScores | None] = [None] * depth  # each slot's last batch
        self._grow(0, self.streams)
        self._next = 0

    def _grow(self, slot: int, frames: int) -> None:
        """Requests for ``frames`` frames in batch slot ``slot`` (made as batches need them, then kept)."""
        requests = self._requests[slot]
        while len(requests) < frames:
            requests.append(self._compiled.create_infer_request())
            if self._distances:
                self._distances[slot].append(self._distances_model.create_infer_request())

    @classmethod
    def for_model(cls, model: AnomalyModel, *, precision: str | None = None, depth: int = 2) -> AnomalyScorer:
        """The scorer of a loaded model at its card's precision (or ``precision``), with its activation ranges."""
        ranges = model.card.get("runtime", {}).get("activation_ranges")
        return cls(model.spec, model.input_width, model.input_height, model.bank, model.raw_threshold,
                   precision or model.precision, depth=depth, edge=model.edge_cells, activation_ranges=ranges,
                   cell_divisors=model.cell_divisors, whitening=model.whitening, tone=model.tone,
                   alignment=model.alignment, appearance=model.appearance)

    def start(self, batch_u8: np.ndarray) -> PendingScores:
        """Start scoring ``batch_u8`` (u8 BGR, N x height x width x 3); returns at once."""
        if batch_u8.dtype != np.uint8 or batch_u8.shape[1:] != (self.height, self.width, 3) or not len(batch_u8):
            raise ValueError(f"anomaly: batch must be u8 (N, {self.height}, {self.width}, 3), got "
                             f"{batch_u8.dtype} {batch_u8.shape}")
        k = self._next
        requests = self._requests[k]
        self._next = (k + 1) % len(self._requests)
        earlier, self._pending[k] = self._pending[k], None
        if earlier is not None:  # the slot's earlier batch finishes and is read first: not waited for yet, it
            try:                 # would read this batch's scores from the requests it shares
                earlier.wait()
            except Exception:  # noqa: BLE001 - kept for that batch's own wait, which raises it
                log.debug("anomaly: an earlier batch failed; its waiter is told")
        n = len(batch_u8)
        self._grow(k, n)
        parts = []
        frames, aligned = batch_u8, None
        if self.alignment is not None:  # each frame warped, then started: the next one's pose found while it runs
            frames, aligned = np.empty_like(batch_u8), (np.empty((n, 3, 3)), self._stride, np.empty(n, bool))
        for i in range(n):  # the plugin runs them on its streams as they free up
            if aligned is not None:
                assert self.alignment is not None
                aligned[0][i], aligned[2][i] = self.alignment.warp_into(batch_u8[i], frames[i])
            requests[i].start_async({0: np.ascontiguousarray(frames[i:i + 1])})
            parts.append((requests[i], 1, self._distances[k][i] if self._distances else None))
        beside_maps = None
        if self._beside_thread is not None:  # on a copy: the caller may refill its batch
            beside_maps = self._beside_thread.submit(self._beside_maps, frames if aligned is not None
                                                     else np.array(batch_u8, copy=True))
        pending = self._pending[k] = PendingScores(parts, self.edge, beside_maps, aligned)
        return pending

    def _beside_maps(self, frames: np.ndarray) -> np.ndarray:
        """The numpy levels' (N, gh, gw) score maps of (aligned) ``frames``: the tone level's, the appearance level's,
        the larger of the two."""
        maps = [level.maps(frames) for level in (self.tone, self.appearance) if level is not None]
        return maps[0] if len(maps) == 1 else np.maximum(maps[0], maps[1])

    def score(self, batch_u8: np.ndarray) -> ScoreBatch:
        """Score ``batch_u8`` and wait for it."""
        return self.start(batch_u8).wait()

    def layer_precisions(self) -> dict[str, set[str]]:
        """The compiled graph's layer types (``Convolution``, ``FullyConnected``, ...) and the precisions
        they run in (``u8``/``i8`` where the int8 kernels took them)."""
        out: dict[str, set[str]] = {}
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            out.setdefault(info["layerType"].astype(str), set()).add(info["runtimePrecision"].astype(str))
        return out

    def layer_counts(self) -> dict[str, int]:
        """How many layers of each type (``Convolution``, ``FullyConnected``, ...) the compiled graph has."""
        out: dict[str, int] = {}
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            kind = op.get_rt_info()["layerType"].astype(str)
            out[kind] = out.get(kind, 0) + 1
        return out

    def profiling(self) -> list[Any]:
        """The per-layer counters of the first request's last frame (OpenVINO ``ProfilingInfo``; ``profile``)."""
        return list(self._requests[0][0].get_profiling_info())
