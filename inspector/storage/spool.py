"""The spool journal: a preallocated, locked file for results the database could not take yet.

Format: JSON lines (one record per line, ``\\n``-terminated) followed by a zero-filled tail.
The journal does not look inside a record: inspections, camera events and parts travel
alike (`inspector.storage.writer.Record`), in the order the writer appended them.
The file's space is reserved when it is opened (``posix_fallocate``), so an append
overwrites blocks the filesystem already gave us and cannot meet a full disk (ENOSPC)
until the reserve itself is used up; then the journal tries to grow, and only if that
fails too does `append` raise `JournalFull`.

Recovery after kill -9 or a power cut: records end at the first NUL byte; a last line
without its newline (cut mid-write) is ignored and zeroed, so appends go on after the
last whole record. An old append-only ``.spool.jsonl`` (no zero tail) is the same format
without a reserve: it is read as is and then preallocated, so an upgrade loses nothing.

One journal per writer process: the file is held with ``flock``. `open_journal` takes the
first free slot (``spool.jsonl``, ``spool-1.jsonl``, ...) and hands back the unlocked
journals of stations that died (`orphaned_journals`) for the writer to drain.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bytes per spooled inspection as the writer stores them: a measured record (uid,
#: 64-hex model sha, timings, a settings digest, two detections) is ~720 bytes of
#: JSON; 64 MiB therefore hold ~90,000 results (37 min of an 8 x 5 fps station). On a
#: triggered line each part adds a ``{"part": ...}`` record of ~360 bytes, ~45 bytes per
#: frame of an 8-camera line; the estimate's two detections per result (most have none,
#: ~540 bytes) cover it.
RECORD_BYTES_ESTIMATE = 720
_BLOCK = 1 << 20
_MAX_SLOTS = 64


class JournalFull(OSError):
    """The reserve is used up and the filesystem cannot give the journal more space."""


class SpoolJournal:
    """A preallocated, append-only journal of JSON records, held by one process.

    Records are never edited in place: the writer replays them all, then `clear` zeroes
    the used part (the reservation stays). Replays must be idempotent (uids).

    Args:
        path: The journal file (created with its folder).
        reserve_bytes: Space to reserve up front (0: none, e.g. for an orphan to drain).
        lock: Take an exclusive ``flock`` (non-blocking).

    Raises:
        BlockingIOError: ``lock`` and another process holds the journal.
        OSError: The file cannot be opened or its reserve cannot be allocated.
    """

    def __init__(self, path: Path, *, reserve_bytes: int = 0, lock: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.corrupt_lines = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if lock:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                try:  # the file may have been drained and unlinked by another station meanwhile
                    same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    raise BlockingIOError(errno.EAGAIN, "journal was replaced", str(self.path))
            self._end, self._count = self._scan()
            self.reserve_bytes = max(int(reserve_bytes), 0)
            if self.reserve_bytes:
                self._allocate(0, self.reserve_bytes)
        except BaseException:
            os.close(self._fd)
            raise
        self._size = os.fstat(self._fd).st_size

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        """Bytes of records in the journal (not the reserved size of the file)."""
        return self._end

    @property
    def used_fraction(self) -> float:
        """How much of the reserve holds records (may pass 1.0 once the journal grew)."""
        return self._end / self.reserve_bytes if self.reserve_bytes else 0.0

    # ------------------------------------------------------------------ writing
    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` and fdatasync before returning.

        Raises:
            JournalFull: The reserve is used up and the journal cannot grow.
            OSError: Another write error. Nothing of this call counts as spooled then.
        """
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        end = self._end + len(data)
        if end > self._size:
            grow = max(end - self._size, self.reserve_bytes // 4, _BLOCK)
            try:
                self._allocate(self._size, grow)
            except OSError as exc:
                raise JournalFull(exc.errno or errno.ENOSPC, f"spool journal full ({exc.strerror})",
                                  str(self.path)) from exc
        try:
            _pwrite_all(self._fd, data, self._end)
            os.fdatasync(self._fd)
        except OSError:
            self._zero(self._end, len(data))  # leave no half record for the replay
            raise
        self._end = end
        self._count += len(records)

    def clear(self) -> None:
        """Forget every record (after all were stored); the reservation stays.

        Zeroes from the end backwards, so a crash midway leaves whole records that a
        replay stores again, idempotently.
        """
        pos = self._end
        while pos > 0:
            n = min(_BLOCK, pos)
            pos -= n
            _pwrite_all(self._fd, bytes(n), pos)
        os.fdatasync(self._fd)
        self._end = self._count = 0
        if self._size > self.reserve_bytes:  # give back what the journal grew by
            os.ftruncate(self._fd, self.reserve_bytes)
            self._size = self.reserve_bytes

    def close(self) -> None:
        """Release the lock and the file (records stay for the next start)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Delete the (drained) journal file and close it; for orphans of dead stations."""
        self.path.unlink(missing_ok=True)  # unlink while locked: see the inode check in __init__
        self.close()

    # ------------------------------------------------------------------ reading
    def replay(self, chunk: int) -> Iterator[list[dict[str, Any]]]:
        """Yield the journal's records in order, ``chunk`` at a time.

        A line that is not valid JSON is logged, counted in `corrupt_lines` and skipped.
        """
        out: list[dict[str, Any]] = []
        for lineno, line in enumerate(self._lines(), 1):
            try:
                out.append(json.loads(line))
            except ValueError:
                self.corrupt_lines += 1
                log.error("spool %s: record %d is not valid JSON; skipped", self.path, lineno)
                continue
            if len(out) >= chunk:
                yield out
                out = []
        if out:
            yield out

    def _lines(self) -> Iterator[bytes]:
        pos, rest = 0, b""
        while pos < self._end:
            block = os.pread(self._fd, min(_BLOCK, self._end - pos), pos)
            if not block:
                break
            pos += len(block)
            *lines, rest = (rest + block).split(b"\n")
            yield from (ln for ln in lines if ln.strip())

    def _scan(self) -> tuple[int, int]:
        """Find the end of the last whole record; zero a cut-off one after it."""
        pos = end = count = 0
        nul = -1
        while nul < 0:
            block = os.pread(self._fd, _BLOCK, pos)
            if not block:
                break
            nul = block.find(b"\0")
            whole = block if nul < 0 else block[:nul]
            last_nl = whole.rfind(b"\n")
            if last_nl >= 0:
                count += whole.count(b"\n")
                end = pos + last_nl + 1
            pos += len(whole)
        cut = pos - end
        if cut:
            log.warning("spool %s: %d bytes of a record cut off by a crash; ignored", self.path, cut)
            self._zero(end, cut)
        return end, count

    def _allocate(self, offset: int, length: int) -> None:
        try:
            os.posix_fallocate(self._fd, offset, length)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
            size = os.fstat(self._fd).st_size  # no fallocate here: write the zeros ourselves
            start = max(offset, size)
            while start < offset + length:
                n = min(_BLOCK, offset + length - start)
                _pwrite_all(self._fd, bytes(n), start)
                start += n
            os.fsync(self._fd)
        self._size = os.fstat(self._fd).st_size

    def _zero(self, offset: int, length: int) -> None:
        try:
            _pwrite_all(self._fd, bytes(length), offset)
        except OSError:
            log.exception("spool %s: cannot zero %d bytes at %d", self.path, length, offset)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def journal_slot(base: Path, n: int) -> Path:
    """Slot ``n`` of the journals next to ``base``: ``base`` itself, then ``<stem>-<n><suffix>``."""
    return base if n == 0 else base.with_name(f"{base.stem}-{n}{base.suffix}")


def open_journal(base: Path, reserve_bytes: int) -> SpoolJournal:
    """Take the first journal slot no other process holds, reserving ``reserve_bytes``.

    Raises:
        OSError: No slot is free, or the reserve cannot be allocated (disk too full).
    """
    for n in range(_MAX_SLOTS):
        try:
            return SpoolJournal(journal_slot(base, n), reserve_bytes=reserve_bytes)
        except BlockingIOError:
            continue
    raise OSError(errno.EBUSY, f"all {_MAX_SLOTS} spool journal slots are held", str(base))


def orphaned_journals(base: Path, own: SpoolJournal) -> list[SpoolJournal]:
    """The other journals next to ``base`` that no process holds (left by dead stations), locked."""
    pattern = re.compile(re.escape(base.stem) + r"-(\d+)" + re.escape(base.suffix))
    found = []
    for path in sorted(base.parent.glob(f"{base.stem}-*{base.suffix}")):
        if path == own.path or not pattern.fullmatch(path.name):
            continue
        try:
            found.append(SpoolJournal(path))
        except BlockingIOError:
            continue  # a live station's
        except OSError as exc:
            log.error("spool %s: cannot open (%s)", path, exc.strerror or exc)
    return found


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to a plain JSON-lines file (e.g. rejected records) and fsync it."""
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
