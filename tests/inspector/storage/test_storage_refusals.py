"""A station's database must keep what it is told: in-memory and read-only databases are refused at start.

An in-memory SQLite URL (``--db sqlite://``) ran a whole shift, reported every row written and
kept nothing; a read-only database file was accepted and every result went to the spool
(issue 26, item 7). Both are now one line naming the URL and what to do, and exit 2.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.storage.db import StorageError, migrate, open_database

REPO = Path(__file__).resolve().parents[3]
_CHILD = "import sys\nfrom inspector.cli import run_cli\nrun_cli(sys.argv[1:])\n"
_STATION = 'name = "refusals"\n[[cameras]]\nid = "c"\nkind = "simulated"\nfps = 5\nwidth = 160\nheight = 160\nbank_size = 2\n'

IN_MEMORY = [
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite+pysqlite://",
    "sqlite:///file:line1?mode=memory&cache=shared&uri=true",
]


def _one_line(msg: str) -> str:
    assert "\n" not in msg.strip() and "Traceback" not in msg, msg
    return msg.strip()


@pytest.mark.parametrize("url", IN_MEMORY)
def test_in_memory_database_refused_for_a_station(url: str) -> None:
    with pytest.raises(StorageError) as info:
        open_database(url, durable=True)
    msg = _one_line(str(info.value))
    assert repr(url) in msg and "in-memory" in msg and "sqlite:///" in msg  # names the URL and what to give


def test_in_memory_database_still_opens_for_tools_and_tests() -> None:
    engine = open_database("sqlite://")  # the default: tests and throwaway tools may use one
    migrate(engine)
    engine.dispose()


def _read_only(p: Path) -> None:
    p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _migrated(path: Path) -> None:
    engine = open_database(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()


def test_read_only_database_file_refused(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    _migrated(db)
    _read_only(db)
    url = f"sqlite:///{db}"
    with pytest.raises(StorageError) as info:
        open_database(url, durable=True)
    msg = _one_line(str(info.value))
    assert repr(url) in msg and "read-only" in msg and str(db) in msg


def test_database_in_a_read_only_folder_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    _migrated(folder / "station.db")
    for leftover in folder.glob("station.db-*"):  # the WAL and shared-memory files of the last run
        leftover.unlink()
    _read_only(folder)
    try:
        for name in ("station.db", "new.db"):  # an existing file, and one SQLite would have to create
            url = f"sqlite:///{folder / name}"
            with pytest.raises(StorageError) as info:
                open_database(url, durable=True)
            msg = _one_line(str(info.value))
            assert repr(url) in msg and "read-only" in msg and str(folder) in msg
    finally:
        folder.chmod(0o755)


def test_read_only_uri_refused(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    _migrated(db)
    url = f"sqlite:///file:{db}?mode=ro&uri=true"
    with pytest.raises(StorageError, match="read-only"):
        open_database(url, durable=True)


def test_writable_file_is_accepted(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'ok.db'}", durable=True)
    migrate(engine)
    engine.dispose()


def _run_headless(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "station.toml"
    cfg.write_text(_STATION)
    env = {k: v for k, v in os.environ.items() if k != "INSPECTOR_DB_URL"}
    return subprocess.run(
        [sys.executable, "-c", _CHILD, "run", "--headless", "--config", str(cfg), "--db", url,
         "--no-archive", "--duration", "1", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env, check=False,
    )


def test_run_headless_refuses_an_in_memory_database(tmp_path: Path) -> None:
    res = _run_headless(tmp_path, "sqlite://")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("inspector: ") and "'sqlite://'" in lines[0] and "in-memory" in lines[0]
    assert "rows" not in res.stdout  # nothing ran


def test_run_headless_refuses_a_read_only_database(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    _migrated(db)
    _read_only(db)
    res = _run_headless(tmp_path, f"sqlite:///{db}")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("inspector: ") and "read-only" in lines[0] and str(db) in lines[0]
    assert not (tmp_path / "station.db.spool.jsonl").exists()  # no result went to the spool
