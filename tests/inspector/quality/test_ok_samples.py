"""OK images kept for learning (issue 29.1, engine side): every Nth OK frame per camera in the archive's @ok
folder, with their own age and size limits in the database retention, and a "missed" review refused, with the
reason, on an inspection whose image is not kept."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text

from inspector.access.control import StationControl
from inspector.access.users import Role
from inspector.archive import OK_FOLDER, NgArchive
from inspector.config import StorageConfig
from inspector.pipeline.results import InspectionResult
from inspector.storage.db import migrate, open_database
from inspector.storage.history import ReviewRefused, set_review
from inspector.storage.retention import DAY_S, RetentionPolicy, StorageRetention
from inspector.storage.writer import DbWriter
from tests.inspector.factories import make_result

NOW = 1_750_000_000.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_database(f"sqlite:///{tmp_path / 'station.db'}", durable=True)
    migrate(eng)
    yield eng
    eng.dispose()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_every_nth_ok_frame_of_each_camera_is_kept_beside_the_ng_images(tmp_path: Path) -> None:
    archive = NgArchive(tmp_path / "ng", fmt="png", ok_sample_every=3)
    results = [make_result(cam, seq, "OK", with_frame=True) for cam in ("cam1", "cam2") for seq in range(7)]
    ng = make_result("cam1", 100, "NG", [("scratch", 0.9)], with_frame=True)
    assert [archive.wants(r) for r in results[:7]] == [True, False, False, True, False, False, True]
    archive.start()
    for r in [*results, ng]:
        assert archive.submit(r)
    archive.stop()
    kept = [r for r in results if r.sequence % 3 == 0]
    expected = sorted(Path(str(archive.path_for(r))) for r in [*kept, ng])
    assert _files(tmp_path / "ng") == expected
    assert all(Path(str(archive.path_for(r))).is_relative_to(tmp_path / "ng" / OK_FOLDER / r.camera_id) for r in kept)
    assert not Path(str(archive.path_for(ng))).is_relative_to(tmp_path / "ng" / OK_FOLDER)
    assert all(archive.path_for(r) is None for r in results if r not in kept)
    s = archive.stats()
    assert (s["written"], s["written_ok"], s["ignored_ok"]) == (7, 6, 8)
    assert s["ok_sample_bytes"] == sum(os.path.getsize(str(archive.path_for(r))) for r in kept)
    assert all(r.frame is not None and r.frame.refcount == 1 for r in [*results, ng])  # every frame went back
    # a restart indexes what is there: the same totals
    again = NgArchive(tmp_path / "ng", fmt="png", ok_sample_every=3)
    again.index()
    assert (again.archive_bytes, again.ok_sample_bytes) == (s["archive_bytes"], s["ok_sample_bytes"])


def test_storage_keys() -> None:
    st = StorageConfig(ok_sample_every=50, ok_sample_max_age_days=3, ok_sample_max_gb=0.5)
    policy = RetentionPolicy.from_config(st)
    assert (policy.ok_image_max_age_days, policy.ok_images_max_bytes) == (3.0, 500_000_000)
    assert StorageConfig().ok_sample_every == 0  # off unless asked for
    for bad in ({"ok_sample_every": -1}, {"ok_sample_max_gb": 0}, {"ok_sample_max_age_days": -2}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            StorageConfig(**bad)


def _store(engine: Engine, archive: NgArchive, results: Sequence[InspectionResult], size: int = 1000) -> None:
    """The rows through the real writer (image paths from the archive) and an image file of ``size`` bytes each."""
    writer = DbWriter(engine, image_path_for=archive.path_for, linger_s=0.0)
    writer.start()
    for r in results:
        assert writer.submit(r)
    writer.stop()
    for r in results:
        path = archive.path_for(r)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"\xff" * size)


def _rows(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as c:
        return dict(c.execute(text("SELECT sequence, image_path FROM inspections")).all())  # type: ignore[arg-type]


def _ok(seq: int, days: float) -> InspectionResult:
    return make_result("cam1", seq, "OK", acquired_at=NOW - days * DAY_S)


def _policy(**kw: object) -> RetentionPolicy:
    base: dict[str, object] = {"ok_max_age_days": 30.0, "ng_max_age_days": 90.0, "image_max_age_days": 30.0,
                               "ok_image_max_age_days": 7.0, "pause_s": 0.0, "batch_rows": 3}
    base.update(kw)
    return RetentionPolicy(**base)  # type: ignore[arg-type]


def _check_no_row_points_to_a_missing_image(engine: Engine) -> None:
    assert all(p is None or Path(p).is_file() for p in _rows(engine).values())


def test_ok_samples_go_at_their_own_age_the_rows_stay(engine: Engine, tmp_path: Path) -> None:
    archive = NgArchive(tmp_path / "ng", ok_sample_every=2)
    days = {0: 1, 2: 5, 4: 8, 6: 10, 8: 20}  # sampled (even) frames, days old
    ng = make_result("cam1", 9, "NG", [("scratch", 0.9)], acquired_at=NOW - 20 * DAY_S)
    _store(engine, archive, [*(_ok(s, d) for s, d in days.items()), _ok(1, 10), ng])
    ret = StorageRetention(engine, _policy(), archive)
    ret.run_pass(now=NOW)
    rows = _rows(engine)
    assert sorted(rows) == [0, 1, 2, 4, 6, 8, 9]  # every row is younger than ok_max_age_days
    assert [s for s in (0, 2, 4, 6, 8) if rows[s]] == [0, 2]  # images older than 7 days are gone
    assert rows[9] is not None and rows[1] is None  # the NG image stays; frame 1 was never sampled
    assert ret.expired_ok_images == 3 and archive.ok_sample_bytes == 2000
    assert len(_files(tmp_path / "ng" / OK_FOLDER)) == 2
    _check_no_row_points_to_a_missing_image(engine)


def test_over_their_size_limit_the_oldest_ok_samples_go(engine: Engine, tmp_path: Path) -> None:
    archive = NgArchive(tmp_path / "ng", ok_sample_every=1)
    _store(engine, archive, [_ok(s, 3 - s * 0.1) for s in range(10)])  # 10 images of 1000 bytes, within 7 days
    ret = StorageRetention(engine, _policy(ok_images_max_bytes=5000), archive)
    ret.run_pass(now=NOW)
    # over 5000 bytes: the oldest go until 95% of it (4750) is reached: 6 of them
    rows = _rows(engine)
    assert [s for s in range(10) if rows[s]] == [6, 7, 8, 9]
    assert archive.ok_sample_bytes == 4000
    _check_no_row_points_to_a_missing_image(engine)


def test_a_reviewed_ok_image_is_kept_as_long_as_an_ng_image(engine: Engine, tmp_path: Path) -> None:
    archive = NgArchive(tmp_path / "ng", ok_sample_every=1)
    _store(engine, archive, [_ok(1, 10), _ok(2, 10), _ok(3, 40)])
    with engine.connect() as c:
        ids = dict(c.execute(text("SELECT sequence, id FROM inspections")).all())
    set_review(engine, ids[1], "missed", "qe", need_image=True)
    set_review(engine, ids[3], "missed", "qe", need_image=True)
    StorageRetention(engine, _policy(ng_max_age_days=90.0, image_max_age_days=30.0), archive).run_pass(now=NOW)
    rows = _rows(engine)
    assert rows[1] is not None  # reviewed, 10 days: kept for labelling
    assert rows[2] is None  # not reviewed, past 7 days
    assert rows[3] is None and 3 in rows  # reviewed, past the NG images' 30 days: the row stays, the image goes
    _check_no_row_points_to_a_missing_image(engine)


def test_missed_needs_the_image_and_says_why_it_is_not_there(engine: Engine, tmp_path: Path) -> None:
    archive = NgArchive(tmp_path / "ng", ok_sample_every=2)
    _store(engine, archive, [_ok(1, 1), _ok(2, 1), make_result("cam1", 3, "NG", [("scratch", 0.9)])])
    with engine.connect() as c:
        ids = dict(c.execute(text("SELECT sequence, id FROM inspections")).all())
    control = StationControl.offline(engine)
    control.create_admin("root-password", name="root")
    control.login("root", "root-password")
    control.add_user("eve", "eve-password", Role.ENGINEER)
    control.logout()
    control.login("eve", "eve-password")
    with pytest.raises(ReviewRefused, match=r"inspection \d+: 'missed' needs the image to label the defect, and "
                                             r"none was kept \(OK images are kept only as a sample: \[storage\] "
                                             r"ok_sample_every\)"):
        control.review(ids[1], "missed")
    assert control.review(ids[1], "confirmed") is None  # a judgement of the verdict needs no image
    assert control.review(ids[2], "missed") is None  # sampled: its image is there
    Path(str(_rows(engine)[3])).unlink()  # the NG image lost (a full disk)
    with pytest.raises(ReviewRefused, match=r"is gone \(retention or a full disk\)"):
        control.review(ids[3], "missed")
    with engine.connect() as c:
        marks = dict(c.execute(text("SELECT sequence, review_mark FROM inspections")).all())
    assert marks == {1: "confirmed", 2: "missed", 3: None}
    actions = [(e.action, e.new) for e in control.audit_entries() if e.action == "history.review"]
    assert sorted(actions, key=str) == [("history.review", "confirmed"), ("history.review", "missed")]
    with pytest.raises(KeyError):
        control.review(10_000, "missed")
