"""An append-only JSON-lines file for results the database could not take yet."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Spool:
    """Append-only JSONL spool with fsync on every append.

    Each line is one record (a JSON object). Records are never edited in place: the
    writer replays the whole file, then `clear` truncates it. Replays must therefore be
    idempotent (the writer skips uids already in the database).

    Args:
        path: The spool file; created (with its folder) on first append.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt_lines = 0
        self._count = self._count_lines()

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` and fsync before returning.

        Raises:
            OSError: The file cannot be written (disk full, permissions); nothing of
                this call counts as spooled then.
        """
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            except OSError:
                # leave no half-written line behind for the replay to trip over
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        self._count += len(records)

    def replay(self, chunk: int) -> Iterator[list[dict[str, Any]]]:
        """Yield the spooled records in order, ``chunk`` at a time.

        A line that is not valid JSON (e.g. cut by a crash mid-append on a filesystem
        without ordered writes) is logged, counted in `corrupt_lines` and skipped.
        """
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            out: list[dict[str, Any]] = []
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    self.corrupt_lines += 1
                    log.error("spool %s: line %d is not valid JSON; skipped", self.path, lineno)
                    continue
                if len(out) >= chunk:
                    yield out
                    out = []
            if out:
                yield out

    def clear(self) -> None:
        """Truncate the spool after everything in it was stored."""
        if self.path.exists():
            with self.path.open("r+b") as fh:
                fh.truncate(0)
                fh.flush()
                os.fsync(fh.fileno())
        self._count = 0

    def _count_lines(self) -> int:
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return 0
        n = 0
        with fh:
            while block := fh.read(1 << 20):
                n += block.count(b"\n")
        return n
