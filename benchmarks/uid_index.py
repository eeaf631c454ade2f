"""A months-old database: how fast the real `DbWriter` adds results with random (UUID4) against
time-ordered (UUID7, `inspector.storage.uids`) row uids.

Each round fills a fresh SQLite file (WAL, synchronous=FULL, as the station opens it) with
``--rows`` older inspections whose uids are of one kind, then times the writer storing
``--new`` more results with uids of that kind; the two kinds alternate round by round. The
``uid`` column has a unique index: random uids land on random pages of it (each commit
rewrites pages all over the index), time-ordered ones at its end. Prints results/s, the bytes
written per result and the CPU (shared machines drift: compare the two within one run).

    python benchmarks/uid_index.py --rows 2000000 --new 50000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import inspector.storage.writer as writer_module  # noqa: E402
from db_writer_bench import _results  # noqa: E402
from inspector.bench import cpu_description  # noqa: E402
from inspector.storage.db import migrate, open_database  # noqa: E402
from inspector.storage.uids import UidClock  # noqa: E402


def _uuid4() -> str:
    return str(uuid.uuid4())


def _prefill(path: Path, rows: int, make_uid: Any) -> None:
    """``rows`` old inspections straight through sqlite3 (the writer's path would take minutes; this
    connection does not enforce foreign keys, so they need no camera or model rows)."""
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute("pragma table_info(inspections)") if r[1] != "id"]
    template = {c: 0 for c in cols}
    template.update(camera_id="old-cam", verdict="OK", rule="no defect", model_sha256="b" * 64, backend="openvino",
                    settings_digest="d", image_path=None, part_id=None, late=0, review_mark=None, reviewed_by=None,
                    reviewed_at=None)
    sql = f"insert into inspections ({', '.join(cols)}) values ({', '.join('?' for _ in cols)})"
    t0 = time.time() - 90 * 86400
    step = 10_000
    for start in range(0, rows, step):
        batch = []
        for i in range(start, min(rows, start + step)):
            row = dict(template, uid=make_uid(), sequence=i, acquired_at=t0 + i * 0.004)
            batch.append([row[c] for c in cols])
        con.executemany(sql, batch)
        con.commit()
    con.close()


def _round(kind: str, rows: int, new: int, tmp: Path) -> dict[str, float]:
    path = tmp / f"{kind}.db"
    engine = open_database(f"sqlite:///{path}")
    migrate(engine)
    make_uid = _uuid4 if kind == "uuid4" else UidClock()
    _prefill(path, rows, make_uid)
    writer_module.new_uid = make_uid  # the writer's uids of this kind for the new results too
    results = _results(new)
    w = writer_module.DbWriter(engine, maxsize=new + 1)
    written_before = _bytes_written()
    w.start()
    t0 = time.perf_counter()
    for r in results:
        w.submit(r)
    w.stop(timeout=600)
    dt = time.perf_counter() - t0
    s = w.stats()
    written = _bytes_written() - written_before
    engine.dispose()
    for p in tmp.iterdir():
        p.unlink()
    return {"per_s": s["rows_written"] / dt, "written_per_result": written / max(1, s["rows_written"])}


def _bytes_written() -> int:
    """Bytes this process has written so far (``/proc/self/io``: the WAL, and the checkpoints into the file)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="Older inspections in the database first.")
    ap.add_argument("--new", type=int, default=50_000, help="Results the writer adds, timed.")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    got: dict[str, list[dict[str, float]]] = {"uuid4": [], "uuid7": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in ("uuid4", "uuid7") if r % 2 == 0 else ("uuid7", "uuid4"):
                m = _round(kind, args.rows, args.new, Path(tmp))
                got[kind].append(m)
                print(f"round {r + 1}: {kind}: {m['per_s']:,.0f} results/s, {m['written_per_result'] / 1024:.1f} KiB "
                      f"written per result", flush=True)
    cpu = cpu_description()
    med = {k: statistics.median(m["per_s"] for m in v) for k, v in got.items()}
    print(f"{args.rows:,} rows before, {args.new:,} added; medians: uuid4 {med['uuid4']:,.0f}/s, "
          f"uuid7 {med['uuid7']:,.0f}/s, uuid7/uuid4 = {med['uuid7'] / med['uuid4']:.2f}; "
          f"CPU {cpu['model']} ({' '.join(cpu['isa'])}), load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
