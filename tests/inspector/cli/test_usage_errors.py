"""Bad command-line options and station files nested too deeply: one line naming the thing, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inspector.config import ConfigError, parse_config


@pytest.mark.parametrize("entry", [["-m", "gui.launcher"], ["-m", "inspector.cli"]])
@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["run", "--bogus"], "--bogus"),
        (["history", "--limit", "abc"], "--limit"),
        (["eval", "--threshold", "3"], "--threshold"),
        (["users", "add"], "name"),
    ],
)
def test_usage_error_is_one_line_and_exit_2(entry: list[str], args: list[str], names: str) -> None:
    res = subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("inspector ") and names in lines[0] and "--help" in lines[0]


def test_bench_streams_that_are_neither_auto_nor_a_count_are_one_line() -> None:
    res = subprocess.run([sys.executable, "-m", "inspector.cli", "bench", "--streams", "fast"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == 'inspector: --streams: must be "auto" or a whole number from 0 to 64, got \'fast\''


def test_toml_nested_500_deep_is_one_config_error(tmp_path: Path) -> None:
    text = 'name = "p"\nx = ' + "[" * 500 + "]" * 500 + "\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "deep.toml")
    assert str(err.value) == "deep.toml: not valid TOML: nested too deeply"


def test_database_from_a_newer_schema_is_one_line(tmp_path: Path) -> None:
    import sqlite3

    from typer.testing import CliRunner

    from gui.launcher import app

    url = f"sqlite:///{tmp_path / 's.db'}"
    assert CliRunner().invoke(app, ["history", "--db", url]).exit_code == 0
    con = sqlite3.connect(tmp_path / "s.db")
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.commit()
    con.close()
    res = CliRunner().invoke(app, ["history", "--db", url])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert "Can't locate revision identified by '0099'" in res.output and "newer inspector" in res.output
