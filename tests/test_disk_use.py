"""The suite must not fill the disk it runs on.

Every station database reserves a 64 MiB result spool beside it (``[storage] spool_reserve_mb``).
A whole run opens hundreds of them; when each test's folders were kept until the session ended,
one run left ~9 GB behind and a CI machine ran out of space 89% of the way through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_passing_tests_folders_are_removed_when_it_ends(tmp_path: Path) -> None:
    basetemp = tmp_path / "run"
    # a test that opens two station databases (each reserving its spool) in tmp_path and the default home
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
         "tests/inspector/storage/test_storage_parts.py::test_query_parts_filters"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    left = _bytes_under(basetemp) if basetemp.exists() else 0
    assert left < 8 * 2**20, f"{left / 2**20:.1f} MiB left under {basetemp} after passing tests"
