"""A gate refusal crosses the control link as the same typed error (its kind and fields), with the same line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector.access.control import ControlError, GateRefused
from inspector.recipes.switch import GateRefused as SwitchGateRefused
from inspector.service.client import RemoteLink
from inspector.service.server import ControlServer
from tests.gui.conftest import PASSWORDS, make_control
from tests.inspector.service.test_server import Station

LINE = ("recipe housing-b v2: model defect-new: its card holds no promotion gate ([gate]) against defect-copy; "
        "run inspector model gate --candidate defect-new --current defect-copy --data HELD_OUT/data.yaml")


class GatedStation(Station):
    """A fake station whose every recipe switch the promotion gate refuses (housing-a v2 stays in force)."""

    def switch_recipe(self, key: int | str, *, override_gate_by: str | None = None, reason: str = "") -> Any:
        raise SwitchGateRefused(recipe="housing-b v2", model="defect-new", in_force="housing-a v2",
                                reason=LINE.split("model defect-new: ", 1)[1])


@pytest.fixture
def link(engine: Any, tmp_path: Path) -> Iterator[RemoteLink]:
    st = GatedStation(engine)
    make_control(st, engine)
    server = ControlServer(st, tmp_path / "run" / "st.sock", image_fps=10)
    server.start()
    remote = RemoteLink(server.path)
    try:
        remote.request("login", name="op", password=PASSWORDS["op"])
        yield remote
    finally:
        remote.close()
        server.stop()


def test_the_attached_side_gets_the_gate_refusal_as_its_type_with_its_fields(link: RemoteLink) -> None:
    with pytest.raises(GateRefused) as err:
        link.request("select_recipe", key=2)
    g = err.value
    assert isinstance(g, ControlError)  # callers that catch the control API's error still do
    assert str(g) == f"{LINE}; an admin may override it with a reason (audited)"
    assert (g.recipe, g.model, g.in_force) == ("housing-b v2", "defect-new", "housing-a v2")
    assert g.reason == LINE.split("model defect-new: ", 1)[1]


def test_a_refusal_of_another_kind_stays_a_plain_control_error(link: RemoteLink) -> None:
    link.request("login", name="admin", password=PASSWORDS["admin"])
    with pytest.raises(ControlError, match="give the reason") as err:
        link.request("select_recipe", key=2, override_gate=True, reason="  ")
    assert not isinstance(err.value, GateRefused)
