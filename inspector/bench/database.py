"""Database benchmark: sustained inserts through the real writer; history queries on 1M rows."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert

from inspector.ops.run_stats import percentiles
from inspector.pipeline.results import Detection, InspectionResult, Provenance, StageTimes, Verdict
from inspector.storage.db import migrate, open_database
from inspector.storage.history import HistoryFilter, query_history
from inspector.storage.models import CameraRecord, DetectionRecord, InspectionRecord, ModelRecord
from inspector.storage.writer import DbWriter

CLASSES = ("scratch", "dent", "crack", "contamination")
PROV = Provenance("bench", "b" * 64, "openvino", (("default", 0.35),), "digest")


def make_results(n: int, cameras: int = 8, ng_share: float = 0.3, seed: int = 0) -> list[InspectionResult]:
    """Results shaped like the demo line's (NG ones carry 1-3 detections)."""
    rng = random.Random(seed)
    t0 = time.time()
    out = []
    for i in range(n):
        ng = rng.random() < ng_share
        dets = tuple(
            Detection(10.0 * k, 10.0, 10.0 * k + 20, 30.0, c, 0.8, CLASSES[c])
            for k, c in enumerate(rng.randrange(4) for _ in range(rng.randint(1, 3) if ng else 0))
        )
        out.append(
            InspectionResult(
                camera_id=f"cam{i % cameras + 1}",
                sequence=i,
                acquired_at=t0 + i * 0.025,
                verdict=Verdict.NG if ng else Verdict.OK,
                rule=f"{dets[0].class_name}>=0.35" if ng else "no defect",
                detections=dets,
                times=StageTimes(1.0, 0.1, 5.0, 0.05, 0.01, 7.0),
                provenance=PROV,
                frame_width=320,
                frame_height=320,
            )
        )
    return out


def writer_throughput(engine: Engine, n: int = 50_000) -> float:
    """Results per second through `DbWriter` (submit all, stop() drains), fresh database."""
    results = make_results(n)
    w = DbWriter(engine)
    w.start()
    t0 = time.perf_counter()
    for r in results:
        while not w.submit(r):  # the bench wants all of them: wait for room instead of counting a skip
            time.sleep(0.001)
    w.stop(timeout=600)
    dt = time.perf_counter() - t0
    if w.rows_written != n:
        raise RuntimeError(f"writer wrote {w.rows_written} of {n}")
    return n / dt


def populate(engine: Engine, rows: int, cameras: int = 8, seed: int = 1) -> None:
    """Fill the history tables fast (bulk Core inserts): ``rows`` inspections over ~30 days."""
    rng = np.random.default_rng(seed)
    now = time.time()
    span = 30 * 86400
    with engine.begin() as conn:
        conn.execute(insert(ModelRecord), [{"sha256": PROV.model_sha256, "name": "bench", "backend": "openvino", "first_seen": now}])
        conn.execute(
            insert(CameraRecord),
            [{"id": f"cam{c + 1}", "kind": "simulated", "vendor": "", "model": "", "serial": "", "first_seen": now}
             for c in range(cameras)],
        )
    chunk = 100_000
    next_id = 1
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ts = now - span + (np.arange(start, start + n) / rows) * span
        ng = rng.random(n) < 0.08
        cams = rng.integers(1, cameras + 1, n)
        reviewed = rng.random(n) < 0.02
        insp = []
        dets = []
        for i in range(n):
            iid = next_id + i
            is_ng = bool(ng[i])
            cls = CLASSES[int(rng.integers(4))] if is_ng else ""
            insp.append(
                {
                    "id": iid, "uid": f"bench-{iid}", "camera_id": f"cam{cams[i]}", "sequence": iid,
                    "acquired_at": float(ts[i]), "verdict": "NG" if is_ng else "OK",
                    "rule": f"{cls}>=0.35" if is_ng else "no defect", "model_sha256": PROV.model_sha256,
                    "backend": "openvino", "wait_ms": 1.0, "preprocess_ms": 0.1, "inference_ms": 5.0,
                    "postprocess_ms": 0.05, "verdict_ms": 0.01, "total_ms": 7.0, "frame_width": 320,
                    "frame_height": 320, "settings_digest": "d",
                    "image_path": f"/archive/cam{cams[i]}/{iid}.jpg" if is_ng else None,
                    "review_mark": "confirmed" if (is_ng and reviewed[i]) else None,
                    "reviewed_by": "bench" if (is_ng and reviewed[i]) else None,
                    "reviewed_at": float(ts[i]) if (is_ng and reviewed[i]) else None,
                }
            )
            if is_ng:
                dets.append({"inspection_id": iid, "class_id": CLASSES.index(cls), "class_name": cls, "score": 0.8,
                             "x1": 10.0, "y1": 10.0, "x2": 30.0, "y2": 30.0, "accepted": True})
        next_id += n
        with engine.begin() as conn:
            conn.execute(insert(InspectionRecord), insp)
            if dets:
                conn.execute(insert(DetectionRecord), dets)


def history_latency(engine: Engine, repeats: int = 20) -> dict[str, Any]:
    """p95 of first-page and next-page history queries, per GUI filter."""
    now = time.time()
    filters = {
        "all": HistoryFilter(),
        "camera": HistoryFilter(camera_id="cam3"),
        "ng": HistoryFilter(verdict="NG"),
        "class": HistoryFilter(class_name="crack"),
        "last_24h": HistoryFilter(since=now - 86400),
        "reviewed": HistoryFilter(reviewed=True),
        "camera+ng+class+week": HistoryFilter(camera_id="cam5", verdict="NG", class_name="dent", since=now - 7 * 86400),
    }
    per: dict[str, float] = {}
    all_times: list[float] = []
    for name, flt in filters.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            page = query_history(engine, flt, limit=200)
            times.append((time.perf_counter() - t0) * 1e3)
            if page:
                t0 = time.perf_counter()
                query_history(engine, flt, limit=200, before=page[-1].cursor)
                times.append((time.perf_counter() - t0) * 1e3)
        per[name] = float(np.percentile(times, 95))
        all_times.extend(times)
    worst = max(per, key=lambda k: per[k])
    return {"query_p95_ms": float(np.percentile(all_times, 95)), "per_filter_p95_ms": per, "worst_query": worst,
            "worst_p95_ms": per[worst], "latency": percentiles(all_times)}


def run_db_bench(rows: int = 1_000_000, inserts: int = 50_000, url: str | None = None) -> dict[str, Any]:
    """Both database numbers on a fresh SQLite file (or the given URL)."""
    with tempfile.TemporaryDirectory() as tmp:
        u1 = url or f"sqlite:///{Path(tmp) / 'writer.db'}"
        e1 = open_database(u1)
        migrate(e1)
        ips = writer_throughput(e1, inserts)
        e1.dispose()
        u2 = url or f"sqlite:///{Path(tmp) / 'history.db'}"
        e2 = open_database(u2)
        migrate(e2)
        t0 = time.perf_counter()
        populate(e2, rows)
        fill_s = time.perf_counter() - t0
        q = history_latency(e2)
        e2.dispose()
    return {"url_kind": "sqlite" if url is None else url.split(":", 1)[0], "inserts_per_s": ips, "inserts": inserts,
            "rows": rows, "fill_s": fill_s, **q}
