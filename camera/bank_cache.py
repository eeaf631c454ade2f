"""`BankCache`: simulated cameras' rendered part banks kept on disk between starts.

Rendering a bank (128 parts × 8 cameras on line-demo) took ~11 s of a 13 s start on the
2-core machines; loading it back takes a fraction of that. A bank is stored under a key over
everything that decides its pixels — the renderer's own source, the seed, size, pixel format,
OK share, face and faces — so a change to any of them renders afresh. Files are written
atomically; the cache keeps itself under a size limit, oldest first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from camera.renderer import GroundTruth, GroundTruthBox

log = logging.getLogger(__name__)

#: Largest total size of the cache folder; the oldest banks go first.
MAX_CACHE_BYTES = 2 * 1024**3

Bank = list[tuple[np.ndarray, GroundTruth]]


def renderer_digest() -> str:
    """sha256 of the renderer's source: a changed renderer never reuses an old bank."""
    from camera import renderer

    return hashlib.sha256(Path(renderer.__file__).read_bytes()).hexdigest()[:16]


def default_cache_dir() -> Path | None:
    """``INSPECTOR_CACHE_DIR`` ("off": no cache), else the user cache folder."""
    env = os.environ.get("INSPECTOR_CACHE_DIR")
    if env:
        return None if env == "off" else Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("inspector")) / "banks"


class BankCache:
    def __init__(self, folder: Path | None = None, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.folder = folder if folder is not None else default_cache_dir()
        self.max_bytes = max_bytes

    def key(self, **params: object) -> str:
        text = json.dumps({"renderer": renderer_digest(), **params}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def load(self, key: str) -> Bank | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                images = z["images"]
                truths = json.loads(str(z["truths"]))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is rendered again
            log.warning("bank cache: %s unreadable (%s); rendering again", path, exc)
            return None
        os.utime(path)  # recently used: evicted last
        return [(images[i], _truth(t)) for i, t in enumerate(truths)]

    def save(self, key: str, bank: Bank) -> None:
        if self.folder is None or not bank:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp.npz"
            truths = json.dumps([_truth_dict(t) for _, t in bank])
            np.savez(tmp, images=np.stack([img for img, _ in bank]), truths=np.array(truths))
            os.replace(tmp, self.folder / f"{key}.npz")
            self._evict()
        except OSError as exc:  # a full or read-only disk: the bank simply is not cached
            log.warning("bank cache: cannot write %s: %s", self.folder, exc)

    def _evict(self) -> None:
        assert self.folder is not None
        files = sorted(self.folder.glob("*.npz"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


def _truth_dict(t: GroundTruth) -> dict[str, object]:
    return {"seed": t.seed, "kind": t.part_kind,
            "boxes": [[b.class_id, b.x1, b.y1, b.x2, b.y2] for b in t.boxes]}


def _truth(d: dict[str, object]) -> GroundTruth:
    boxes = tuple(GroundTruthBox(int(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4]))
                  for b in d["boxes"])  # type: ignore[attr-defined]
    return GroundTruth(seed=int(d["seed"]), part_kind=str(d["kind"]), boxes=boxes)  # type: ignore[call-overload]
