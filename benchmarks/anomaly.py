"""Anomaly model: teach time for N good images and scoring ms per frame at batch 8, per precision.

    .venv/bin/python benchmarks/anomaly.py --family plate --good 200 [--size 320] [--json FILE]
    .venv/bin/python benchmarks/anomaly.py --eval [--family F ...] [--data DIR] [--json FILE]
    .venv/bin/python benchmarks/anomaly.py --precision-check MODEL [--family F] [--data DIR] [--json FILE]
    .venv/bin/python benchmarks/anomaly.py --speed-models MODEL MODEL ... [--family F] [--rounds N] [--json FILE]

Renders the family's good parts (seeds 0..N-1) into a temporary folder, times `inspector.anomaly.teach.teach`
on them (the backbone's IR already cached, as on a station after its first teach), then times the scoring
graph on batches of 8 letterboxed frames (the best of 10 rounds after a warm-up, the runners taking turns) at
each of `runtime.PRECISIONS` (f32, bf16, bf16 features with f32 distances), and the feature extractor alone at
f32 and bf16. The model is taught in the precision `teach.runtime_precision` picks (bf16 where the CPU has it). Prints the CPU model, its ISA flags and the load average with the numbers.
Run it alone on a quiet machine.

``--eval`` measures accuracy instead, for each family (default: all three), colour and Mono8: teaches from 200 good
parts (seeds 0-199), evaluates on 200 good and 200 anomalous parts of the ``--split`` (with masks), then teaches
again with that split's 10 NG parts given as ``--bad`` and evaluates that model: image AUROC (all and per anomaly
kind), pixel AUROC, false reject and escape at the threshold. The images are rendered into ``--data`` (kept: a
second run reuses them). Mono8 sets with colour shifts are also scored without them (``without_colour_shift``:
most of the label's shifted inks are greys that good logos have, seen only beside the rest of the part, by the
appearance level since stop 49); both rows are printed.
``--speed-models`` times the scoring graphs of several models (say one per backbone) side by side in one process:
each at its card's precision on one batch of 8 letterboxed frames of the family (seeds 10000-10007), in ABBA
order (each round runs the models forward, the next backwards, so a drift of the shared machine's load hits all
alike); the best and median ms per frame and their ratios to the first model's.

Two disjoint splits, so that what is tuned is not what is reported:

- ``validation`` (choose methods and rules here): test seeds 200000-200399, NG seeds 250000-250009;
- ``held-out`` (report only): test seeds 100000-100399, NG seeds 50000-50009.

Variants of the default features for ``--eval`` (to compare on the validation split): ``--position off`` teaches
without per-position normalisation, ``--fine-taps 1,2,4`` with those blocks on the fine level whether or not it
is a texture (Lite0's block numbers; ``--fine-taps 2,4`` is the method before texture taps); ``--backbone
lite1|lite2`` taps those EfficientNet-Lite variants instead of Lite0, at the same stages
(`backbone.equivalent_taps`: Lite0's blocks 2, 4 and 10 are their 3, 6 and 14); ``--whiten 0,1`` whitens those
levels and no others (`patchcore.whitening`; ``''`` none; by default teach whitens the levels whose good features
are a stationary texture, `patchcore.position_share`); ``--good-only`` skips the second teach with the 10 NG parts;
``--size 480`` teaches models of that input side (the parts stay rendered at 320, the line's frames, and are
letterboxed up: the backbone sees them 1.5x larger). Each variant's models go to their own folder under ``--data``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _isa() -> dict[str, object]:
    from inspector.bench import cpu_description

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpu": cpu_description(), "flags": [f for f in wanted if f in flags], "load": os.getloadavg()}


def _side_by_side(runners: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray,
                  rounds: int = 10) -> dict[str, float]:
    """Best ms per frame of each runner, taking turns round by round (so a change of load hits all alike)."""
    from anomaly_speed import side_by_side  # this script's folder is on sys.path when it runs

    return {name: row["best"] for name, row in side_by_side(runners, batch, rounds).items()}


#: The anomaly kind scored twice on Mono8 sets (with and without it): a colour shift of the label's logo ink
#: renders, in grey, at 69 or 100 for two of its three inks, inside the 88-110 of good logos at the renderer's
#: gain range, so no patch of a grey frame shows it: only the part's whole look does (the logo's grey beside the text
#: printed at the same density; `appearance.AppearanceLevel`, since stop 49). The row without them is kept to compare
#: with the stops before (until stop 48 this said a grey camera could not see them at all: wrong).
INVISIBLE_IN_MONO = "colour_shift"
MONO_NOTE = ("Mono8: the label's logo colour shifts render at grey levels that good logos also have (69 and 100 against "
             "88-110): no patch shows most of them, only the part's whole look; they are left out of this row and kept "
             "in the one above")

#: Seeds of each split's test parts (200 good, then 200 anomalous) and its 10 NG parts; teaching uses seeds 0-199.
SPLITS: dict[str, tuple[int, int]] = {"held-out": (100_000, 50_000), "validation": (200_000, 250_000)}


def _dataset(root: Path, family: str, mono: bool, split: str = "held-out") -> Path:
    from camera.products import write_family

    test_seed, ng_seed = SPLITS[split]
    # the held-out split keeps the folder it always had (earlier runs' renders are reused)
    folder = (root if split == "held-out" else root / split) / f"{family}{'_mono' if mono else ''}"
    for sub, good, bad, seed in (("train", 200, 0, 0), ("test", 200, 200, test_seed), ("ng", 0, 10, ng_seed)):
        if not (folder / sub / ".done").is_file():
            write_family(family, folder / sub, good, bad, seed=seed, mono=mono)
            (folder / sub / ".done").write_text("")
    return folder


def without_invisible(good: np.ndarray, bad: np.ndarray, kinds: np.ndarray, mono: bool) -> dict[str, object] | None:
    """Image AUROC and escape (threshold 1.0) of a Mono8 set without its `INVISIBLE_IN_MONO` anomalies; None for a
    colour set or one without them (nothing is left out there)."""
    from inspector.anomaly.metrics import auroc

    keep = kinds != INVISIBLE_IN_MONO
    if not mono or bool(keep.all()):
        return None
    seen = bad[keep]
    return {"image_auroc": round(auroc(good, seen), 4), "escape": round(float((seen < 1.0).mean()), 4),
            "bad_images": int(keep.sum()), "left_out": int((~keep).sum()), "why": MONO_NOTE}


def _variant(position: bool, fine_taps: tuple[int, ...] | None, backbone: str | None = None, size: int = 320,
             whiten: tuple[int, ...] | None = None) -> tuple[str, dict[str, object]]:
    """The folder name and `teach` arguments of an ``--eval`` variant (see the module)."""
    from inspector.anomaly.backbone import LITE0, for_backbone
    from inspector.anomaly.teach import DEFAULT_SPEC, POSITION

    kwargs: dict[str, object] = {"position": position}
    name = "" if position == POSITION else f"position-{'on' if position else 'off'}"
    spec = DEFAULT_SPEC
    if fine_taps is not None:  # these taps whether or not the level is a texture
        spec = (dataclasses.replace(DEFAULT_SPEC[0], taps=fine_taps, texture_taps=()), *DEFAULT_SPEC[1:])
        name += f"{'_' if name else ''}fine{'-'.join(map(str, fine_taps))}"
    if backbone is not None and backbone != spec[0].backbone:
        # fine_taps are Lite0's block numbers, mapped to the same stage's blocks like the defaults
        spec = for_backbone(spec, backbone) if spec[0].backbone == LITE0.key else spec
        name += f"{'_' if name else ''}backbone-{backbone}"
    if whiten is not None:  # these levels and no others (teach's choice by `patchcore.position_share` off)
        spec = tuple(dataclasses.replace(lv, whiten=i in whiten) for i, lv in enumerate(spec))
        kwargs["whiten"] = "spec"
        name += f"{'_' if name else ''}whiten{'-'.join(map(str, whiten)) or 'none'}"
    if size != 320:  # the model's input side; the parts stay rendered at 320 (the line's frames), letterboxed up
        kwargs["width"] = kwargs["height"] = size
        name += f"{'_' if name else ''}size{size}"
    if spec != DEFAULT_SPEC:
        kwargs["spec"] = spec
    return name or "default", kwargs


def evaluate_families(families: list[str], data: Path, split: str = "held-out", *, position: bool | None = None,
                      fine_taps: tuple[int, ...] | None = None, good_only: bool = False,
                      backbone: str | None = None, size: int = 320, whiten: tuple[int, ...] | None = None
                      ) -> dict[str, object]:
    """The ``--eval`` table (see the module)."""
    from inspector.anomaly.metrics import auroc
    from inspector.anomaly.teach import POSITION, evaluate, teach

    variant, kwargs = _variant(POSITION if position is None else position, fine_taps, backbone, size, whiten)
    out: dict[str, object] = {"machine": _isa(), "split": split, "variant": variant, "seeds": {"train": "0-199",
                              "test": f"{SPLITS[split][0]}-{SPLITS[split][0] + 399}",
                              "ng": f"{SPLITS[split][1]}-{SPLITS[split][1] + 9}"}}
    for family in families:
        for mono in (False, True):
            folder = _dataset(data, family, mono, split)
            name = folder.name
            row: dict[str, object] = {}
            runs = (("good_only", None),) + (() if good_only else (("with_10_ng", folder / "ng" / "bad"),))
            for label, bad in runs:
                model = data / "models" / split / variant / f"{name}_{label}"
                t = time.perf_counter()
                taught = teach([folder / "train" / "good"], model, bad=bad, **kwargs)  # type: ignore[arg-type]
                seconds = time.perf_counter() - t
                r = evaluate(model, folder / "test" / "good", folder / "test" / "bad", masks=folder / "test" / "masks")
                bad_files = sorted((folder / "test" / "bad").glob("*.png"))
                kinds = np.array([p.stem.split("_", 1)[1] for p in bad_files])
                row[label] = {
                    "image_auroc": round(r.image_auroc, 4),
                    "pixel_auroc": round(r.pixel_auroc, 4) if r.pixel_auroc is not None else None,
                    "false_reject": r.false_reject, "escape": round(r.escape, 4),
                    "per_kind_auroc": {k: round(auroc(r.good_scores, r.bad_scores[kinds == k]), 4)
                                       for k in sorted(set(kinds))},
                    "per_kind_escape": {k: round(float((r.bad_scores[kinds == k] < 1.0).mean()), 3)
                                        for k in sorted(set(kinds))},
                    "teach_seconds": round(seconds, 1), "bank_rows": taught.bank_rows,
                    "load": [round(v, 1) for v in os.getloadavg()],
                }
                seen = without_invisible(r.good_scores, r.bad_scores, kinds, mono)
                if seen is not None:  # both numbers: with every anomaly, and without those grey cannot show
                    row[label]["without_colour_shift"] = seen  # type: ignore[index]
                print(f"{name:12s} {label:10s} AUROC {r.image_auroc:.4f} false reject {r.false_reject:.3f} "
                      f"escape {r.escape:.3f} teach {seconds:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
                if "without_colour_shift" in row[label]:  # type: ignore[operator]
                    w = row[label]["without_colour_shift"]  # type: ignore[index]
                    print(f"{'':12s} {label:10s} without colour shifts (no patch shows them): AUROC {w['image_auroc']:.4f} "
                          f"escape {w['escape']:.3f}", flush=True)
            out[name] = row
    return out


def precision_check(model_dir: Path, family: str, data: Path) -> dict[str, object]:
    """The ``--precision-check`` table: one model's held-out scores at each of `runtime.PRECISIONS`."""
    from inspector.anomaly.images import find_images, load_batch
    from inspector.anomaly.metrics import auroc
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.runtime import PRECISIONS, AnomalyScorer

    model = load_anomaly_model(model_dir)
    folder = _dataset(data, family, False)
    files = {k: find_images([folder / "test" / k]) for k in ("good", "bad")}
    out: dict[str, object] = {"machine": _isa(), "model": str(model_dir), "data": str(folder / "test")}
    ref: np.ndarray | None = None
    for precision in PRECISIONS:
        scorer = AnomalyScorer.for_model(model, precision=precision)  # int8: with the card's activation ranges
        scores = {k: np.concatenate([scorer.score(load_batch(f[i:i + 8], scorer.width, scorer.height, model.roi)
                                                  ).scores for i in range(0, len(f), 8)]) for k, f in files.items()}
        both = np.concatenate([scores["good"], scores["bad"]])
        ref = both if ref is None else ref
        out[precision] = {"image_auroc": round(auroc(scores["good"], scores["bad"]), 4),
                          "false_reject": float((scores["good"] >= 1.0).mean()),
                          "escape": float((scores["bad"] < 1.0).mean()),
                          "max_change_from_f32": round(float(np.abs(both - ref).max()), 4)}
        print(precision, out[precision], flush=True)
    return out


def speed_models(models: list[Path], family: str, rounds: int = 20) -> dict[str, object]:
    """The ``--speed-models`` table (see the module)."""
    import statistics

    from camera.products import render_product
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.runtime import AnomalyScorer

    loaded = [load_anomaly_model(m) for m in models]
    names = [f"{m.spec[0].backbone}:{path}" for m, path in zip(loaded, models)]
    if len(set(names)) != len(names):
        raise SystemExit("--speed-models: give each model once")
    scorers = {n: AnomalyScorer.for_model(m) for n, m in zip(names, loaded)}
    first = loaded[0]
    batch = np.stack([render_product(family, 10_000 + i, first.input_width, first.input_height).image
                      for i in range(8)])
    out: dict[str, object] = {"machine": _isa(), "family": family, "rounds": rounds,
                              "precision": {n: m.precision for n, m in zip(names, loaded)}}
    for scorer in scorers.values():  # compile and warm up
        scorer.score(batch)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else reversed(names):
            t = time.perf_counter()
            scorers[n].score(batch)
            times[n].append((time.perf_counter() - t) * 1000.0 / len(batch))
    b0, m0 = min(times[names[0]]), statistics.median(times[names[0]])
    out["ms_per_frame_b8"] = {n: {"best": round(min(v), 3), "median": round(statistics.median(v), 3),
                                  "best_ratio": round(min(v) / b0, 3),
                                  "median_ratio": round(statistics.median(v) / m0, 3)} for n, v in times.items()}
    out["machine"]["load_after"] = os.getloadavg()  # type: ignore[index]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", action="store_true", help="Accuracy on held-out seeds instead of speed.")
    ap.add_argument("--precision-check", type=Path, metavar="MODEL",
                    help="Score MODEL on the family's held-out parts (as --eval renders them) at each precision.")
    ap.add_argument("--speed-models", type=Path, nargs="+", metavar="MODEL",
                    help="Time these models' scoring graphs side by side (ABBA rounds), ratios to the first.")
    ap.add_argument("--rounds", type=int, default=20, help="--speed-models: rounds.")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "inspector-anomaly-eval")
    ap.add_argument("--split", choices=tuple(SPLITS), default="held-out",
                    help="Test seeds of --eval: validation (to choose methods) or held-out (to report).")
    ap.add_argument("--family", default="plate", nargs="+")
    ap.add_argument("--good", type=int, default=200)
    ap.add_argument("--size", type=int, default=320,
                    help="Input side: of the rendered parts (speed), of the model only (--eval: parts stay 320).")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--position", choices=("on", "off"), help="--eval: per-position normalisation (default: teach's).")
    ap.add_argument("--fine-taps", help="--eval: the fine level's blocks, e.g. 1,2,4 (default: teach's).")
    ap.add_argument("--whiten", metavar="LEVELS",
                    help="--eval: the levels taught whitened, e.g. 0 or 0,1 or '' for none (default: teach's).")
    ap.add_argument("--good-only", action="store_true", help="--eval: skip the teach with the 10 NG parts.")
    ap.add_argument("--backbone", choices=("lite0", "lite1", "lite2"),
                    help="--eval: the EfficientNet-Lite variant the levels tap (default: teach's).")
    args = ap.parse_args()
    if args.speed_models:
        family = args.family[0] if isinstance(args.family, list) else args.family
        text = json.dumps(speed_models(args.speed_models, family, args.rounds), indent=1)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return
    if args.precision_check:
        family = args.family[0] if isinstance(args.family, list) else args.family
        text = json.dumps(precision_check(args.precision_check, family, args.data), indent=1)
        if args.json:
            args.json.write_text(text + "\n")
        return
    if args.eval:
        from camera.products import FAMILIES

        families = list(FAMILIES) if args.family == "plate" else args.family
        taps = tuple(int(t) for t in args.fine_taps.split(",")) if args.fine_taps else None
        result = evaluate_families(families, args.data, args.split, good_only=args.good_only, fine_taps=taps,
                                   position=None if args.position is None else args.position == "on",
                                   backbone=args.backbone, size=args.size,
                                   whiten=None if args.whiten is None
                                   else tuple(int(i) for i in args.whiten.split(",") if i))
        text = json.dumps(result, indent=1)
        if args.json:
            args.json.write_text(text + "\n")
        return
    args.family = args.family[0] if isinstance(args.family, list) else args.family

    from camera.products import render_product, write_family
    from inspector.anomaly.backbone import cached_feature_model
    from inspector.anomaly.model import load_anomaly_model
    from inspector.anomaly.runtime import PRECISIONS, AnomalyScorer, FeatureExtractor
    from inspector.anomaly.teach import DEFAULT_SPEC, teach

    out: dict[str, object] = {"machine": _isa(), "family": args.family, "good": args.good, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_family(args.family, root / "data", args.good, 0, width=args.size, height=args.size)
        cached_feature_model(DEFAULT_SPEC, args.size, args.size)  # converted once per machine, not per teach
        t = time.perf_counter()
        report = teach([root / "data" / "good"], root / "model", width=args.size, height=args.size)
        out["teach_seconds"] = round(time.perf_counter() - t, 2)
        out["bank_rows"] = report.bank_rows
        model = load_anomaly_model(root / "model")
    frames = np.stack([render_product(args.family, 10_000 + i, args.size, args.size).image for i in range(8)])
    runners: dict[str, Callable[[np.ndarray], object]] = {}
    for precision in PRECISIONS:
        try:
            runners[f"score_{precision}"] = AnomalyScorer.for_model(model, precision=precision).score
        except RuntimeError as exc:  # a CPU without bf16
            out[precision] = {"error": str(exc).splitlines()[0]}
    for precision in ("f32", "bf16"):
        runners[f"features_{precision}"] = FeatureExtractor(model.spec, args.size, args.size, precision).all_levels
    out["ms_per_frame_b8"] = _side_by_side(runners, frames)
    out["taught_precision"] = model.precision
    out["machine"]["load_after"] = os.getloadavg()  # type: ignore[index]
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
