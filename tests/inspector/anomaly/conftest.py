"""Anomaly tests share one converted backbone (a session cache folder instead of the suite's "off")."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _backbone_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.getbasetemp() / "anomaly-cache"
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(folder))
    return folder
