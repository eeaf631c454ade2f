"""``inspector users ...`` from the command line: passwords from the terminal or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspector.access.audit_verify import verify_audit
from inspector.access.users import AuditLog, Role, User, UserStore
from inspector.cli import app
from inspector.storage.db import open_database


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'station.db'}"


def _run(args: list[str], url: str, **env: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, [*args, "--db", url], env=env)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def _users(url: str) -> list[User]:
    eng = open_database(url)
    try:
        return UserStore(eng).list_users()
    finally:
        eng.dispose()


def test_first_user_must_be_admin_and_needs_no_login(url: str) -> None:
    code, out = _run(["users", "add", "tom", "--role", "operator"], url, INSPECTOR_NEW_PASSWORD="tom-password")
    assert code == 2 and "first user must be an admin" in out
    code, out = _run(["users", "add", "root", "--role", "admin"], url, INSPECTOR_NEW_PASSWORD="root-password")
    assert code == 0, out
    assert _users(url) == [User("root", Role.ADMIN)]


def test_admin_adds_lists_changes_and_removes(url: str) -> None:
    _run(["users", "add", "root", "--role", "admin"], url, INSPECTOR_NEW_PASSWORD="root-password")
    code, out = _run(["users", "add", "tom", "--role", "operator"], url, INSPECTOR_NEW_PASSWORD="tom-password")
    assert code == 2 and "--as" in out  # users exist: an admin must log in
    admin = {"INSPECTOR_PASSWORD": "root-password"}
    code, out = _run(["users", "add", "tom", "--role", "operator", "--as", "root"], url,
                     INSPECTOR_NEW_PASSWORD="tom-password", **admin)
    assert code == 0, out
    code, out = _run(["users", "list", "--as", "root"], url, **admin)
    assert code == 0 and "tom" in out and "operator" in out
    code, out = _run(["users", "passwd", "tom", "--as", "root"], url, INSPECTOR_NEW_PASSWORD="tom-new-pass", **admin)
    assert code == 0, out
    code, out = _run(["users", "passwd", "tom"], url, INSPECTOR_PASSWORD="tom-new-pass",
                     INSPECTOR_NEW_PASSWORD="tom-third-pass")
    assert code == 0, out  # a user changes their own password
    code, out = _run(["users", "remove", "root", "--as", "root"], url, **admin)
    assert code == 2 and "admin" in out
    code, out = _run(["users", "remove", "tom", "--as", "root"], url, **admin)
    assert code == 0, out
    assert _users(url) == [User("root", Role.ADMIN)]
    eng = open_database(url)
    try:
        actions = [e.action for e in reversed(AuditLog(eng).list())]
        assert "tom-password" not in str(AuditLog(eng).list())
        assert verify_audit(eng).ok
    finally:
        eng.dispose()
    assert actions.count("users.create") == 2 and "users.remove" in actions
    assert actions.count("users.set_password") == 2 and "session.login" in actions


@pytest.mark.parametrize("args", [["users", "add", "tom", "--role", "operator"], ["users", "list"],
                                  ["users", "remove", "tom"]])
def test_wrong_or_missing_admin_password(url: str, args: list[str]) -> None:
    _run(["users", "add", "root", "--role", "admin"], url, INSPECTOR_NEW_PASSWORD="root-password")
    code, out = _run([*args, "--as", "root"], url, INSPECTOR_PASSWORD="not-the-one", INSPECTOR_NEW_PASSWORD="x" * 9)
    assert code == 2 and "wrong user name or password" in out and len(out.strip().splitlines()) == 1
    code, out = _run([*args, "--as", "root"], url)  # no terminal, no environment variable
    assert code == 2 and "INSPECTOR_PASSWORD" in out


def test_non_admin_cannot_manage(url: str) -> None:
    _run(["users", "add", "root", "--role", "admin"], url, INSPECTOR_NEW_PASSWORD="root-password")
    _run(["users", "add", "tom", "--role", "operator", "--as", "root"], url, INSPECTOR_PASSWORD="root-password",
         INSPECTOR_NEW_PASSWORD="tom-password")
    code, out = _run(["users", "add", "eve", "--role", "admin", "--as", "tom"], url, INSPECTOR_PASSWORD="tom-password",
                     INSPECTOR_NEW_PASSWORD="eve-password")
    assert code == 2 and "admin role" in out
    assert [u.name for u in _users(url)] == ["root", "tom"]


def test_short_password_is_one_line(url: str) -> None:
    code, out = _run(["users", "add", "root", "--role", "admin"], url, INSPECTOR_NEW_PASSWORD="short")
    assert code == 2 and "at least 8" in out and len(out.strip().splitlines()) == 1
