"""The audit chain's head, anchored outside the database and signed with the station's key.

The hash chain (`inspector.storage.audit_chain`) shows any change, removal or insertion
*inside* the trail, but not the removal of its newest entries, nor a trail rewritten
from scratch with freshly computed hashes. So each append writes the chain's head
(entry count, last id, last hash) to a small JSON file, HMAC-SHA256-signed with a random
key kept in a 0600 file in the user config folder (`key_path`):

- next to a SQLite database file: ``<database>.audit-head``;
- for other databases (PostgreSQL): ``<user data>/inspector/access/audit-heads/<url digest>.json``;
- for an in-memory database: in memory (it dies with the process anyway).

What it protects against: anyone who can write the database (a SQL shell, a DBA, a
backup copied back) but cannot write the station's files and read its key. What it does
not: someone with the station's account or root can read the key and sign any head, or
delete the anchor (the next append then anchors the trail as it finds it, with a
warning in the log); and on a database shared by several stations each station's anchor
covers only its own appends, so entries written by the others after its last one are
reported as inserted.

An append writes the anchor with the new entry as *pending*, commits, then writes it
again with the entry as the head, so a crash between the two leaves a head that verifies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import platformdirs
from sqlalchemy import Engine

from inspector.storage.audit_chain import GENESIS
from inspector.storage.db import display_url, sqlite_path

log = logging.getLogger(__name__)

__all__ = ["AnchorForged", "AnchorRecord", "ChainHead", "FileAnchor", "HeadAnchor", "MemoryAnchor", "anchor_for",
           "key_path"]

KEY_FILE = "audit-anchor.key"


class AnchorForged(ValueError):
    """The anchor file exists but is unreadable or not signed with this station's key."""


@dataclass(frozen=True)
class ChainHead:
    """Where the chain ends: number of entries, id and hash of the newest one."""

    count: int
    last_id: int
    last_hash: str

    @classmethod
    def empty(cls) -> ChainHead:
        """The head of an empty trail."""
        return cls(0, 0, GENESIS)


@dataclass(frozen=True)
class AnchorRecord:
    """The anchored head, and the head an append in progress will make (None when idle)."""

    head: ChainHead
    pending: ChainHead | None = None

    def accepts(self, head: ChainHead) -> bool:
        """Whether the database's actual head is the anchored one (or the pending one)."""
        return head == self.head or head == self.pending


class HeadAnchor(Protocol):
    """Where a database's signed head lives."""

    where: str

    def read(self) -> AnchorRecord | None:
        """The anchored record, None if there is none yet.

        Raises:
            AnchorForged: Unreadable, or the signature does not match.
        """
        ...

    def write(self, record: AnchorRecord) -> None:
        """Replace the anchored record."""
        ...

    def locked(self, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold this anchor against other appenders (threads and processes).

        Raises:
            TimeoutError: ``timeout`` seconds passed and another appender still holds it.
        """
        ...


def key_path() -> Path:
    """The station's anchor key file (in the user config folder)."""
    return Path(platformdirs.user_config_dir("inspector")) / KEY_FILE


def _key() -> bytes:
    path = key_path()
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("audit: created the anchor key %s", path)
    return bytes.fromhex(path.read_text().strip())


def _signature(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hmac.new(_key(), canonical, hashlib.sha256).hexdigest()


def _head(data: Any) -> ChainHead:
    return ChainHead(int(data["count"]), int(data["last_id"]), str(data["last_hash"]))


class FileAnchor:
    """A signed head in a JSON file (written atomically, fsynced).

    Args:
        path: The anchor file.
        database: The database it anchors (part of the signed content).
    """

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self.database = database
        self.where = str(path)
        self._thread_lock = _thread_lock(str(path))

    def read(self) -> AnchorRecord | None:
        """The anchored record (None: no file yet)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AnchorForged(f"head anchor {self.path} is unreadable ({exc})") from None
        forged = AnchorForged(f"head anchor {self.path} is not signed by this station's key")
        if not isinstance(data, dict):
            raise forged
        signature = str(data.pop("signature", ""))
        if data.get("database") != self.database or not hmac.compare_digest(signature, _signature(data)):
            raise forged
        try:
            pending = data.get("pending")
            return AnchorRecord(_head(data), _head(pending) if pending else None)
        except (KeyError, TypeError, ValueError):
            raise forged from None

    def write(self, record: AnchorRecord) -> None:
        """Replace the file atomically (temporary file, fsync, rename)."""
        body: dict[str, Any] = {
            "database": self.database,
            **asdict(record.head),
            "pending": asdict(record.pending) if record.pending else None,
        }
        body["signature"] = _signature(body)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(body, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """An exclusive ``flock`` on ``<anchor>.lock`` (and a lock for this process's threads)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise TimeoutError(f"audit: the head anchor {self.path} is held by another appender")
        try:
            with open(self.path.with_name(self.path.name + ".lock"), "a") as f:
                _flock(f.fileno(), deadline, self.path)
                try:
                    yield
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class MemoryAnchor:
    """The head of an in-memory database, kept in memory (the database dies with it)."""

    def __init__(self) -> None:
        self.where = "memory"
        self._record: AnchorRecord | None = None
        self._lock = threading.Lock()

    def read(self) -> AnchorRecord | None:
        """The anchored record."""
        return self._record

    def write(self, record: AnchorRecord) -> None:
        """Replace the anchored record."""
        self._record = record

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the anchor against this process's other threads."""
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise TimeoutError("audit: the in-memory head anchor is held by another appender")
        try:
            yield
        finally:
            self._lock.release()


_memory_anchors: weakref.WeakKeyDictionary[Engine, MemoryAnchor] = weakref.WeakKeyDictionary()
_thread_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def _flock(fd: int, deadline: float | None, path: Path) -> None:
    """An exclusive flock on ``fd``, waiting until ``deadline`` (monotonic; None: for ever)."""
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"audit: the head anchor {path} is held by another process") from None
            time.sleep(0.005)


def _thread_lock(key: str) -> threading.Lock:
    # flock does not exclude the threads of one process that each open the lock file
    with _registry_lock:
        return _thread_locks.setdefault(key, threading.Lock())


def anchor_for(engine: Engine) -> HeadAnchor:
    """The head anchor of a database (see the module docstring for where it lives)."""
    db_file = sqlite_path(engine)
    if db_file is not None:
        path = db_file.resolve()
        return FileAnchor(path.with_name(path.name + ".audit-head"), str(path))
    if engine.url.get_backend_name() == "sqlite":
        with _registry_lock:
            return _memory_anchors.setdefault(engine, MemoryAnchor())
    shown = display_url(engine.url)
    digest = hashlib.sha256(shown.encode("utf-8")).hexdigest()[:16]
    folder = Path(platformdirs.user_data_dir("inspector")) / "audit-heads"
    return FileAnchor(folder / f"{digest}.json", shown)
