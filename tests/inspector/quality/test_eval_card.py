"""``inspector eval``: the card's threshold by default; changing a deployed card is a login and an audit row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspector.access.audit_verify import verify_audit
from inspector.access.users import AuditLog
from inspector.pipeline.model_repo import load_card
from inspector.storage.db import open_database
from tests.inspector.cli_users import database_with_users, run_cli

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "defect-yolo11p-320"
FAST = ["--count", "6", "--backend", "onnxruntime"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "defect-copy"
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.fixture
def url(tmp_path: Path) -> str:
    return database_with_users(tmp_path)


_run = run_cli


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
