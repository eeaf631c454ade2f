"""One-line errors that name what to install (issue 30.3)."""

from __future__ import annotations

import sys

import pytest

from inspector.storage.db import StorageError, open_database


def test_postgres_without_its_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the postgres extra were not installed
    with pytest.raises(StorageError) as err:
        open_database("postgresql+psycopg://inspector@127.0.0.1:1/inspector", connect=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "driver not installed (psycopg)" in msg and 'pip install "inspector[postgres]"' in msg
