"""``inspector eval``: the card's threshold by default; changing a deployed card is a login and an audit row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspector.access.audit_verify import verify_audit
from inspector.access.control import StationControl
from inspector.access.users import AuditLog, Role
from inspector.cli import app
from inspector.pipeline.model_repo import load_card
from inspector.storage.db import migrate, open_database

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"
FAST = ["--count", "6", "--backend", "onnxruntime"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "defect-copy"
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'station.db'}"
    eng = open_database(u)
    migrate(eng)
    control = StationControl.offline(eng)
    control.create_admin("root-password", name="root")
    control.login("root", "root-password")
    control.add_user("eve", "eve-password", Role.ENGINEER)
    control.add_user("otto", "otto-password", Role.OPERATOR)
    control.logout()
    eng.dispose()
    return u


def _run(args: list[str], **env: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, args, env=env)
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def test_eval_defaults_to_the_cards_threshold(model: Path) -> None:
    code, out = _run(["eval", "--model", str(model), *FAST])
    assert code == 0, out
    assert "threshold 0.25," in out and "6 held-out frames" in out


def test_update_card_without_login_or_as_operator_leaves_the_card(model: Path, url: str) -> None:
    card = (model / "card.toml").read_bytes()
    code, out = _run(["eval", "--model", str(model), *FAST, "--threshold", "1.0", "--update-card", "--db", url])
    assert code == 2 and "--as" in out
    code, out = _run(["eval", "--model", str(model), *FAST, "--threshold", "1.0", "--update-card", "--db", url,
                      "--as", "otto"], INSPECTOR_PASSWORD="otto-password")
    assert code == 2 and "model.update_card: needs the engineer role" in out
    code, out = _run(["eval", "--model", str(model), *FAST, "--threshold", "1.0", "--update-card", "--db", url,
                      "--as", "eve"], INSPECTOR_PASSWORD="wrong-password")
    assert code == 2 and "wrong user name or password" in out
    assert (model / "card.toml").read_bytes() == card


def test_update_card_by_an_engineer_is_audited(model: Path, url: str) -> None:
    before = load_card(model)
    code, out = _run(["eval", "--model", str(model), *FAST, "--threshold", "0.4", "--update-card", "--db", url,
                      "--as", "eve"], INSPECTOR_PASSWORD="eve-password")
    assert code == 0, out
    after = load_card(model)  # still a valid card: sha256 of the ONNX and every range check
    assert after.threshold == 0.4 and after.card_sha256 != before.card_sha256
    eng = open_database(url)
    try:
        entries = [e for e in AuditLog(eng).list() if e.action == "model.card_updated"]
        assert len(entries) == 1
        e = entries[0]
        assert e.user == "eve" and e.target == before.name
        assert e.old == f"card sha256 {before.card_sha256} threshold 0.25"
        assert e.new == f"card sha256 {after.card_sha256} threshold 0.4"
        assert verify_audit(eng).ok
    finally:
        eng.dispose()
