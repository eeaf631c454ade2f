"""``inspector recipe select KEY`` against a RUNNING ``inspector service``: the product changeover from the command
line goes over the control link into the service's `StationControl` (login, role, audit there); refusals are one
line and exit 2.

One ``inspector service`` child (tests/gui/service_child.py) with two simulated cameras and two product recipes on
the shipped detector serves the module; its database holds root (admin), eve (engineer) and otto (operator).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.access.users import AuditLog
from inspector.storage.db import open_database
from tests.gui.service_child import ServiceChild, recipe_service_station
from tests.inspector.cli_users import run_cli


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceChild]:
    folder = tmp_path_factory.mktemp("select-service")
    svc = ServiceChild(folder, recipe_service_station(folder, "select-svc"), args=["--no-archive", "--image-fps", "0"])
    with svc.running(timeout=120.0):
        yield svc


def _selections(svc: ServiceChild) -> list[tuple[str, str | None, str | None]]:
    """The audit trail's recipe selections, oldest first: (user, old, new)."""
    eng = open_database(svc.url)
    try:
        rows = sorted(AuditLog(eng).list(), key=lambda e: e.id)
        return [(e.user, e.old, e.new) for e in rows if e.action == "recipe.select"]
    finally:
        eng.dispose()


def test_an_operator_selects_a_recipe_on_the_running_service_and_it_is_audited(service: ServiceChild) -> None:
    before = _selections(service)
    code, out = run_cli(["recipe", "select", "cover", "--socket", str(service.socket), "--as", "otto"],
                        INSPECTOR_PASSWORD="otto-password")
    assert code == 0, out
    # a free-running station: a part is a frame, and no part is triggered (the GUI's question says so too)
    assert out.strip() == "station select-svc: recipe cover v1 from the next frame; frames already taken finish on housing v1"
    assert _selections(service)[len(before):] == [("otto", "housing v1", "cover v1")]  # the service's audit row
    # by number, back again (what a PLC selects)
    code, out = run_cli(["recipe", "select", "1", "--socket", str(service.socket), "--as", "otto"],
                        INSPECTOR_PASSWORD="otto-password")
    assert code == 0, out
    assert _selections(service)[-1] == ("otto", "cover v1", "housing v1")


@pytest.mark.parametrize(("args", "env", "says"), [
    (["7"], {"INSPECTOR_PASSWORD": "otto-password"}, "7"),  # unknown recipe: the known ones are named
    (["cover"], {"INSPECTOR_PASSWORD": "wrong-password"}, "--as otto: wrong user name or password"),
    (["cover", "--override-gate", "--reason", "trial lot"], {"INSPECTOR_PASSWORD": "otto-password"},
     "needs the admin role"),
    (["cover", "--override-gate"], {"INSPECTOR_PASSWORD": "root-password"}, "reason"),
], ids=["unknown recipe", "wrong password", "override as operator", "override without reason"])
def test_a_refused_selection_is_one_line_and_exit_2(service: ServiceChild, args: list[str], env: dict[str, str],
                                                    says: str) -> None:
    acting = "root" if env["INSPECTOR_PASSWORD"] == "root-password" else "otto"
    before = _selections(service)
    code, out = run_cli(["recipe", "select", *args, "--socket", str(service.socket), "--as", acting], **env)
    assert code == 2 and out.count("\n") == 1 and says in out, out
    assert _selections(service) == before  # nothing switched


def test_select_without_a_login_or_a_service_is_one_line_and_exit_2(service: ServiceChild, tmp_path: Path) -> None:
    code, out = run_cli(["recipe", "select", "cover", "--socket", str(service.socket)])
    assert code == 2 and out.count("\n") == 1 and "--as" in out
    code, out = run_cli(["recipe", "select", "cover", "--socket", str(tmp_path / "none.sock"), "--as", "otto"],
                        INSPECTOR_PASSWORD="otto-password")
    assert code == 2 and out.count("\n") == 1 and "no station service" in out and "none.sock" in out


def test_the_help_of_recipe_select_names_the_service() -> None:
    done = subprocess.run([sys.executable, "-m", "inspector.cli", "recipe", "select", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--socket" in done.stdout and "service" in done.stdout
