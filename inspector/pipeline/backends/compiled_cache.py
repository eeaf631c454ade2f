"""Keeping OpenVINO's compiled-model cache (``CACHE_DIR``) under a size limit.

OpenVINO writes one blob per (model, device, compile config) and never removes one. A station that
sees new models, precisions or ISA limits over the years would fill its disk with blobs no start
reads again (473 stale blobs, 2.9 GB, were found on a development machine after a cache-key bug).
After each compile the folder is pruned to `MAX_COMPILED_CACHE_BYTES`, least recently used first:
a blob's last use is the later of its modification and access times (Linux's relatime updates the
access time at least once a day when a blob is read), and a blob this start wrote is never removed.

Compiles into one folder take turns (`compile_lock`): OpenVINO writes a blob in place when it found none,
and a graph imported from a blob keeps it mapped, so a compile that began before the blob existed
truncated it under a graph another thread or process was running from (SIGBUS).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: Largest total size of the compiled-model blobs; a blob is 2-10 MB for our models.
MAX_COMPILED_CACHE_BYTES = 1024**3


def prune_compiled_cache(folder: Path, max_bytes: int | None = None, *, started: float) -> int:
    """Remove the least recently used ``*.blob`` files in ``folder`` until the rest fit in ``max_bytes``.

    Args:
        folder: OpenVINO's ``CACHE_DIR``.
        max_bytes: Size the blobs may take together (default `MAX_COMPILED_CACHE_BYTES`).
        started: Time (epoch seconds) this compile began; blobs used since then are kept.

    Returns:
        How many blobs were removed. A missing folder or a file that cannot be read or removed is
        skipped (the cache is an optimisation, never a reason for a start to fail).
    """
    limit = MAX_COMPILED_CACHE_BYTES if max_bytes is None else max_bytes
    blobs: list[tuple[float, int, Path]] = []
    try:
        for path in folder.glob("*.blob"):
            try:
                st = path.stat()
            except OSError:
                continue
            blobs.append((max(st.st_mtime, st.st_atime), st.st_size, path))
    except OSError:
        return 0
    total = sum(size for _, size, _ in blobs)
    removed = 0
    for used, size, path in sorted(blobs):
        if total <= limit or used >= started:
            break
        try:
            path.unlink()
        except OSError as exc:
            log.warning("compiled-model cache: cannot remove %s: %s", path, exc)
            continue
        total -= size
        removed += 1
    if removed:
        log.info("compiled-model cache: removed %d least recently used blob(s) from %s", removed, folder)
    return removed


@contextlib.contextmanager
def compile_lock(config: Mapping[str, object]) -> Iterator[None]:
    """Hold the compile config's ``CACHE_DIR`` against every other compile into it, in this process
    (threads) and others (the precision-timing child, a bench beside the service), while OpenVINO compiles.

    Nothing is held without a cache folder; a folder that cannot be made or locked is logged and the compile
    goes on unlocked (the cache is an optimisation, never a reason for a start to fail).
    """
    folder = config.get("CACHE_DIR")
    fd = -1
    if folder is not None:
        try:
            Path(str(folder)).mkdir(parents=True, exist_ok=True)
            fd = os.open(Path(str(folder)) / ".compile.lock", os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("compiled-model cache: %s cannot be locked (%s): compiling without the lock", folder, exc)
            if fd >= 0:
                os.close(fd)
            fd = -1
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # closing the only descriptor of this open file releases its flock
