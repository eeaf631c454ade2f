"""Users, password hashing, permissions and the append-only audit log."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from inspector.access.users import (
    AuditLog,
    PermissionDenied,
    Permissions,
    Role,
    User,
    UserError,
    UserStore,
    check_password,
    hash_password,
)
from inspector.storage.users_models import AuditRecord, AuditTamperError


# ---------------------------------------------------------------------- hashing
def test_hash_is_salted_scrypt() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b  # a fresh random salt each time
    scheme, n, r, p, salt, digest = a.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    import base64

    raw_salt = base64.b64decode(salt)
    assert len(raw_salt) == 16
    expected = hashlib.scrypt(b"correct horse", salt=raw_salt, n=2**14, r=8, p=1, dklen=32)
    assert base64.b64decode(digest) == expected
    assert "correct horse" not in a


@pytest.mark.parametrize(
    ("password", "ok"),
    [("correct horse", True), ("correct hors", False), ("Correct horse", False), ("", False)],
)
def test_check_password(password: str, ok: bool) -> None:
    stored = hash_password("correct horse", salt=b"\x01" * 16)
    assert check_password(password, stored) is ok


@pytest.mark.parametrize("stored", ["", "plain", "md5$1$2$3$AA==$AA==", "scrypt$x$8$1$AA==$AA==", "scrypt$16384$8$1$!!$AA=="])
def test_malformed_hash_never_matches(stored: str) -> None:
    assert check_password("anything", stored) is False


# ---------------------------------------------------------------------- users
def test_create_and_verify(engine: Engine) -> None:
    users = UserStore(engine)
    assert users.count() == 0
    users.create_user("alice", "s3cret-pass", "engineer", by="admin")
    assert users.verify("alice", "s3cret-pass") == User("alice", Role.ENGINEER)
    assert users.verify("alice", "wrong-pass") is None
    assert users.verify("nobody", "s3cret-pass") is None
    with Session(engine) as s:
        stored = s.execute(text("SELECT password_hash, created_by FROM users")).one()
    assert stored.password_hash.startswith("scrypt$") and "s3cret" not in stored.password_hash
    assert stored.created_by == "admin"


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("bob", "short", "operator", "at least 8"),
        ("bad name", "long-enough", "operator", "user name"),
        ("", "long-enough", "operator", "user name"),
        ("bob", "long-enough", "superuser", "not one of"),
    ],
)
def test_create_user_rejects(engine: Engine, name: str, password: str, role: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        UserStore(engine).create_user(name, password, role, by="admin")


def test_duplicate_user(engine: Engine) -> None:
    users = UserStore(engine)
    users.create_user("bob", "long-enough", "operator", by="admin")
    with pytest.raises(UserError, match="already exists"):
        users.create_user("bob", "other-password", "admin", by="admin")


def test_set_role_keeps_one_admin(engine: Engine) -> None:
    users = UserStore(engine)
    users.create_user("root", "long-enough", "admin", by="x")
    users.create_user("bob", "long-enough", "operator", by="root")
    assert users.set_role("bob", Role.ENGINEER) is Role.OPERATOR
    assert users.get("bob") == User("bob", Role.ENGINEER)
    with pytest.raises(UserError, match="last admin"):
        users.set_role("root", "operator")
    assert [u.name for u in users.list_users()] == ["bob", "root"]


def test_set_password(engine: Engine) -> None:
    users = UserStore(engine)
    users.create_user("bob", "long-enough", "operator", by="x")
    users.set_password("bob", "another-one")
    assert users.verify("bob", "long-enough") is None
    assert users.verify("bob", "another-one") is not None


def test_roles_are_ordered() -> None:
    assert Role.OPERATOR < Role.ENGINEER < Role.ADMIN
    assert Role.parse("Engineer") is Role.ENGINEER


# ---------------------------------------------------------------------- permissions
@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        (None, "station.watch", True),
        (None, "station.pause", False),
        (Role.OPERATOR, "station.pause", True),
        (Role.OPERATOR, "camera.set_feature", False),
        (Role.ENGINEER, "camera.set_feature", True),
        (Role.ENGINEER, "users.manage", False),
        (Role.ADMIN, "users.manage", True),
        (Role.ADMIN, "camera.set_feature", True),
    ],
)
def test_permissions(role: Role | None, action: str, allowed: bool) -> None:
    user = User("u", role) if role is not None else None
    perms = Permissions()
    assert perms.allowed(user, action) is allowed
    if allowed:
        perms.require(user, action)
    else:
        with pytest.raises(PermissionDenied) as err:
            perms.require(user, action)
        assert "\n" not in str(err.value) and action in str(err.value)


# ---------------------------------------------------------------------- audit
def test_audit_record_and_list(engine: Engine) -> None:
    audit = AuditLog(engine)
    audit.record("alice", "camera.set_feature", "cam1/ExposureTime", 5000.0, 8000.0)
    audit.record("alice", "station.pause", "demo", False, True)
    rows = audit.list(limit=10)
    assert [r.action for r in rows] == ["station.pause", "camera.set_feature"]
    assert (rows[1].old, rows[1].new) == ("5000.0", "8000.0")
    assert (rows[0].old, rows[0].new) == ("false", "true")
    assert audit.list(since=rows[0].at + 1) == []
    assert not hasattr(audit, "update") and not hasattr(audit, "delete")


def test_audit_rows_cannot_be_updated_through_the_orm(engine: Engine) -> None:
    entry = AuditLog(engine).record("alice", "camera.set_feature", "cam1/Gain", 0, 6)
    with Session(engine) as s:
        rec = s.get(AuditRecord, entry.id)
        assert rec is not None
        rec.new = "0"
        with pytest.raises(AuditTamperError, match="append-only"):
            s.commit()
    with Session(engine) as s:
        rec = s.get(AuditRecord, entry.id)
        assert rec is not None
        s.delete(rec)
        with pytest.raises(AuditTamperError, match="append-only"):
            s.commit()
    assert AuditLog(engine).list()[0].new == "6"


@pytest.mark.parametrize(
    "stmt",
    [
        lambda: update(AuditRecord.__table__).values(new="0"),
        lambda: text("DELETE FROM audit_log"),
    ],
)
def test_audit_rows_cannot_be_changed_in_sql(engine: Engine, stmt: object) -> None:
    AuditLog(engine).record("alice", "camera.set_feature", "cam1/Gain", 0, 6)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(stmt())  # type: ignore[operator]
    assert AuditLog(engine).count() == 1


# ---------------------------------------------------------------------- login throttling
class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_login_delay_grows_and_is_capped() -> None:
    from inspector.access.users import LOGIN_DELAY_MAX_S, login_delay

    delays = [login_delay(n) for n in range(12)]
    assert delays[:4] == [0.0, 0.0, 0.5, 1.0]
    assert delays == sorted(delays) and delays[-1] == LOGIN_DELAY_MAX_S


def test_failures_delay_then_lock_and_survive_a_restart(engine: Engine) -> None:
    from inspector.access.users import LOCKOUT_AFTER, LOCKOUT_S, LoginRefused, login_delay

    clock = FakeClock()
    users = UserStore(engine, clock=clock)
    users.create_user("bob", "long-enough", "operator", by="x")
    assert users.authenticate("bob", "wrong-one").failures == 1
    assert users.authenticate("bob", "wrong-two").failures == 2
    # too early: refused without checking the password, even the right one
    with pytest.raises(LoginRefused, match="try again in 1 s") as err:
        users.authenticate("bob", "long-enough")
    assert err.value.retry_after_s == pytest.approx(login_delay(2))
    for n in range(3, LOCKOUT_AFTER + 1):
        clock.now += login_delay(n - 1)
        outcome = users.authenticate("bob", f"wrong-{n}")
        assert outcome.failures == n and outcome.locked is (n == LOCKOUT_AFTER)
    clock.now += LOCKOUT_S / 2
    restarted = UserStore(engine, clock=clock)  # the counters live in the database
    with pytest.raises(LoginRefused, match="locked after 5 failed logins"):
        restarted.authenticate("bob", "long-enough")
    clock.now += LOCKOUT_S / 2 + 1
    assert restarted.authenticate("bob", "long-enough").user == User("bob", Role.OPERATOR)
    assert restarted.authenticate("bob", "wrong-again").failures == 1  # a good login resets the count


def test_unlock(engine: Engine) -> None:
    from inspector.access.users import LOCKOUT_AFTER, LoginRefused

    clock = FakeClock()
    users = UserStore(engine, clock=clock)
    users.create_user("bob", "long-enough", "operator", by="x")
    for n in range(LOCKOUT_AFTER):
        clock.now += 60
        users.authenticate("bob", f"wrong-{n}")
    with pytest.raises(LoginRefused):
        users.authenticate("bob", "long-enough")
    assert users.unlock("bob") is True
    assert users.verify("bob", "long-enough") == User("bob", Role.OPERATOR)
    assert users.unlock("bob") is False


def test_remove_user_keeps_one_admin(engine: Engine) -> None:
    users = UserStore(engine)
    users.create_user("root", "long-enough", "admin", by="x")
    users.create_user("bob", "long-enough", "operator", by="root")
    assert users.remove_user("bob") is Role.OPERATOR
    with pytest.raises(UserError, match="last admin"):
        users.remove_user("root")
    with pytest.raises(UserError, match="does not exist"):
        users.remove_user("bob")
