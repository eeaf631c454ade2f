"""Test-wide settings: no GPU, no network, no developer settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from inspector.storage.db import migrate, open_database

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep the developer's real database and settings out of every test (removed after it: a
    station database there reserves a 64 MiB spool)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.delenv("INSPECTOR_DB_URL", raising=False)
    # rendered part banks are not cached across tests (they would fill the machine's cache
    # folder); tests of the cache give it a folder of their own
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", "off")
    # a station under test never starts a child process timing the precisions (tests of it turn it back on)
    monkeypatch.setenv("INSPECTOR_PRECISION_MEASURE", "off")
    yield
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A migrated in-memory SQLite database (tests that need a file define their own)."""
    eng = open_database("sqlite://")
    migrate(eng)
    yield eng
    eng.dispose()
