"""A small station history for the review tests, written the way a station writes it: results through the
image archive (NG images and a sample of OK ones, `[storage] ok_sample_every`) and the database writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from inspector.archive import NgArchive
from inspector.pipeline.results import Detection
from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result

#: The shipped model's classes (the history keeps the names the model gave).
CLASSES = ("scratch", "dent", "crack", "contamination")
SHAPE = (60, 80, 3)
#: The NG frame's four boxes: (class, score, x1, y1, x2, y2) in image pixels.
FOUR_BOXES = (("scratch", 0.91, 4, 6, 20, 18), ("dent", 0.82, 30, 8, 44, 24),
              ("crack", 0.77, 50, 30, 70, 50), ("scratch", 0.66, 8, 36, 26, 52))
OK_SAMPLE_EVERY = 5


@dataclass(frozen=True)
class ReviewedHistory:
    """What `write_history` stored: the database and the ids of its inspections."""

    engine: Engine
    ng_id: int  # NG, four accepted boxes, image kept
    ok_kept_id: int  # OK, its image kept as a sample
    ok_not_kept_id: int  # OK, not sampled: no image


def write_history(tmp_path: Path) -> ReviewedHistory:
    """Three inspections of camera ``cam1`` with the images the archive keeps (PNG)."""
    engine = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    migrate(engine)
    archive = NgArchive(tmp_path / "archive", fmt="png", ok_sample_every=OK_SAMPLE_EVERY)
    dets = [Detection(float(x1), float(y1), float(x2), float(y2), CLASSES.index(c), s, c)
            for c, s, x1, y1, x2, y2 in FOUR_BOXES]
    results = [make_result("cam1", 7, "NG", dets, with_frame=True, shape=SHAPE),
               make_result("cam1", 2 * OK_SAMPLE_EVERY, "OK", with_frame=True, shape=SHAPE),
               make_result("cam1", 2 * OK_SAMPLE_EVERY + 1, "OK", with_frame=True, shape=SHAPE)]
    writer = DbWriter(engine, image_path_for=archive.path_for, linger_s=0.0)
    archive.start()
    writer.start()
    for r in results:
        assert writer.submit(r)
        if archive.wants(r):
            assert archive.submit(r)
        elif r.frame is not None:
            r.frame.release()
    writer.stop()
    archive.stop()
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT sequence, id FROM inspections")).all())
    return ReviewedHistory(engine, ids[7], ids[2 * OK_SAMPLE_EVERY], ids[2 * OK_SAMPLE_EVERY + 1])
