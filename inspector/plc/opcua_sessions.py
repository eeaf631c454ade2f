"""Who is logged in to the OPC UA server, checked off its event loop, and the rows for the audit trail.

- Logins (`OpcUaSessions.activate`): the name and password are checked on a worker
  thread (scrypt, a database read) with a bounded wait; the event loop keeps serving
  every other client meanwhile, and a locked database never holds a login up (the check
  only reads).
- Rows that may wait (`DeferredAudit`): logins, refusals and failed logins are queued
  (bounded, counted) and written by a background flush with a bounded wait, retried while
  the database is locked or away. A *change* is never queued: its row is written first,
  with a bounded wait, or the method is refused (`inspector.plc.opcua_server`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from inspector.access.users import Role, User, UserStamp, UserStore

log = logging.getLogger(__name__)

ANONYMOUS = "(anonymous)"


class Auditor(Protocol):
    """The audit trail (`inspector.access.audit.AuditLog`)."""

    def record(self, user: str, action: str, target: str = "", old: object = None, new: object = None, *,
               wait_s: float | None = None) -> Any: ...


class Refusal(Exception):
    """A method call turned down with an OPC UA status code (and a one-line reason for log and audit)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class Login:
    """A login the gate accepted: the station user (None: anonymous) and what it was granted on."""

    user: User | None
    stamp: UserStamp | None
    address: str


class DeferredAudit:
    """Audit rows written in the background, in order, with a bounded wait each.

    Args:
        audit: The trail (None: nothing is recorded).
        wait_s: The longest wait for the database's lock per row.
        depth: Rows kept while the database is away; older ones are dropped first (counted).
    """

    def __init__(self, audit: Auditor | None, wait_s: float, depth: int = 10_000) -> None:
        self.audit, self.wait_s = audit, wait_s
        self._rows: collections.deque[tuple[str, str, str, object, object]] = collections.deque()
        self.depth = depth
        self.dropped = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def add(self, user: str, action: str, target: str = "", old: object = None, new: object = None) -> None:
        """Queue one row (never blocks)."""
        if self.audit is None:
            return
        with self._lock:
            self._rows.append((user, action, target, old, new))
            while len(self._rows) > self.depth:
                self._rows.popleft()
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.error("plc: OPC UA audit queue full: %d rows dropped while the database is away", self.dropped)

    def __len__(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Write queued rows in order until one cannot be written (worker thread); returns rows written."""
        if self.audit is None:
            return 0
        written = 0
        with self._flushing:
            while True:
                with self._lock:
                    if not self._rows:
                        return written
                    row = self._rows[0]
                try:
                    self.audit.record(*row, wait_s=self.wait_s)
                except Exception as exc:  # noqa: BLE001 - kept for the next flush; one line, not a traceback
                    log.warning("plc: OPC UA audit rows wait (%d queued): %s", len(self._rows), str(exc)[:200])
                    return written
                with self._lock:
                    if self._rows and self._rows[0] is row:
                        self._rows.popleft()
                written += 1


class OpcUaSessions:
    """Checks logins off the event loop and keeps the activated sessions (a `SessionGate`).

    Args:
        users: The station's users (None: nobody can log in; only anonymous, if allowed).
        trail: Where logins and refusals are recorded.
        anonymous: Allow anonymous sessions (browse, read, subscribe; never a method call).
        checks: The executor that checks passwords (one thread: scrypt is CPU).
        reads: The executor for database reads (role checks).
        wait_s: The longest wait for a login's check or a role read.
        counts: The server's counters.
    """

    def __init__(self, users: UserStore | None, trail: DeferredAudit, *, anonymous: bool, checks: Executor,
                 reads: Executor, wait_s: float, counts: collections.Counter[str]) -> None:
        self.users, self.trail, self.anonymous = users, trail, anonymous
        self.checks, self.reads, self.wait_s = checks, reads, wait_s
        self.counts = counts
        self.sessions: dict[Any, tuple[Login, Any]] = {}  # session -> (login, close coroutine function)

    # ------------------------------------------------------------------ logins (event loop)
    async def activate(self, address: str, username: str | None, password: str | None) -> Login | None:
        """The `Login` for an identity token, or None (refused; counted and recorded)."""
        if username is None:
            if not self.anonymous:
                self._failed(address, ANONYMOUS, "anonymous sessions not allowed", "logins_refused")
                return None
            return Login(None, None, address)
        who = username.strip()[:64]
        if self.users is None:
            self._failed(address, who, "no users on this station", "logins_failed")
            return None
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(loop.run_in_executor(self.checks, self.users.check, who, password or ""),
                                           self.wait_s)
        except Exception as exc:  # noqa: BLE001 - timed out, or the database is away: refused, one line
            self._failed(address, who, f"not checked: {type(exc).__name__}", "logins_unchecked")
            log.warning("plc: OPC UA login of %r from %s not checked in time: %s", who, address, str(exc)[:200])
            return None
        if found is None:
            self._failed(address, who, "wrong name or password", "logins_failed")
            log.warning("plc: OPC UA login refused for %r from %s (wrong name or password)", who, address)
            return None
        user, stamp = found
        self.counts["logins"] += 1
        self.trail.add(user.name, "opcua.login", user.name, None, f"{user.role.label} from {address}")
        return Login(user, stamp, address)

    def _failed(self, address: str, name: str, why: str, counter: str) -> None:
        self.counts[counter] += 1
        action = "opcua.login_refused" if counter == "logins_refused" else "opcua.login_failed"
        self.trail.add(ANONYMOUS, action, name, None, f"{why} (from {address})")

    def opened(self, session: Any, answer: Any, close: Any) -> None:
        """Remember an activated session and how to close it."""
        self.sessions[session] = (answer, close)

    def closed(self, session: Any) -> None:
        """Forget a session whose connection ended."""
        self.sessions.pop(session, None)

    def oversized(self, address: str, size: int) -> None:
        """Count a connection closed for an oversized chunk (logged once per connection)."""
        self.counts["chunks_too_large"] += 1
        log.warning("plc: OPC UA peer %s announced a %d-byte chunk: connection closed", address, size)

    # ------------------------------------------------------------------ method calls (event loop)
    def login_of(self, session: Any) -> Login | None:
        """The login behind a session (None: not activated through the gate)."""
        entry = self.sessions.get(session)
        return entry[0] if entry is not None else None

    async def role_of(self, session: Any) -> tuple[str | None, Role | None]:
        """The caller's name and role as the session was granted (anonymous: ``(None, None)``)."""
        login = self.login_of(session)
        if login is None or login.user is None:
            return None, None
        return login.user.name, login.user.role
