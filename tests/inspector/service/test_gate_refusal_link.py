"""A gate refusal crosses the control link as the same typed error (its kind and fields), with the same line; the
attached clients (``inspector recipe select``) say it as one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector.access.control import ControlError
from inspector.quality.gate import GateRefused
from inspector.service.client import RemoteLink
from inspector.service.server import ControlServer
from tests.gui.conftest import PASSWORDS, make_control
from tests.inspector.cli_users import run_cli
from tests.inspector.service.test_server import Station

LINE = ("recipe housing-b v2: model defect-new: its card holds no promotion gate ([gate]) against defect-copy; "
        "run inspector model gate --candidate defect-new --current defect-copy --data HELD_OUT/data.yaml")


class GatedStation(Station):
    """A fake station whose every recipe switch the promotion gate refuses (housing-a v2 stays in force)."""

    def switch_recipe(self, key: int | str, *, override_gate_by: str | None = None, reason: str = "") -> Any:
        raise GateRefused(recipe="housing-b v2", model="defect-new", in_force="housing-a v2",
                          reason=LINE.split("model defect-new: ", 1)[1])


@pytest.fixture
def server(engine: Any, tmp_path: Path) -> Iterator[ControlServer]:
    st = GatedStation(engine)
    make_control(st, engine)
    server = ControlServer(st, tmp_path / "run" / "st.sock", image_fps=10)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def link(server: ControlServer) -> Iterator[RemoteLink]:
    remote = RemoteLink(server.path)
    try:
        remote.request("login", name="op", password=PASSWORDS["op"])
        yield remote
    finally:
        remote.close()


def test_the_attached_side_gets_the_gate_refusal_as_its_type_with_its_fields(link: RemoteLink) -> None:
    with pytest.raises(GateRefused) as err:
        link.request("select_recipe", key=2)
    g = err.value
    assert type(g) is GateRefused  # the one refusal type, as the station's control API raised it
    assert str(g) == f"{LINE}; an admin may override it with a reason (audited)"
    assert (g.recipe, g.model, g.in_force, g.overridable) == ("housing-b v2", "defect-new", "housing-a v2", True)
    assert g.reason == LINE.split("model defect-new: ", 1)[1]


def test_recipe_select_says_the_gate_refusal_as_one_line_and_exit_2(server: ControlServer) -> None:
    code, out = run_cli(["recipe", "select", "2", "--socket", str(server.path), "--as", "op"],
                        INSPECTOR_PASSWORD=PASSWORDS["op"])
    assert (code, out) == (2, f"inspector: {LINE}; an admin may override it with a reason (audited)\n")


def test_a_refusal_of_another_kind_stays_a_plain_control_error(link: RemoteLink) -> None:
    link.request("login", name="admin", password=PASSWORDS["admin"])
    with pytest.raises(ControlError, match="give the reason") as err:
        link.request("select_recipe", key=2, override_gate=True, reason="  ")
    assert not isinstance(err.value, GateRefused)
