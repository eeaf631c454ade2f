"""PatchCore in numpy: a memory bank of good patch features, coreset-subsampled, and nearest-neighbour scores.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (CVPR 2022): a patch is as anomalous
as its distance to the nearest good patch; an image as its worst patch. The bank is thinned by greedy
k-center selection (each step takes the patch farthest from those chosen so far), run on a random
projection of the features, which keeps the bank's coverage at a fraction of its size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Rows of queries per distance chunk (bounds the temporary matrix to chunk x bank floats).
CHUNK = 4096


def greedy_coreset(features: np.ndarray, n: int, *, seed: int = 0, proj_dim: int = 128,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Indices of ``n`` rows of ``features`` chosen by greedy k-center selection.

    Args:
        features: (N, D) float32 patch features.
        n: How many to keep (clipped to N).
        seed: Seeds the projection and the first centre.
        proj_dim: Johnson-Lindenstrauss projection width the distances are computed in (0: none).
        progress: Called with (chosen, n) now and then.

    Returns:
        (n,) int64 indices, in the order chosen.
    """
    count = features.shape[0]
    n = min(n, count)
    rng = np.random.default_rng(seed)
    x = features
    if proj_dim and features.shape[1] > proj_dim:
        proj = rng.normal(0, 1.0 / np.sqrt(proj_dim), (features.shape[1], proj_dim)).astype(np.float32)
        x = features @ proj
    x = np.ascontiguousarray(x, np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(n, np.int64)
    chosen[0] = int(rng.integers(count))
    # squared distance of every row to its nearest chosen centre
    nearest = np.maximum(sq - 2.0 * (x @ x[chosen[0]]) + sq[chosen[0]], 0.0)
    step = max(1, n // 20)
    for k in range(1, n):
        c = int(np.argmax(nearest))
        chosen[k] = c
        np.minimum(nearest, np.maximum(sq - 2.0 * (x @ x[c]) + sq[c], 0.0), out=nearest)
        if progress is not None and k % step == 0:
            progress(k, n)
    return chosen


def nearest_distances(queries: np.ndarray, bank: np.ndarray, bank_sq: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance of each query row to its nearest bank row (exact; matmul in chunks).

    Args:
        queries: (M, D) float32.
        bank: (K, D) float32.
        bank_sq: The bank's squared row norms, when already known.

    Returns:
        (M,) float32 distances.
    """
    if bank_sq is None:
        bank_sq = np.einsum("ij,ij->i", bank, bank)
    out = np.empty(queries.shape[0], np.float32)
    for start in range(0, queries.shape[0], CHUNK):
        q = queries[start:start + CHUNK]
        d2 = bank_sq[None, :] - 2.0 * (q @ bank.T)
        out[start:start + CHUNK] = d2.min(axis=1) + np.einsum("ij,ij->i", q, q)
    return np.sqrt(np.maximum(out, 0.0))


def leave_one_out_maps(images: list[np.ndarray], bank: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each teaching image's patch distances against the bank without the rows it contributed.

    Args:
        images: One (P, D) float32 array of patches per teaching image (all of them the same P).
        bank: (K, D) float32 memory bank.
        owner: (K,) index into ``images`` of the image each bank row came from.

    Returns:
        (len(images), P) float32 nearest-neighbour distances.
    """
    bank_sq = np.einsum("ij,ij->i", bank, bank)
    out = np.empty((len(images), len(images[0]) if images else 0), np.float32)
    for i, q in enumerate(images):
        d2 = bank_sq[None, :] - 2.0 * (q @ bank.T)
        d2[:, owner == i] = np.inf
        out[i] = np.sqrt(np.maximum(d2.min(axis=1) + np.einsum("ij,ij->i", q, q), 0.0))
    return out


#: Folds of the threshold's cross-validated good scores (`cross_validated_maps`). Validation split (int8, 200 taught,
#: good only; false reject / escape, the eight colour and Mono8 sets of fabric, label, plate and wood): scored
#: leave-one-out against the taught bank, the highest good score stood 2-7% above the highest of 200 unseen good
#: parts (fabric 1.000 against 0.934) and let a mean 18.0% of the anomalies through at 0% false reject; 10 folds,
#: the highest x 1.02 (`threshold.GOOD_MARGIN`): 13.6% at 0-1.0%; 5 folds 15.7% at 0-1.5%.
FOLDS = 10


def fold_of(n: int, folds: int = FOLDS) -> np.ndarray:
    """(n,) each image's fold, image i in fold i mod min(folds, n): consecutive images (a run's drift) spread out."""
    return np.arange(n) % max(1, min(folds, n))


def cross_validated_maps(images: list[np.ndarray], candidates: np.ndarray, owners: np.ndarray, rows: int,
                         folds: int = FOLDS, seed: int = 0,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Each good image's patch distances to a bank that never saw it: the images split into folds (`fold_of`),
    for each fold a greedy coreset of ``rows`` rows of the other folds' ``candidates``, its images scored on it.

    Leave-one-out against the taught bank (`leave_one_out_maps`) is biased high in the tail: where two good
    images share a rare patch, the coreset keeps one copy, and its owner, its rows taken out, looks as unseen-of
    as a truly unique patch, though an unseen good part with that patch would find the copy. Here each fold's
    bank is chosen as teaching would choose it without that fold, so an image's scores are those of an unseen
    good part against a bank taught from the other (folds - 1) / folds of the images.

    Args:
        images: One (P, D) float32 array of patches per good image.
        candidates: (M, D) float32 rows the banks are chosen from (each image's first coreset stage).
        owners: (M,) index into ``images`` of each candidate's image.
        rows: Each fold's bank size (the taught bank's).
        folds: How many folds (at most one per image).
        seed: Seeds the coresets (fold f with ``seed + f + 1``).
        progress: Called with (folds done, folds).

    Returns:
        (len(images), P) float32 nearest-neighbour distances.
    """
    def without(keep: np.ndarray, f: int) -> Callable[[np.ndarray], np.ndarray]:
        pool = candidates[keep]
        bank = np.ascontiguousarray(pool[greedy_coreset(pool, rows, seed=seed + f + 1, proj_dim=64)])
        bank_sq = np.einsum("ij,ij->i", bank, bank)
        return lambda patches: nearest_distances(patches, bank, bank_sq)

    return _by_folds(images, owners, folds, without, progress)


def _by_folds(images: list[np.ndarray], owners: np.ndarray, folds: int,
              without: Callable[[np.ndarray, int], Callable[[np.ndarray], np.ndarray]],
              progress: Callable[[int, int], None] | None) -> np.ndarray:
    """Each image's patch distances, fold by fold (`fold_of`): ``without(keep, f)`` chooses fold f's bank from the
    candidates ``keep`` marks (those of the other folds' images, by ``owners``) and gives its nearest distances."""
    if len(images) < 2:
        raise ValueError("cross-validated scores need at least 2 images")
    fold = fold_of(len(images), folds)
    count = int(fold.max()) + 1
    out = np.empty((len(images), len(images[0])), np.float32)
    for f in range(count):
        nearest = without(fold[owners] != f, f)
        for i in np.flatnonzero(fold == f):
            out[i] = nearest(images[i])
        if progress is not None:
            progress(f + 1, count)
    return out


#: An aligned part's finest level keeps its bank per band of grid rows (`Bands`): each band's patches are compared
#: only with the good patches taught within `BAND_REACH` rows of it. Every position of an aligned part has a look of
#: its own, so a query's nearest good patch lies near its own position, and a band's bank, its window's share of the
#: level's rows, costs that share of the nearest-neighbour products (`runtime._level_scores`). Validation split
#: (200 taught, int8, good only; image AUROC, false reject / escape; label, plate, label Mono8, plate Mono8), one bank
#: -> bands of 2 rows reaching 1 / 2 / 3 / 5 rows: label 0.9992, 0 / 1.5% -> 0.9984, 0 / 4.0% / 0.9996, 0 / 6.0% /
#: 0.9993, 1.5 / 2.0% / 0.9992, 0 / 1.5%; plate 0.9991, 1.0 / 1.0% -> 0.9995, 0 / 1.0% / 0.9996, 0 / 1.0% / 0.9995,
#: 0 / 1.5% / 0.9996, 0 / 1.0%; label Mono8 0.9139 -> 0.9151 / 0.9159 / 0.9196 / 0.9168 (escape 19.5-20.5% in all);
#: plate Mono8 0.9963 -> 0.9971 / 0.9962 / 0.9966 / 0.9981; bands of 4 rows reaching 2: plate false reject 4.5%.
#: Scoring time, side by side (label, 64 of its good parts, the whole scorer with alignment and tone level): 0.836x
#: at reach 3, 0.870x at reach 5. Reach 5 (40 px at 320) met every target there and leaves room for a real line's
#: print and placement to wander more than the renderer's.
BAND_HEIGHT = 2
BAND_REACH = 5


@dataclass(frozen=True, eq=False)
class Bands:
    """A level's memory bank kept per band of grid rows: band b scores the rows [b x ``height``, (b + 1) x
    ``height``) of the level's grid against ``banks[b]``, the good patches taught within ``reach`` rows of them
    (`band_banks`)."""

    height: int
    reach: int
    banks: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if self.height < 1 or self.reach < 0 or not self.banks:
            raise ValueError(f"bands: height {self.height}, reach {self.reach}, {len(self.banks)} banks")
        if len({b.shape[1] for b in self.banks}) != 1:
            raise ValueError("bands: the bands' banks differ in width")

    @property
    def width(self) -> int:
        """The banks' feature width."""
        return int(self.banks[0].shape[1])

    @property
    def rows(self) -> int:
        """Rows of all the bands' banks together."""
        return sum(len(b) for b in self.banks)

    def span(self, band: int, grid_rows: int) -> tuple[int, int]:
        """The grid rows band ``band`` scores: [start, stop)."""
        return band * self.height, min(grid_rows, (band + 1) * self.height)

    def nearest(self, patches: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """(P,) each patch's distance to the nearest row of its band's bank; ``patches`` (P, D), P = gh x gw, row-major."""
        if band_count(grid[0], self.height) != len(self.banks):
            raise ValueError(f"bands: {len(self.banks)} bands of {self.height} rows do not fit a grid of {grid[0]} rows")
        out = np.empty(len(patches), np.float32)
        for b, bank in enumerate(self.banks):
            start, stop = self.span(b, grid[0])
            cells = slice(start * grid[1], stop * grid[1])
            out[cells] = nearest_distances(patches[cells], bank)
        return out


def band_count(grid_rows: int, height: int) -> int:
    """How many bands of ``height`` rows cover ``grid_rows`` rows (the last may be shorter)."""
    return -(-grid_rows // height)


def band_window(band: int, grid_rows: int, height: int, reach: int) -> tuple[int, int]:
    """The grid rows band ``band``'s bank is taught from: its own, and ``reach`` more on each side."""
    return max(0, band * height - reach), min(grid_rows, (band + 1) * height + reach)


def band_banks(candidates: np.ndarray, rows: np.ndarray, grid_rows: int, size: int, *, height: int = BAND_HEIGHT,
               reach: int = BAND_REACH, seed: int = 0) -> Bands:
    """Each band's bank: a greedy coreset of the ``candidates`` (M, D) whose grid row (``rows``, (M,)) lies in its
    window (`band_window`), of ``size`` x the window's share of the grid's rows (the level's density of bank rows)."""
    banks = []
    for b in range(band_count(grid_rows, height)):
        start, stop = band_window(b, grid_rows, height, reach)
        pool = candidates[(rows >= start) & (rows < stop)]
        if not len(pool):
            raise ValueError(f"bands: no good patches in grid rows {start}-{stop - 1}")
        k = max(1, round(size * (stop - start) / grid_rows))
        banks.append(np.ascontiguousarray(pool[greedy_coreset(pool, k, seed=seed + b, proj_dim=64)]))
    return Bands(height, reach, tuple(banks))


def cross_validated_band_maps(images: list[np.ndarray], candidates: np.ndarray, owners: np.ndarray,
                              rows: np.ndarray, grid: tuple[int, int], size: int, *, height: int = BAND_HEIGHT,
                              reach: int = BAND_REACH, folds: int = FOLDS, seed: int = 0,
                              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """`cross_validated_maps` for a banded level: each fold's bands (`band_banks`) chosen from the other folds'
    candidates, as teaching chooses them; ``rows``: each candidate's grid row."""
    def without(keep: np.ndarray, f: int) -> Callable[[np.ndarray], np.ndarray]:
        bands = band_banks(candidates[keep], rows[keep], grid[0], size, height=height, reach=reach,
                           seed=seed + (f + 1) * 1000)
        return lambda patches: bands.nearest(patches, grid)

    return _by_folds(images, owners, folds, without, progress)


#: Per-position normalisation (`cell_divisors`): a cell's distance is divided by the mean + this many standard
#: deviations of the good images' leave-one-out distances in that cell, as PaDiM (Defard et al., 2020) and PNI
#: (Bae et al., 2023) condition a patch's normality on its position: a cell where good parts vary (a barcode's
#: end, a label's edge that moves with the placement) needs a larger distance to count than a plain one.
POSITION_SD = 3.0
#: No cell's divisor is below this share of its level's median divisor: a cell that every good image matches
#: exactly (letterbox padding, a masked region) would otherwise turn the scorer's own rounding (int8) into
#: anomalies, as PaDiM regularises each position's covariance (+ 0.01 I).
POSITION_FLOOR = 0.5
POSITION_RULE = (f"each cell's distance / (the mean + {POSITION_SD:g} sd of the good images' leave-one-out distances in "
                 f"that cell, at least {POSITION_FLOOR:g} x the level's median of those); the good images' "
                 "threshold scores each divided by the cells' divisors without that image")


def _floored(divisors: np.ndarray) -> np.ndarray:
    """``divisors`` (..., cells) with each map's cells raised to `POSITION_FLOOR` x its median."""
    floor = POSITION_FLOOR * np.median(divisors, axis=-1, keepdims=True)
    return np.maximum(divisors, np.maximum(floor, 1e-12)).astype(np.float32)


def cell_divisors(maps: np.ndarray) -> np.ndarray:
    """Per cell, the mean + `POSITION_SD` sd of the good images' (leave-one-out) distances, floored (`POSITION_FLOOR`).

    Args:
        maps: (n, P) distances, one row per good image (`leave_one_out_maps`).

    Returns:
        (P,) float32 divisors, all positive.
    """
    m = np.asarray(maps, np.float64)
    return _floored(m.mean(axis=0) + POSITION_SD * m.std(axis=0))


def cell_divisors_without_each(maps: np.ndarray) -> np.ndarray:
    """`cell_divisors` of the other images, for each image: (n, P), row i from every row of ``maps`` but i.

    The threshold's scores stay leave-one-out: an image's own distances do not widen the cells it is scored by.
    """
    m = np.asarray(maps, np.float64)
    n = len(m)
    if n < 2:
        raise ValueError("cell divisors without each image need at least 2 images")
    total, squares = m.sum(axis=0), (m * m).sum(axis=0)
    mean = (total[None] - m) / (n - 1)
    var = np.maximum((squares[None] - m * m) / (n - 1) - mean * mean, 0.0)
    return _floored(mean + POSITION_SD * np.sqrt(var))


def leave_one_out_scores(images: list[np.ndarray], bank: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each teaching image's score against the bank without the rows it contributed.

    The image score is its worst patch's nearest-neighbour distance, as at run time; the rows of the
    image itself are left out, so every teaching image is scored as an unseen good part would be (the
    bank stays the one taught from all of them). This sets the threshold from every good image instead
    of a held-out fifth.

    Args:
        images: One (P, D) float32 array of scored patches per teaching image (edge cells already left out).
        bank: (K, D) float32 memory bank.
        owner: (K,) index into ``images`` of the image each bank row came from.

    Returns:
        (len(images),) float32 raw image scores: each row's largest of `leave_one_out_maps`.
    """
    return leave_one_out_maps(images, bank, owner).max(axis=1) if images else np.empty(0, np.float32)


def image_coreset_cells(features: np.ndarray, share: float = 0.1, *, seed: int = 0, proj_dim: int = 64) -> np.ndarray:
    """The first stage of the bank: which of one image's (P, D) patches (their row indices, cells of its grid in
    row-major order) a greedy coreset of ``share`` of them keeps.

    Each image keeps its own outlying patches here, so the bank's coreset then runs on a tenth of the
    rows at little loss of coverage (greedy k-center keeps the farthest points, which survive both stages).
    """
    k = max(1, round(share * len(features)))
    return greedy_coreset(features, k, seed=seed, proj_dim=proj_dim)


def bank_rows(bank: np.ndarray | Bands) -> int:
    """Rows of a level's bank (a banded one's: every band's)."""
    return bank.rows if isinstance(bank, Bands) else len(bank)


def bank_width(bank: np.ndarray | Bands) -> int:
    """A level's bank's feature width (a plain bank's or a banded one's)."""
    return bank.width if isinstance(bank, Bands) else int(bank.shape[1])


def level_nearest(bank: np.ndarray | Bands, patches: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(P,) each of one frame's patches' (P, D), row-major on ``grid``, distance to its nearest row of a level's
    bank (a banded one's: its band's, `Bands.nearest`)."""
    return bank.nearest(patches, grid) if isinstance(bank, Bands) else nearest_distances(patches, bank)


#: Shrinkage of the good patches' covariance towards its mean variance (`whitening`; a set weight, where
#: Ledoit-Wolf would estimate it), so that directions the good patches barely use (a fixed pattern's constant
#: channels) do not get an unbounded weight. Validation, the fine level alone in f32 numpy, AUROC at 0.01 / 0.1 /
#: 0.3 / 0.6: fabric Mono8 0.964 / 0.951 / 0.943 / 0.937, label Mono8 0.862 / 0.842 / 0.862 / 0.853.
WHITEN_SHRINKAGE = 0.01
WHITEN_RULE = (f"distances in the good patches' Mahalanobis metric: features minus the good patches' mean, times "
               f"the inverse square root of their covariance shrunk by {WHITEN_SHRINKAGE:g} towards its mean variance")


def whitening(patches: np.ndarray, shrinkage: float = WHITEN_SHRINKAGE, dims: int = 0, seed: int = 0) -> np.ndarray:
    """The transform `whitened` applies: (C + 1, D) float32, the matrix W in its last C rows, and in its first
    the good patches' mean times W (whitened features are x W - mean W = (x - mean) W). W is the symmetric inverse
    square root of their covariance, shrunk by ``shrinkage`` towards its mean variance, and where ``dims`` D < C,
    times a random orthonormal (C, D) projection.

    A nearest-neighbour distance between whitened features is the Mahalanobis distance of the good patches'
    Gaussian (Rippel et al. 2020, PaDiM: a patch's features modelled by the good ones' mean and covariance),
    kept nearest-neighbour as PatchCore: a change that moves a patch along a direction the good patches
    hardly vary in (a stain's lost contrast on a cloth whose weave varies in other directions) weighs by
    how rarely good patches move that way, not by the raw feature scale.

    Whitened, the good patches vary alike in every direction, so a random orthonormal projection keeps each
    direction's share of a distance alike (Johnson-Lindenstrauss): a wider level's distances at the cost of a
    narrower one's (``teach.WHITEN_DIMS``).

    Args:
        patches: (M, C) float32 good patch features (M > C).
        shrinkage: 0..1, the covariance's weight moved onto its mean variance times the identity.
        dims: The width D projected to; 0 or C and over: C, no projection.
        seed: Seeds the projection.
    """
    x = np.asarray(patches, np.float64)
    if x.ndim != 2 or len(x) <= x.shape[1]:
        raise ValueError(f"whitening needs more patches than channels, got {x.shape}")
    if dims < 0:
        raise ValueError(f"whitening dims = {dims}: 0 (all) or more")
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / len(x)
    inverse_root = shrunk_inverse_root(cov, shrinkage)
    if 0 < dims < len(cov):
        basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(cov), dims)))
        inverse_root = inverse_root @ basis
    return np.vstack([(mean @ inverse_root)[None], inverse_root]).astype(np.float32)


def shrunk_inverse_root(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """The symmetric inverse square root of covariances (..., C, C), each shrunk by ``shrinkage`` towards its mean
    variance times the identity (`whitening`'s W; one per cell for `tone.fit`'s per-position Gaussians)."""
    dims = cov.shape[-1]
    spread = np.trace(cov, axis1=-2, axis2=-1)[..., None, None] / dims
    shrunk = (1.0 - shrinkage) * cov + shrinkage * spread * np.eye(dims)
    values, vectors = np.linalg.eigh(shrunk)
    values = np.maximum(values, 1e-12 * np.maximum(values.max(axis=-1, keepdims=True), 1e-12))
    return (vectors / np.sqrt(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def whitened(features: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """``features`` (..., C) in the whitened space of ``transform`` (`whitening`): x W - mean W, (..., D) float32."""
    shape = features.shape
    flat = features.reshape(-1, shape[-1]).astype(np.float64) @ transform[1:] - transform[0]
    return np.ascontiguousarray(flat.reshape(*shape[:-1], transform.shape[1]), np.float32)


#: A level whose good features vary less than this share between positions (`position_share`) is a stationary
#: texture (a cloth, a brushed or cast surface), whitened when teaching (``teach.WHITEN``): one Gaussian of its
#: patches fits every position, as for MVTec's textures, where PaDiM's per-position Gaussians serve objects. On
#: the rendered families (the fine level, 200 good parts each): fabric 0.002, fabric Mono8 0.003, plate 0.50,
#: plate Mono8 0.50, label 0.64, label Mono8 0.64 (from 10 parts: 0.001-0.66); any bound from 0.05 to 0.4 parts
#: them alike.
STATIONARY_SHARE = 0.1


def position_share(features: np.ndarray, edge: int = 0) -> float:
    """The share of the good features' variance that lies between positions: the variance over the grid of each
    cell's mean over the images (less what n images' scatter alone gives it: the mean within-cell variance / n),
    over the variance of all patches (summed over channels). 0 for a stationary
    texture (every position alike), towards 1 where each position has a look of its own (a label's print, a
    plate's holes).

    Args:
        features: (n, gh, gw, C) good images' features.
        edge: Cells along each side left out (the image score leaves them out too).
    """
    x = np.asarray(features, np.float64)
    if edge:
        x = x[:, edge:x.shape[1] - edge, edge:x.shape[2] - edge]
    flat = x.reshape(len(x), -1, x.shape[-1])
    total = float(flat.reshape(-1, flat.shape[-1]).var(axis=0).sum())
    if total <= 0 or len(flat) < 2:
        return 0.0
    # the cells' means over n images scatter by their within-cell variance / n even on a perfect texture: taken off
    within = float(flat.var(axis=0, ddof=1).mean(axis=0).sum())
    between = float(flat.mean(axis=0).var(axis=0).sum()) - within / len(flat)
    return max(0.0, between / total)
