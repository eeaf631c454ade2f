"""Throughput of the real `DbWriter` into a temporary SQLite file (WAL, synchronous=FULL).

Usage: ``python benchmarks/db_writer_bench.py [N]`` (default 50,000 results; one in
five NG with two accepted and one rejected detection, like a bad day on the line).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from inspector.pipeline.results import Detection, InspectionResult, Provenance, StageTimes, Verdict
from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter


def _results(n: int) -> list[InspectionResult]:
    prov = Provenance("defect-yolo11n", "a" * 64, "openvino", (("scratch", 0.4),), "digest")
    times = StageTimes(1.0, 2.0, 7.0, 1.0, 0.1, 11.1)
    ng = (Detection(10, 10, 40, 30, 0, 0.81, "scratch"), Detection(50, 60, 70, 90, 1, 0.55, "dent"))
    rej = (Detection(5, 5, 9, 9, 2, 0.2, "stain"),)
    t0 = time.time()
    return [
        InspectionResult(
            camera_id=f"cam{i % 8}",
            sequence=i,
            acquired_at=t0 + i * 0.004,
            verdict=Verdict.NG if i % 5 == 0 else Verdict.OK,
            rule="scratch>=0.40" if i % 5 == 0 else "no defect",
            detections=ng if i % 5 == 0 else (),
            rejected=rej if i % 5 == 0 else (),
            times=times,
            provenance=prov,
            frame_width=1280,
            frame_height=1024,
        )
        for i in range(n)
    ]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    results = _results(n)
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        writer = DbWriter(engine, maxsize=n + 1)
        writer.start()
        t0 = time.perf_counter()
        for r in results:
            writer.submit(r)
        t_submit = time.perf_counter() - t0
        writer.stop(timeout=300)
        dt = time.perf_counter() - t0
        s = writer.stats()
        engine.dispose()
    print(
        f"{n} results in {dt:.2f} s: {n / dt:,.0f} results/s "
        f"(submit {t_submit * 1e6 / n:.1f} us/result; rows_written={s['rows_written']:.0f}, "
        f"skipped={s['skipped_full']:.0f}, spooled={s['spooled']:.0f})"
    )


if __name__ == "__main__":
    main()
