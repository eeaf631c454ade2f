"""Who is logged in to the OPC UA server, checked off its event loop, and the rows for the audit trail.

- Logins (`OpcUaSessions.activate`): the name and password are checked on a worker
  thread (scrypt, a database read) with a bounded wait; the event loop keeps serving
  every other client meanwhile, and a locked database never holds a login up (the check
  only reads).
- Throttling per source address and per name (`inspector.access.login_gate`), checked
  before the password; failed and refused logins are audited in aggregate (one row per
  address per `DIGEST_S`), never one row per attempt.
- Roles are read again on every method call; a session whose user was removed, or whose
  role or password changed, is closed (at its next call, or by `sweep` within seconds).
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

from inspector.access.login_gate import FailedLogins, LoginThrottle
from inspector.access.users import Role, User, UserStamp, UserStore

log = logging.getLogger(__name__)

ANONYMOUS = "(anonymous)"
DIGEST_S = 60.0  # failed logins: one audit row per source address per this many seconds
_CHECKS_PENDING = 4  # password checks queued at once; more are refused unchecked


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
        self.throttle = LoginThrottle()
        self.failures = FailedLogins()
        self._pending = 0

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
        why = self.throttle.admit(address, who)
        if why is None and self._pending >= _CHECKS_PENDING:
            self.throttle.done(address, who, None)
            why = f"{self._pending} logins being checked"
        if why is not None:
            self._failed(address, who, "throttled", "logins_refused")
            log.debug("plc: OPC UA login of %r refused unchecked: %s", who, why)
            return None
        loop = asyncio.get_running_loop()
        self._pending += 1
        check = loop.run_in_executor(self.checks, self.users.check, who, password or "")
        check.add_done_callback(lambda _: self._checked())
        outcome: bool | None = None
        try:
            found = await asyncio.wait_for(asyncio.shield(check), self.wait_s)
            outcome = found is not None
        except Exception as exc:  # noqa: BLE001 - timed out, or the database is away: refused, one line
            self._failed(address, who, f"not checked ({type(exc).__name__})", "logins_unchecked")
            log.warning("plc: OPC UA login of %r from %s not checked in time: %s", who, address, str(exc)[:200])
            return None
        finally:
            self.throttle.done(address, who, outcome)
        if found is None:
            self._failed(address, who, "wrong name or password", "logins_failed")
            log.info("plc: OPC UA login refused for %r from %s (wrong name or password)", who, address)
            return None
        user, stamp = found
        self.counts["logins"] += 1
        self.trail.add(user.name, "opcua.login", user.name, None, f"{user.role.label} from {address}")
        return Login(user, stamp, address)

    def _checked(self) -> None:
        self._pending -= 1

    def _failed(self, address: str, name: str, why: str, counter: str) -> None:
        self.counts[counter] += 1
        self.failures.note(address, name, why)

    def digest(self) -> int:
        """Queue one audit row per source address for the failed logins counted since the last digest."""
        rows = self.failures.take()
        for row in rows:
            self.trail.add(ANONYMOUS, "opcua.login_failed", row.names, None, row.summary)
        return len(rows)

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
        """The caller's name and current role (anonymous: ``(None, None)``), read again for each call.

        Raises:
            Refusal: BadResourceUnavailable: the role cannot be read in time; BadUserAccessDenied:
                the user was removed or changed since the login (the session is being closed).
        """
        from asyncua import ua

        login = self.login_of(session)
        if login is None or login.user is None:
            return None, None
        name = login.user.name
        if self.users is None:
            return name, login.user.role
        loop = asyncio.get_running_loop()
        try:
            stamp = await asyncio.wait_for(loop.run_in_executor(self.reads, self.users.stamp, name), self.wait_s)
        except Exception as exc:  # noqa: BLE001 - fail closed: no call without a role read now
            raise Refusal(ua.StatusCodes.BadResourceUnavailable, f"the role of {name} cannot be read now: "
                                                                 f"{type(exc).__name__}") from None
        if stamp is None or stamp != login.stamp:
            why = self._changed(stamp)
            self.end(session, why)
            raise Refusal(ua.StatusCodes.BadUserAccessDenied, f"{name}: {why} since the login; session closed")
        return name, stamp.role

    @staticmethod
    def _changed(stamp: UserStamp | None) -> str:
        return "user removed" if stamp is None else "role or password changed"

    def end(self, session: Any, why: str) -> None:
        """Close a session (after the answer to the call in progress has been sent), audited."""
        entry = self.sessions.pop(session, None)
        if entry is None:
            return
        login, close = entry
        name = login.user.name if login.user is not None else ANONYMOUS
        self.counts["sessions_closed"] += 1
        log.warning("plc: OPC UA session of %s from %s closed: %s", name, login.address, why)
        self.trail.add(name, "opcua.session_closed", name, None, f"{why} (from {login.address})")
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: loop.create_task(close()))

    async def sweep(self) -> int:
        """Close the sessions of users removed or changed since their login; returns how many."""
        if self.users is None:
            return 0
        users = self.users
        names = {login.user.name for login, _ in self.sessions.values() if login.user is not None}
        if not names:
            return 0
        loop = asyncio.get_running_loop()
        try:
            stamps = await asyncio.wait_for(loop.run_in_executor(self.reads, lambda: {n: users.stamp(n) for n in names}),
                                            self.wait_s)
        except Exception:  # noqa: BLE001 - the next sweep, or the next call, reads again
            return 0
        ended = 0
        for session, (login, _) in list(self.sessions.items()):
            if login.user is not None and stamps.get(login.user.name) != login.stamp:
                self.end(session, self._changed(stamps.get(login.user.name)))
                ended += 1
        return ended
