"""The OpenVINO compiled-model cache stays under its size limit, least recently used first."""

from __future__ import annotations

import os
import time
from pathlib import Path

from inspector.pipeline.backends.compiled_cache import prune_compiled_cache


def _blob(folder: Path, name: str, size: int, used: float) -> Path:
    path = folder / f"{name}.blob"
    path.write_bytes(b"\0" * size)
    os.utime(path, (used, used))
    return path


def test_the_least_recently_used_blobs_go_until_the_cache_fits(tmp_path: Path) -> None:
    now = time.time()
    old = _blob(tmp_path, "old", 400, now - 3 * 86400)
    middle = _blob(tmp_path, "middle", 400, now - 2 * 86400)
    recent = _blob(tmp_path, "recent", 400, now - 86400)
    other = tmp_path / "notes.txt"
    other.write_bytes(b"\0" * 4000)  # not a blob: never touched

    removed = prune_compiled_cache(tmp_path, max_bytes=900, started=now)

    assert removed == 1
    assert not old.exists() and middle.exists() and recent.exists() and other.exists()


def test_a_blob_written_by_this_start_is_kept_even_over_the_limit(tmp_path: Path) -> None:
    now = time.time()
    older = _blob(tmp_path, "older", 500, now - 86400)
    ours = _blob(tmp_path, "ours", 500, now + 1)

    prune_compiled_cache(tmp_path, max_bytes=100, started=now)

    assert ours.exists() and not older.exists()


def test_a_missing_or_unwritable_cache_is_no_error(tmp_path: Path) -> None:
    assert prune_compiled_cache(tmp_path / "absent", max_bytes=1, started=time.time()) == 0


def test_a_backend_start_prunes_the_cache_it_compiled_into(tmp_path: Path, monkeypatch) -> None:
    from inspector.pipeline.backends import compiled_cache, create_backend
    from inspector.pipeline.backends.openvino_backend import compiled_model_cache
    from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card

    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "banks"))
    folder = compiled_model_cache()
    assert folder is not None
    folder.mkdir(parents=True)
    stale = [_blob(folder, f"stale{i}", 1000, time.time() - (10 - i) * 86400) for i in range(3)]
    monkeypatch.setattr(compiled_cache, "MAX_COMPILED_CACHE_BYTES", 1500)

    be = create_backend("openvino", load_card(DEFAULT_MODEL), max_batch=1, streams=1)
    try:
        ours = [p for p in folder.glob("*.blob") if p not in stale]
        assert ours, "the compile wrote its blob into the cache folder"
        assert not any(p.exists() for p in stale)  # our blob alone is over 1500 bytes: every stale one went
    finally:
        be.close()
