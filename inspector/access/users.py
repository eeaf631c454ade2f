"""Station users, roles, permissions and the append-only audit trail (engine side, no Qt).

Roles are ordered: ``operator < engineer < admin``; someone who is not logged in is
*anonymous* and may only watch. `Permissions` maps every action of the control API
(`inspector.access.control.StationControl`) to the lowest role allowed to perform it.

Passwords are hashed with scrypt (RFC 7914; ``n=2**14, r=8, p=1``, a random 16-byte salt
per password) and stored as ``scrypt$n$r$p$salt$hash`` so the parameters can be raised
later without invalidating stored hashes. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inspector.access.audit import AuditEntry, AuditLog
from inspector.storage.db import writing
from inspector.storage.users_models import AuditTamperError, UserRecord

log = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "AuditEntry",
    "AuditLog",
    "AuditTamperError",
    "LoginOutcome",
    "LoginRefused",
    "PermissionDenied",
    "Permissions",
    "Role",
    "User",
    "UserError",
    "UserStamp",
    "UserStore",
    "check_password",
    "hash_password",
    "login_delay",
]

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_LENGTH = 8
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

# Login throttling: after more than LOGIN_FREE_FAILURES failed logins in a row the next
# attempt must wait LOGIN_DELAY_BASE_S, doubling with each further failure up to
# LOGIN_DELAY_MAX_S; after LOCKOUT_AFTER failures the user is locked for LOCKOUT_S (or
# until an admin unlocks them). The counters live in the users table: a restart keeps them.
LOGIN_FREE_FAILURES = 1  # one typo costs nothing
LOGIN_DELAY_BASE_S = 0.5
LOGIN_DELAY_MAX_S = 30.0
LOCKOUT_AFTER = 5
LOCKOUT_S = 15 * 60.0


class Role(enum.IntEnum):
    """What a user may do; a higher role may do everything a lower one may."""

    OPERATOR = 1
    ENGINEER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The stored and displayed name (``operator``, ``engineer``, ``admin``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: Role | str) -> Role:
        """A role from its name (case-insensitive) or a `Role`.

        Raises:
            UserError: Not a role name.
        """
        if isinstance(value, Role):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise UserError(f"role: {value!r} is not one of operator, engineer, admin") from None


class UserError(ValueError):
    """A user-management request that cannot be done (bad name, weak password, duplicate)."""


class PermissionDenied(PermissionError):
    """The current user (or nobody) may not perform an action; the message is one line."""


class LoginRefused(PermissionDenied):
    """A login attempt refused without checking the password: too early after failures, or locked.

    Attributes:
        retry_after_s: Seconds until the next attempt is accepted.
    """

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginOutcome:
    """What one checked login attempt did: the user (None: wrong name or password), failures so far."""

    user: User | None
    failures: int = 0
    locked: bool = False  # this failure locked the user out


def login_delay(failures: int) -> float:
    """How long after the last of ``failures`` failed logins in a row the next attempt must wait."""
    if failures <= LOGIN_FREE_FAILURES:
        return 0.0
    return float(min(LOGIN_DELAY_BASE_S * 2 ** (failures - LOGIN_FREE_FAILURES - 1), LOGIN_DELAY_MAX_S))


@dataclass(frozen=True)
class User:
    """A logged-in (or listed) user."""

    name: str
    role: Role

    def __str__(self) -> str:
        return f"{self.name} ({self.role.label})"


@dataclass(frozen=True)
class UserStamp:
    """A user's role and a digest of their stored password hash, to tell when either changed."""

    role: Role
    credential: str


def _stamp(rec: UserRecord) -> UserStamp:
    return UserStamp(Role.parse(rec.role), hashlib.sha256(rec.password_hash.encode()).hexdigest()[:16])


# ---------------------------------------------------------------------------- passwords
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password with scrypt and a random salt.

    Args:
        password: The clear-text password.
        salt: Only for tests; a fresh 16-byte random salt otherwise.

    Returns:
        ``scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>``.
    """
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from `hash_password` (constant-time compare)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        n_i, r_i, p_i = int(n), int(r), int(p)
    except ValueError:  # malformed stored hash (binascii.Error is a ValueError)
        return False
    # maxmem: scrypt needs 128*n*r bytes; allow raised parameters of stored hashes
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n_i, r=r_i, p=p_i, dklen=len(expected), maxmem=256 * n_i * r_i + (1 << 20)
    )
    return hmac.compare_digest(digest, expected)


# A hash to check against when the user does not exist, so that a wrong user name costs
# the same time as a wrong password (no user enumeration by timing).
@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise UserError(f"user name: {name!r} must be 1-64 letters, digits or . _ @ -")
    return name


def _refuse_early(rec: UserRecord, now: float) -> None:
    if rec.locked_until is not None and now < rec.locked_until:
        wait = rec.locked_until - now
        raise LoginRefused(
            f"user {rec.name!r} is locked after {rec.failed_logins} failed logins: try again in "
            f"{math.ceil(wait / 60)} min, or an admin unlocks it",
            wait,
        )
    wait = (rec.last_failed_at or 0.0) + login_delay(rec.failed_logins or 0) - now
    if wait > 0:
        raise LoginRefused(f"user {rec.name!r}: {rec.failed_logins} failed logins, try again in {math.ceil(wait)} s", wait)


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: needs at least {MIN_PASSWORD_LENGTH} characters")


# ---------------------------------------------------------------------------- users
class UserStore:
    """Users in the station database (table ``users``, migration 0002).

    Args:
        engine: The migrated station database.
        clock: Epoch seconds now (tests inject one) for login throttling.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def count(self) -> int:
        """Number of users."""
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(UserRecord)) or 0)

    def create_user(self, name: str, password: str, role: Role | str, by: str) -> User:
        """Add a user.

        Args:
            name: Login name (letters, digits, ``. _ @ -``).
            password: At least `MIN_PASSWORD_LENGTH` characters.
            role: ``operator``, ``engineer`` or ``admin``.
            by: Who creates it (stored with the user).

        Raises:
            UserError: Bad name, short password, unknown role or the name is taken.
        """
        name = _check_name(name)
        _check_new_password(password)
        r = Role.parse(role)
        rec = UserRecord(name=name, role=r.label, password_hash=hash_password(password), created_at=time.time(), created_by=by)
        try:
            with Session(writing(self.engine)) as s, s.begin():
                s.add(rec)
        except IntegrityError:
            raise UserError(f"user {name!r} already exists") from None
        log.info("user %s created as %s by %s", name, r.label, by)
        return User(name, r)

    def get(self, name: str) -> User | None:
        """A user by name, or None."""
        with Session(self.engine) as s:
            rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
            return User(rec.name, Role.parse(rec.role)) if rec is not None else None

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None; throttled like `authenticate`."""
        return self.authenticate(name, password).user

    def authenticate(self, name: str, password: str) -> LoginOutcome:
        """Check a login attempt, counting failures (same cost for unknown names).

        Raises:
            LoginRefused: The user is locked, or the attempt comes before the delay that
                the last failures impose is over; the password was not checked.
        """
        now = self.clock()
        with Session(writing(self.engine)) as s, s.begin():
            rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
            if rec is not None:
                _refuse_early(rec, now)
            stored = rec.password_hash if rec is not None else _dummy_hash()
            ok = check_password(password, stored)
            if rec is None:
                return LoginOutcome(None)
            if ok:
                rec.failed_logins, rec.last_failed_at, rec.locked_until = 0, None, None
                return LoginOutcome(User(rec.name, Role.parse(rec.role)))
            rec.failed_logins = (rec.failed_logins or 0) + 1
            rec.last_failed_at = now
            locked = rec.failed_logins >= LOCKOUT_AFTER
            if locked:
                rec.locked_until = now + LOCKOUT_S
                log.warning("user %s locked for %.0f s after %d failed logins", rec.name, LOCKOUT_S, rec.failed_logins)
            return LoginOutcome(None, rec.failed_logins, locked)

    def check(self, name: str, password: str) -> tuple[User, UserStamp] | None:
        """The user and their stamp if ``password`` is theirs, else None; reads only (no counters).

        For links that throttle in memory, per source address (`inspector.access.login_gate`):
        nothing is written, so a locked database does not hold a login up, and failures
        from anywhere never lock an account. An unknown name costs one scrypt, as a known one.
        """
        with Session(self.engine) as s:
            rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
            stored = rec.password_hash if rec is not None else _dummy_hash()
            found = (User(rec.name, Role.parse(rec.role)), _stamp(rec)) if rec is not None else None
        ok = check_password(password, stored)
        return found if ok else None

    def stamp(self, name: str) -> UserStamp | None:
        """What a session of ``name`` was granted on: role and password; None once the user is gone.

        A session whose stamp changed (role or password changed, user removed) is closed.
        """
        with Session(self.engine) as s:
            rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
            return _stamp(rec) if rec is not None else None

    def unlock(self, name: str) -> bool:
        """Clear a user's failed logins and lockout; returns whether they were throttled or locked.

        Raises:
            UserError: Unknown user.
        """
        with Session(writing(self.engine)) as s, s.begin():
            rec = self._record(s, name)
            was = bool(rec.failed_logins) or rec.locked_until is not None
            rec.failed_logins, rec.last_failed_at, rec.locked_until = 0, None, None
        return was

    def remove_user(self, name: str) -> Role:
        """Delete a user; returns their role.

        Raises:
            UserError: Unknown user, or the last admin.
        """
        with Session(writing(self.engine)) as s, s.begin():
            rec = self._record(s, name)
            role = Role.parse(rec.role)
            if role is Role.ADMIN and self._admins(s) <= 1:
                raise UserError(f"user {rec.name!r} is the last admin; make someone else admin first")
            s.delete(rec)
        log.info("user %s removed", name)
        return role

    @staticmethod
    def _record(s: Session, name: str) -> UserRecord:
        rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
        if rec is None:
            raise UserError(f"user {name!r} does not exist")
        return rec

    @staticmethod
    def _admins(s: Session) -> int:
        return int(s.scalar(select(func.count()).select_from(UserRecord).where(UserRecord.role == "admin")) or 0)

    def set_role(self, name: str, role: Role | str) -> Role:
        """Change a user's role; returns the previous role.

        Raises:
            UserError: Unknown user or role, or it would leave the station without an admin.
        """
        new = Role.parse(role)
        with Session(writing(self.engine)) as s, s.begin():
            rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
            if rec is None:
                raise UserError(f"user {name!r} does not exist")
            old = Role.parse(rec.role)
            if old is Role.ADMIN and new is not Role.ADMIN:
                admins = s.scalar(select(func.count()).select_from(UserRecord).where(UserRecord.role == "admin")) or 0
                if admins <= 1:
                    raise UserError(f"user {name!r} is the last admin; make someone else admin first")
            rec.role = new.label
        return old

    def set_password(self, name: str, password: str) -> None:
        """Replace a user's password (new salt).

        Raises:
            UserError: Unknown user or short password.
        """
        _check_new_password(password)
        with Session(writing(self.engine)) as s, s.begin():
            rec = s.scalar(select(UserRecord).where(UserRecord.name == name.strip()))
            if rec is None:
                raise UserError(f"user {name!r} does not exist")
            rec.password_hash = hash_password(password)
            rec.failed_logins, rec.last_failed_at, rec.locked_until = 0, None, None

    def list_users(self) -> list[User]:
        """All users, by name."""
        with Session(self.engine) as s:
            return [User(r.name, Role.parse(r.role)) for r in s.scalars(select(UserRecord).order_by(UserRecord.name))]


# ---------------------------------------------------------------------------- permissions
#: Every action of the control API and the lowest role allowed (None: anyone, logged in or not).
ACTIONS: Mapping[str, Role | None] = {
    "station.watch": None,
    "audit.view": None,
    "station.pause": Role.OPERATOR,
    "station.trigger_part": Role.OPERATOR,
    "recipe.select": Role.OPERATOR,
    "history.review": Role.ENGINEER,
    "history.export": Role.ENGINEER,
    "camera.set_feature": Role.ENGINEER,
    "verdict.set_threshold": Role.ENGINEER,
    "recipe.save": Role.ENGINEER,
    "recipe.load": Role.ENGINEER,
    "recipe.override_gate": Role.ADMIN,
    "model.update_card": Role.ENGINEER,
    "users.manage": Role.ADMIN,
}


class Permissions:
    """Decides whether a user may perform an action.

    Args:
        table: Action -> lowest role (default `ACTIONS`).
    """

    def __init__(self, table: Mapping[str, Role | None] | None = None) -> None:
        self.table = dict(table if table is not None else ACTIONS)

    def allowed(self, user: User | None, action: str) -> bool:
        """Whether ``user`` (None: anonymous) may perform ``action``."""
        if action not in self.table:
            raise KeyError(f"unknown action {action!r}")
        need = self.table[action]
        if need is None:
            return True
        return user is not None and user.role >= need

    def require(self, user: User | None, action: str) -> None:
        """Raise `PermissionDenied` unless ``user`` may perform ``action``."""
        if self.allowed(user, action):
            return
        need = self.table[action]
        assert need is not None
        who = f"logged in as {user.name}, {user.role.label}" if user is not None else "not logged in"
        raise PermissionDenied(f"{action}: needs the {need.label} role or higher ({who})")
