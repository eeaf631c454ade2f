"""Hard-example mining: the frames a model gets wrong or nearly wrong, as a YOLO dataset.

A model that already scores well on a random synthetic set learns little more from
another random set: most frames are easy. Mining renders many frames from *training*
seeds, runs them through the runtime pipeline (the same decode, NMS and rescale as the
station) and keeps only

- **hard negatives**: any detection at or above ``negative_score`` that overlaps no
  defect (IoU < 0.5 with every ground-truth box), on OK and defective parts alike;
- **hard positives**: a defect that no detection of its class finds at or above
  ``positive_score`` (IoU >= 0.5).

The kept frames are written in the same layout as `inspector.quality.dataset.export_dataset`,
and ``data.yaml`` can append them to a base dataset's training images, so a fine-tune
sees the ordinary mix plus the hard cases. Seeds stay below `HELD_OUT_SEED_BASE`, so
evaluation, calibration and the demo stations never see a mined frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camera.renderer import GroundTruth, RenderedFrame, defective_faces, render_face, render_part
from inspector.pipeline.backends import create_backend
from inspector.pipeline.model_repo import load_card
from inspector.pipeline.postprocess import iou_matrix
from inspector.quality.dataset import HELD_OUT_SEED_BASE, is_mono, make_split_dirs, write_data_yaml, write_sample
from inspector.quality.evaluation import detect_frames

MATCH_IOU = 0.5


@dataclass(frozen=True)
class MiningSummary:
    """What `mine_hard_examples` looked at and kept."""

    root: Path
    scanned: int
    hard_negatives: int
    hard_positives: int
    kept_seeds: tuple[int, ...]


def hardness(dets: np.ndarray, truth: GroundTruth, *, negative_score: float, positive_score: float) -> tuple[bool, bool]:
    """``(hard_negative, hard_positive)`` for one frame's ``(N, 6)`` detections in frame pixels."""
    dets = dets.reshape(-1, 6)
    gt = np.array([[b.x1, b.y1, b.x2, b.y2] for b in truth.boxes], np.float32).reshape(-1, 4)
    gt_cls = np.array([b.class_id for b in truth.boxes], int)
    strong = dets[dets[:, 4] >= negative_score]
    if len(strong) == 0:
        false_call = False
    elif len(gt) == 0:
        false_call = True
    else:
        false_call = bool((iou_matrix(strong[:, :4], gt).max(axis=1) < MATCH_IOU).any())
    missed = False
    if len(gt):
        sure = dets[dets[:, 4] >= positive_score]
        if len(sure) == 0:
            missed = True
        else:
            ious = iou_matrix(gt, sure[:, :4])
            ious = np.where(gt_cls[:, None] == sure[None, :, 5].astype(int), ious, 0.0)
            missed = bool((ious.max(axis=1) < MATCH_IOU).any())
    return false_call, missed


def mine_hard_examples(
    model: str | Path,
    out: Path,
    *,
    seed: int,
    count: int,
    base_data: Path | None = None,
    width: int = 320,
    height: int = 320,
    ok_share: float = 0.6,
    mono_share: float = 0.25,
    negative_score: float = 0.1,
    positive_score: float = 0.35,
    backend: str = "openvino",
    batch: int = 8,
    image_format: str = "png",
    faces: int = 0,
    mono_faces: tuple[int, ...] = (3, 7),
    defective_faces_only: bool = False,
) -> MiningSummary:
    """Scan seeds ``seed .. seed+count-1`` with ``model`` and write the hard frames under ``out``.

    Args:
        model: Model name or folder (the one to improve).
        out: Output folder (created).
        seed: First training seed to scan.
        count: Frames to scan.
        base_data: A dataset ``data.yaml`` whose training images are listed before the
            mined ones and whose validation split is reused.
        ok_share: Share of OK parts among the scanned frames (the line's share finds
            false calls at the rate the line makes them).
        mono_share: Share of Mono8 frames.
        negative_score: Score from which a detection off every defect counts as a false call.
        positive_score: Score a defect's detection must reach for it to count as found.
        faces: Scan line parts instead of frames: ``seed``.. are part seeds, each part seen as
            ``faces`` faces as a line's cameras see them (`camera.renderer.render_face`, the ones in
            ``mono_faces`` Mono8; ``ok_share`` is then the share of OK parts). Every face seed
            (part * 64 + face) stays below `HELD_OUT_SEED_BASE`.
        defective_faces_only: With ``faces``, scan only the faces that carry a defect (the missed
            defects a line lets escape are rare: this finds them for a fraction of the scan's time).

    Raises:
        ValueError: On seeds that reach into the held-out range, a bad score or a base
            dataset that is not a readable ``data.yaml``.
    """
    _check_mining(seed, count, negative_score, positive_score, faces)
    if defective_faces_only and not faces:
        raise ValueError("defective_faces_only: needs faces (line parts), not single frames")
    base_train, base_val = _base_splits(base_data) if base_data is not None else ([], None)
    card = load_card(model)
    out = Path(out)
    make_split_dirs(out)
    be = create_backend(backend, card, max_batch=batch)
    try:
        renders = (_defective_faces(range(seed, seed + count), batch, width, height, ok_share, faces, mono_faces)
                   if defective_faces_only else
                   _renders(range(seed, seed + count), batch, width, height, ok_share, mono_share, faces, mono_faces))
        kept, n_neg, n_pos, scanned = _scan(be, card, out, renders, negative_score, positive_score, image_format)
    finally:
        be.close()
    write_data_yaml(out, [*base_train, str((out / "images" / "train").resolve())], base_val or "images/train")
    (out / "dataset.json").write_text(json.dumps({
        "generator": "inspector.quality.mining", "faces": faces, "model": card.name, "model_sha256": card.sha256,
        "seed_first": seed, "seed_last": seed + count - 1, "scanned": count, "scanned_faces": scanned if faces else None,
        "defective_faces_only": defective_faces_only, "ok_share": ok_share,
        "negative_score": negative_score, "positive_score": positive_score, "hard_negatives": n_neg,
        "hard_positives": n_pos, "kept_seeds": kept,
        "base_data": str(base_data) if base_data is not None else None,
    }, indent=2))
    return MiningSummary(out, count, n_neg, n_pos, tuple(kept))


def _check_mining(seed: int, count: int, negative_score: float, positive_score: float, faces: int = 0) -> None:
    if count < 1:
        raise ValueError("count: must be at least 1")
    if not 0 <= faces <= 64:
        raise ValueError(f"faces: {faces} is not between 0 and 64")
    top = HELD_OUT_SEED_BASE // 64 if faces else HELD_OUT_SEED_BASE  # a face's seed is part * 64 + face
    if seed < 0 or seed + count > top:
        what = f"part seeds (a face's seed is part * 64 + face, below {HELD_OUT_SEED_BASE})" if faces else "seeds"
        raise ValueError(f"seed: mined {what} must lie in 0..{top - 1} (held-out range above)")
    for field, v in (("negative_score", negative_score), ("positive_score", positive_score)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"{field}: {v} is not between 0 and 1")


def _renders(seeds: range, batch: int, width: int, height: int, ok_share: float, mono_share: float, faces: int,
             mono_faces: tuple[int, ...]) -> Iterator[list[RenderedFrame]]:
    """Batches of frames to scan: ``batch`` frames of ``seeds``, or with ``faces`` every face of one part each."""
    if faces:
        for p in seeds:
            yield [render_face(p, k, faces, width, height, mono=k in mono_faces, ok_share=ok_share)
                   for k in range(faces)]
        return
    for start in range(seeds.start, seeds.stop, batch):
        chunk = range(start, min(seeds.stop, start + batch))
        yield [render_part(s, width, height, mono=is_mono(s, mono_share), ok_share=ok_share) for s in chunk]


def _defective_faces(parts: range, batch: int, width: int, height: int, ok_share: float, faces: int,
                     mono_faces: tuple[int, ...]) -> Iterator[list[RenderedFrame]]:
    """Batches of up to ``batch`` faces: only the faces of ``parts`` that carry a defect, in part order."""
    pending: list[RenderedFrame] = []
    for p in parts:
        for k in sorted(defective_faces(p, faces, ok_share)):
            pending.append(render_face(p, k, faces, width, height, mono=k in mono_faces, ok_share=ok_share))
            if len(pending) == batch:
                yield pending
                pending = []
    if pending:
        yield pending


def _scan(be: Any, card: Any, out: Path, batches: Iterable[list[RenderedFrame]], negative_score: float,
          positive_score: float, image_format: str) -> tuple[list[int], int, int, int]:
    """Detect each batch of frames; the hard frames are written to ``out``'s train split.

    Returns:
        The kept seeds, how many were hard negatives (false calls), how many hard positives, frames scanned.
    """
    kept: list[int] = []
    n_neg = n_pos = scanned = 0
    for frames in batches:
        height, width = frames[0].image.shape[:2]
        for frame, dets in zip(frames, detect_frames(be, card, frames, width, height)):
            neg, pos = hardness(dets, frame.truth, negative_score=negative_score, positive_score=positive_score)
            if neg or pos:
                n_neg += int(neg)
                n_pos += int(pos)
                kept.append(frame.truth.seed)
                write_sample(out, "train", frame, image_format)
        scanned += len(frames)
    return kept, n_neg, n_pos, scanned


def _base_splits(data_yaml: Path) -> tuple[list[str], str | None]:
    """Absolute training folders and validation folder of a data.yaml written by `write_data_yaml`."""
    try:
        text = Path(data_yaml).read_text()
    except OSError as exc:
        raise ValueError(f"base_data: cannot read {data_yaml} ({exc.strerror})") from None
    fields = dict(re.findall(r"^(path|train|val):\s*(.+)$", text, re.MULTILINE))
    if "train" not in fields:
        raise ValueError(f"base_data: {data_yaml} has no 'train:' entry")
    root = Path(fields.get("path", str(Path(data_yaml).parent.resolve()))).expanduser()
    train = [t.strip() for t in fields["train"].strip("[]").split(",") if t.strip()]
    val = fields.get("val")
    return [str(root / t) for t in train], str(root / val.strip()) if val else None
