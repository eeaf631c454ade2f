"""Throughput of the real `DbWriter` into a temporary SQLite file (WAL, synchronous=FULL).

Usage: ``python benchmarks/db_writer_bench.py [N]`` (default 50,000 results; one in
five NG with two accepted and one rejected detection, like a bad day on the line).

Two streams, each into a fresh database: frame results only (a free-running station), and
a triggered line of 8 cameras where every 8 frame results (tagged with their part id) come
with the `PartResult` of their part, as the station submits them.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from inspector.pipeline.results import (
    Detection,
    InspectionResult,
    PartResult,
    PartTimes,
    Provenance,
    StageTimes,
    Verdict,
)
from inspector.storage.db import migrate, open_database
from inspector.storage.writer import DbWriter

CAMERAS = 8


def _results(n: int) -> list[InspectionResult]:
    prov = Provenance("defect-yolo11n", "a" * 64, "openvino", (("scratch", 0.4),), "digest")
    times = StageTimes(1.0, 2.0, 7.0, 1.0, 0.1, 11.1)
    ng = (Detection(10, 10, 40, 30, 0, 0.81, "scratch"), Detection(50, 60, 70, 90, 1, 0.55, "dent"))
    rej = (Detection(5, 5, 9, 9, 2, 0.2, "stain"),)
    t0 = time.time()
    return [
        InspectionResult(
            camera_id=f"cam{i % CAMERAS}",
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


def _parts(results: list[InspectionResult]) -> list[InspectionResult | PartResult]:
    """The frames tagged with their part, each part's `PartResult` after its 8 frames."""
    cams = tuple(f"cam{c}" for c in range(CAMERAS))
    stream: list[InspectionResult | PartResult] = []
    for k in range(len(results) // CAMERAS):
        pid, tid = f"P{k}", k + 1
        frames = tuple(replace(r, part_id=pid, trigger_id=tid) for r in results[k * CAMERAS : (k + 1) * CAMERAS])
        ng = next((f for f in frames if f.ng), None)
        stream += frames
        stream.append(
            PartResult(
                part_id=pid,
                line="line1",
                trigger_id=tid,
                triggered_at=frames[0].acquired_at - 0.1,
                verdict=Verdict.NG if ng else Verdict.OK,
                reason=f"{ng.camera_id}: {ng.rule}" if ng else "no defect",
                frames=frames,
                expected=cams,
                deciding_camera=ng.camera_id if ng else None,
                budget_ms=1000.0,
                times=PartTimes(120.0, 180.0, 181.0),
                truth_ng=ng is not None,
                recipe="housing-a",
            )
        )
    return stream


def _run(stream: list[InspectionResult | PartResult]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        writer = DbWriter(engine, maxsize=len(stream) + 1)
        writer.start()
        t0 = time.perf_counter()
        for r in stream:
            if isinstance(r, PartResult):
                writer.submit_part(r)
            else:
                writer.submit(r)
        t_submit = time.perf_counter() - t0
        writer.stop(timeout=300)
        dt = time.perf_counter() - t0
        s = writer.stats()
        engine.dispose()
    return {**s, "seconds": dt, "submit_s": t_submit}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    results = _results(n)
    frames_only = _run(list(results))
    with_parts = _run(_parts(results))
    for label, s in (("frames only", frames_only), ("frames + parts", with_parts)):
        dt, frames, parts = s["seconds"], s["rows_written"], s["parts_written"]
        print(
            f"{label:>15}: {frames:.0f} results + {parts:.0f} parts in {dt:.2f} s: "
            f"{frames / dt:,.0f} results/s, {parts / dt:,.0f} parts/s "
            f"(submit {s['submit_s'] * 1e6 / (frames + parts):.1f} us/item; "
            f"skipped={s['skipped_full']:.0f}, spooled={s['spooled']:.0f}, lost={s['lost']:.0f})"
        )


if __name__ == "__main__":
    main()
