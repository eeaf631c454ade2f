"""``inspector recipe save|versions|rollback``: logged in, audited, one line for a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.access.users import AuditLog
from inspector.recipes.recipe import load_recipe
from inspector.storage.db import open_database
from tests.inspector.cli_users import database_with_users, run_cli
from tests.inspector.recipes.helpers import retrained_copy


@pytest.fixture
def url(tmp_path: Path) -> str:
    return database_with_users(tmp_path)


_run = run_cli


def _audit(url: str) -> list[tuple[str, str, str, str | None]]:
    eng = open_database(url)
    try:
        rows = sorted(AuditLog(eng).list(), key=lambda e: e.id)
        return [(e.user, e.action, e.target, e.new) for e in rows if e.action.startswith("recipe.")]
    finally:
        eng.dispose()


def test_save_versions_and_rollback_from_the_command_line_are_audited(recipes: Path, tmp_path: Path, url: str) -> None:
    new = tmp_path / "a-new.toml"
    new.write_text((recipes / "a.toml").read_text().replace("scratch = 0.5", "scratch = 0.6"))
    base = ["--dir", str(recipes), "--db", url]
    code, out = _run(["recipe", "save", str(new), *base, "--as", "otto"], INSPECTOR_PASSWORD="otto-password")
    assert code == 2 and "recipe.save: needs the engineer role" in out
    code, out = _run(["recipe", "save", str(new), *base, "--as", "eve", "--reason", "new lot"],
                     INSPECTOR_PASSWORD="eve-password")
    assert code == 0, out
    assert "saved housing-a v3" in out and load_recipe(recipes / "a.toml").recipe.version == 3
    code, out = _run(["recipe", "versions", "housing-a", "--dir", str(recipes)])
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("  v2  defect-yolo11p-320") and "adopt" in lines[0]
    assert lines[1].startswith("* v3  defect-yolo11p-320") and "by eve" in lines[1] and "(new lot)" in lines[1]
    code, out = _run(["recipe", "rollback", "housing-a", *base, "--as", "eve", "--reason", "lot gone"],
                     INSPECTOR_PASSWORD="eve-password")
    assert code == 0, out
    assert "v3 -> housing-a v2" in out and load_recipe(recipes / "a.toml").recipe.version == 2
    audit = _audit(url)
    assert ("eve", "recipe.save_version", "housing-a") == audit[-2][:3]
    assert ("eve", "recipe.rollback", "housing-a") == audit[-1][:3] and "lot gone" in str(audit[-1][3])
    code, out = _run(["recipe", "rollback", "housing-a", *base, "--as", "eve", "--to", "7"],
                     INSPECTOR_PASSWORD="eve-password")
    assert code == 2 and out.count("\n") == 1 and "no kept version v7" in out


def test_a_detector_without_a_gate_needs_an_admins_override_with_a_reason(recipes: Path, tmp_path: Path,
                                                                         url: str) -> None:
    retrained_copy(recipes.parent / "models", "defect-new")
    new = tmp_path / "a-new.toml"
    new.write_text((recipes / "a.toml").read_text().replace('name = "defect-yolo11p-320"', 'name = "defect-new"'))
    base = ["recipe", "save", str(new), "--dir", str(recipes), "--db", url]
    code, out = _run([*base, "--as", "eve"], INSPECTOR_PASSWORD="eve-password")
    assert code == 2 and out.count("\n") == 1
    assert "recipe housing-a: model defect-new: its card holds no promotion gate ([gate]) against " \
           "defect-yolo11p-320" in out
    code, out = _run([*base, "--as", "eve", "--override-gate", "--reason", "trial"], INSPECTOR_PASSWORD="eve-password")
    assert code == 2 and "--override-gate: needs the admin role (logged in as eve, engineer)" in out
    code, out = _run([*base, "--as", "root", "--override-gate"], INSPECTOR_PASSWORD="root-password")
    assert code == 2 and "--override-gate: give --reason" in out
    assert load_recipe(recipes / "a.toml").model.name == "defect-yolo11p-320"
    code, out = _run([*base, "--as", "root", "--override-gate", "--reason", "supplier trial"],
                     INSPECTOR_PASSWORD="root-password")
    assert code == 0, out
    assert load_recipe(recipes / "a.toml").model.name == "defect-new"
    who, action, target, new_value = _audit(url)[-1]
    assert (who, action, target) == ("root", "recipe.gate_override", "housing-a")
    assert "defect-new" in str(new_value) and "defect-yolo11p-320" in str(new_value) and "supplier trial" in str(
        new_value)
