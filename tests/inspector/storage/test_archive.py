"""NG image archive: what is written where, retention, full disk."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.archive import NgArchive
from inspector.pipeline.results import InspectionResult
from tests.inspector.factories import make_result, wait_until

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _run(archive: NgArchive, results: list[InspectionResult]) -> None:
    archive.start()
    for r in results:
        assert archive.submit(r)
    archive.stop()


@pytest.mark.parametrize(
    ("fmt", "shape"), [("png", (32, 32, 3)), ("png", (24, 40)), ("jpg", (32, 32, 3)), ("jpg", (24, 40))]
)
def test_ng_written_ok_ignored(tmp_path: Path, fmt: str, shape: tuple[int, ...]) -> None:
    archive = NgArchive(tmp_path / "ng", fmt=fmt)
    ng = make_result("cam1", 7, "NG", [("scratch", 0.9)], with_frame=True, shape=shape)
    ok = make_result("cam1", 8, "OK", with_frame=True, shape=shape)
    assert ng.frame is not None and ok.frame is not None
    assert archive.wants(ng) and not archive.wants(ok)
    _run(archive, [ng, ok])

    path = archive.path_for(ng)
    assert path is not None and archive.path_for(ok) is None
    assert _images(tmp_path / "ng") == [Path(path)]
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert img.shape == shape
    if fmt == "png":  # lossless: the very pixels of the frame
        assert np.array_equal(img, ng.frame.image)
    s = archive.stats()
    assert (s["written"], s["ignored_ok"], s["alarm"]) == (1, 1, 0)
    assert s["archive_bytes"] == os.path.getsize(path)
    # both frames went back to the pool: only its "latest" reference is left
    assert ng.frame.refcount == 1 and ok.frame.refcount == 1


def test_path_for_is_deterministic(tmp_path: Path) -> None:
    archive = NgArchive(tmp_path, fmt="jpg")
    r = make_result("cam1", 7, "NG", acquired_at=T0 + 0.7)
    assert archive.path_for(r) == str(tmp_path / "cam1" / "2023-11-14" / "cam1_7_1700000000700.jpg")
    assert archive.path_for(r) == archive.path_for(make_result("cam1", 7, "NG", acquired_at=T0 + 0.7))
    odd = make_result("line 1/top", 3, "NG", acquired_at=T0)
    assert archive.path_for(odd) == str(tmp_path / "line_1_top" / "2023-11-14" / "line_1_top_3_1700000000000.jpg")
    assert NgArchive(tmp_path, fmt="png").path_for(r).endswith(".png")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="archive.fmt"):
        NgArchive(tmp_path, fmt="bmp")


def test_retention_by_size_deletes_oldest(tmp_path: Path) -> None:
    probe = NgArchive(tmp_path / "probe", fmt="png")
    _run(probe, [make_result("cam1", 0, "NG", with_frame=True)])
    size = int(probe.archive_bytes)

    archive = NgArchive(tmp_path / "ng", fmt="png", max_total_bytes=int(size * 4.5))
    results = [make_result("cam1", i, "NG", with_frame=True, acquired_at=T0 + i) for i in range(10)]
    _run(archive, results)
    kept = _images(tmp_path / "ng")
    assert kept == [Path(archive.path_for(r)) for r in results[-len(kept) :]]  # type: ignore[arg-type]
    assert 3 <= len(kept) <= 4
    assert archive.archive_bytes == sum(p.stat().st_size for p in kept) <= archive.max_total_bytes  # type: ignore[operator]
    assert archive.stats()["deleted"] == 10 - len(kept)


def test_retention_by_age_indexes_existing_files(tmp_path: Path) -> None:
    root = tmp_path / "ng"
    old_day, new_day = root / "cam1" / "2023-01-01", root / "cam1" / "2023-11-14"
    old_day.mkdir(parents=True)
    new_day.mkdir(parents=True)
    now = time.time()
    old = [old_day / f"cam1_{i}_0.jpg" for i in range(3)]
    new = [new_day / f"cam1_{i}_0.jpg" for i in range(3, 5)]
    for i, p in enumerate(old + new):
        p.write_bytes(b"x" * 100)
        age_days = 40 - i if p in old else 1
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    (new_day / "cam1_9_0.jpg.part").write_bytes(b"half")  # left by a crash

    archive = NgArchive(root, max_age_days=30)
    assert archive.enforce_retention() == 3
    assert _images(root) == sorted(new)
    assert not old_day.exists()  # the emptied day folder went too
    assert archive.archive_bytes == 200
    assert archive.enforce_retention() == 0


def test_disk_full_drops_counts_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = NgArchive(tmp_path / "ng", fmt="png")
    real_write = archive._write_bytes

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(archive, "_write_bytes", disk_full)
    archive.start()
    full = [make_result("cam1", i, "NG", with_frame=True) for i in range(3)]
    t = time.perf_counter()
    assert all(archive.submit(r) for r in full)
    assert time.perf_counter() - t < 0.1  # inspection never waits for the disk
    wait_until(lambda: archive.handled == 3, what="3 NG results handled")
    s = archive.stats()
    assert (s["dropped_disk_full"], s["written"], s["alarm"]) == (3, 0, 1.0)
    assert all(r.frame is not None and r.frame.refcount == 1 for r in full)  # frames released

    monkeypatch.setattr(archive, "_write_bytes", real_write)
    again = make_result("cam1", 10, "NG", with_frame=True)
    assert archive.submit(again)
    archive.stop()
    s = archive.stats()
    assert (s["dropped_disk_full"], s["written"], s["alarm"]) == (3, 1, 0.0)
    assert _images(tmp_path / "ng") == [Path(archive.path_for(again))]  # type: ignore[arg-type]


def test_low_free_space_purges_oldest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = NgArchive(tmp_path / "ng", fmt="png", min_free_bytes=10_000)
    # a pretend filesystem with room for the margin plus ~3 images
    capacity = 10_000 + 3 * 3_200
    monkeypatch.setattr(archive, "_free_bytes", lambda: capacity - archive.archive_bytes)
    results = [make_result("cam1", i, "NG", with_frame=True, acquired_at=T0 + i) for i in range(8)]
    _run(archive, results)
    kept = _images(tmp_path / "ng")
    assert archive.written == 8 and archive.purged == 8 - len(kept) > 0
    assert kept == [Path(archive.path_for(r)) for r in results[-len(kept) :]]  # type: ignore[arg-type]
    assert capacity - archive.archive_bytes >= 10_000
