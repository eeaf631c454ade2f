"""Fast synthetic inspection databases for the history browser tests.

Rows go in with raw ``sqlite3`` ``executemany`` in one transaction into a schema made by
the real migrations, so a million inspections take seconds, not minutes.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.storage.db import migrate, open_database

CAMERAS = ("line-cam1", "line-cam2", "line-cam3", "line-cam4")
CLASSES = ("scratch", "dent", "crack", "contamination")
MODEL_SHA = "b" * 64


@dataclass(frozen=True)
class HistoryDb:
    """What was generated."""

    url: str
    path: Path
    rows: int
    ng_rows: int
    first_at: float
    last_at: float


def build_history_db(
    path: Path,
    rows: int,
    *,
    end: float | None = None,
    spacing_s: float = 0.1,
    ng_share: float = 0.08,
    seed: int = 7,
    images: Path | None = None,
    review_every: int = 0,
) -> HistoryDb:
    """Create a migrated SQLite database with ``rows`` inspections, newest at ``end``.

    Args:
        path: Database file (must not exist).
        rows: Number of inspections.
        end: Time of the newest row (default now).
        spacing_s: Seconds between consecutive rows.
        ng_share: Share of NG rows; each NG row has 1-2 accepted detections and one rejected.
        seed: RNG seed.
        images: Write a real 96x96 image for each NG row here (small databases only).
        review_every: Mark every n-th NG row confirmed / false_call / missed in turn (0: none).
    """
    url = f"sqlite:///{path}"
    eng = open_database(url)
    migrate(eng)
    eng.dispose()
    end = time.time() if end is None else end
    first = end - (rows - 1) * spacing_s
    rng = np.random.default_rng(seed)
    ng = rng.random(rows) < ng_share
    cam_idx = rng.integers(0, len(CAMERAS), rows)
    n_dets = rng.integers(1, 3, rows)
    cls_idx = rng.integers(0, len(CLASSES), (rows, 3))
    scores = rng.uniform(0.4, 0.99, (rows, 3))
    totals = rng.gamma(4.0, 6.0, rows)
    marks = ("confirmed", "false_call", "missed")

    def inspections():  # type: ignore[no-untyped-def]
        ng_seen = 0
        for i in range(rows):
            is_ng = bool(ng[i])
            cam = CAMERAS[cam_idx[i]]
            image_path = None
            mark = None
            if is_ng:
                ng_seen += 1
                image_path = str(images / f"{i + 1}.png") if images is not None else f"/nonexistent/{cam}/{i + 1}.jpg"
                if review_every and ng_seen % review_every == 0:
                    mark = marks[(ng_seen // review_every) % 3]
            yield (
                i + 1, f"00000000-0000-4000-8000-{i + 1:012x}", cam, i // len(CAMERAS) + 1, first + i * spacing_s,
                "NG" if is_ng else "OK", f"{CLASSES[cls_idx[i, 0]]}>=0.35" if is_ng else "no defect", MODEL_SHA,
                "openvino", 1.0, 0.5, 7.0, 0.3, 0.01, float(totals[i]), 96, 96, "digest", image_path,
                mark, "eng" if mark else None, end if mark else None,
                None, 0,  # part_id, late (free-running frames belong to no part)
            )

    def detections():  # type: ignore[no-untyped-def]
        did = 0
        for i in np.flatnonzero(ng):
            for k in range(int(n_dets[i])):
                did += 1
                c = int(cls_idx[i, k])
                x = 10.0 + 30 * k
                yield (did, int(i) + 1, c, CLASSES[c], float(scores[i, k]), x, 20.0, x + 20.0, 44.0, 1)
            did += 1
            yield (did, int(i) + 1, 0, CLASSES[0], 0.1, 60.0, 60.0, 70.0, 70.0, 0)  # below threshold

    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("BEGIN")
        con.execute("INSERT INTO models VALUES (?, 'defect-test', 'openvino', ?)", (MODEL_SHA, first))
        con.executemany("INSERT INTO cameras VALUES (?, 'simulated', 'inspector', 'Sim', '', ?)", [(c, first) for c in CAMERAS])
        con.executemany(f"INSERT INTO inspections VALUES ({', '.join('?' * 24)})", inspections())
        con.executemany("INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", detections())
        con.execute("COMMIT")
        con.execute("ANALYZE")
    finally:
        con.close()
    if images is not None:
        images.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(ng):
            img = np.full((96, 96, 3), 90, np.uint8)
            cv2.rectangle(img, (10, 20), (30, 44), (0, 200, 255), -1)
            cv2.imwrite(str(images / f"{int(i) + 1}.png"), img)
    return HistoryDb(url, path, rows, int(ng.sum()), first, end)
