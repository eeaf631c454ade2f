"""The admin's gate override through the control API (GUI, attached GUI over the link): role, reason, audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.access.control import ControlError, StationControl
from inspector.access.users import PermissionDenied, Role
from inspector.config import parse_config
from inspector.quality.gate import GateRefused
from inspector.recipes.versions import read_history
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config
from tests.inspector.recipes.helpers import retrained_copy


@pytest.fixture
def ungated(recipes: Path, tmp_path: Path) -> Iterator[tuple[Station, StationControl]]:
    """A station on housing-a whose housing-b ran defect-copy and now names defect-new, whose card holds no gate
    against it; and its control API with the admin ``admin`` logged in and the engineer ``eng``."""
    retrained_copy(recipes.parent / "models", "defect-new")
    text = line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'
    st = Station(parse_config(text), db_url=f"sqlite:///{tmp_path / 'station.db'}")
    try:
        assert st.select_recipe(2) == "housing-b v2"  # adopted: housing-b's history now names defect-copy
        assert st.select_recipe(1) == "housing-a v2"
        b = recipes / "b.toml"
        b.write_text(b.read_text().replace('name = "defect-copy"', 'name = "defect-new"'))
        control = StationControl(st)
        control.create_admin("admin-pass")
        control.login("admin", "admin-pass")
        control.add_user("eng", "engineer-pass", Role.ENGINEER)
        yield st, control
    finally:
        st.stop()


def test_only_an_admin_overrides_the_gate_on_a_switch_with_a_reason_and_it_is_audited(
        recipes: Path, ungated: tuple[Station, StationControl]) -> None:
    st, control = ungated
    control.login("eng", "engineer-pass")
    with pytest.raises(GateRefused, match="no promotion gate .* against defect-copy") as err:
        control.select_recipe(2)
    assert "\n" not in str(err.value) and "an admin may override" in str(err.value)
    with pytest.raises(PermissionDenied, match="recipe.override_gate: needs the admin role"):
        control.select_recipe(2, override_gate=True, reason="supplier trial")
    assert st.recipes.current.label == "housing-a v2"

    control.login("admin", "admin-pass")
    with pytest.raises(ControlError, match="reason"):
        control.select_recipe(2, override_gate=True, reason="  ")
    assert control.select_recipe(2, override_gate=True, reason="supplier trial") == "housing-b v2"
    e = read_history(recipes, "housing-b")[-1]
    assert (e.action, e.by, e.model, e.replaced, e.reason) == ("gate_override", "admin", "defect-new",
                                                               "defect-copy", "supplier trial")
    rows = [r for r in control.audit_entries() if r.action == "recipe.gate_override"]
    assert len(rows) == 1 and rows[0].user == "admin" and rows[0].target == "housing-b v2"
    assert "defect-new" in str(rows[0].new) and "defect-copy" in str(rows[0].new)
    assert "supplier trial" in str(rows[0].new)
    assert next(r.new for r in control.audit_entries() if r.action == "recipe.select") == "housing-b v2"

    # accepted once: the next switches need no override, and an unneeded override audits nothing more
    assert control.select_recipe(1) == "housing-a v2"
    assert control.select_recipe(2, override_gate=True, reason="again") == "housing-b v2"
    assert len([r for r in control.audit_entries() if r.action == "recipe.gate_override"]) == 1


def test_the_override_travels_over_the_attached_guis_link_operation() -> None:
    from inspector.service.session import OPS

    calls: list[tuple[object, bool, str]] = []

    class Control:
        def select_recipe(self, key: object, *, override_gate: bool = False, reason: str = "") -> str:
            calls.append((key, override_gate, reason))
            return "housing-b v2"

    assert OPS["select_recipe"](Control(), {"key": 2}) == "housing-b v2"  # type: ignore[arg-type]
    assert OPS["select_recipe"](Control(), {"key": 2, "override_gate": True,  # type: ignore[arg-type]
                                            "reason": "supplier trial"}) == "housing-b v2"
    assert calls == [(2, False, ""), (2, True, "supplier trial")]


def test_a_gate_refusal_is_a_typed_error_naming_the_model_the_reason_and_the_recipe_in_force(
        recipes: Path, ungated: tuple[Station, StationControl]) -> None:
    st, control = ungated
    with pytest.raises(GateRefused) as on_station:  # the engine's own refusal: the one type, as the gate raised it
        st.select_recipe(2)
    refused = on_station.value
    assert (refused.recipe, refused.model, refused.in_force, refused.overridable) == (
        "housing-b v2", "defect-new", "housing-a v2", False)
    assert refused.reason.startswith("its card holds no promotion gate ([gate]) against defect-copy")
    assert str(refused) == f"recipe housing-b v2: model defect-new: {refused.reason}"  # the line as before

    control.login("eng", "engineer-pass")
    with pytest.raises(GateRefused) as err:
        control.select_recipe(2)
    g = err.value
    assert (g.recipe, g.model, g.reason, g.in_force, g.overridable) == ("housing-b v2", "defect-new", refused.reason,
                                                                        "housing-a v2", True)
    assert str(g) == f"{refused}; an admin may override it with a reason (audited)"  # the user's one line

    # a gate run on another model file is a refusal too, and says so, though its text names no "promotion gate"
    card = recipes.parent / "models" / "defect-new" / "card.toml"
    card.write_text(card.read_text() + '\n[gate]\npassed = true\nagainst = "defect-copy"\n'
                    f'candidate_sha256 = "{"0" * 64}"\nagainst_sha256 = "{"0" * 64}"\n')
    with pytest.raises(GateRefused, match="gate was run on another model file") as err:
        control.select_recipe(2)
    assert str(err.value).endswith("; an admin may override it with a reason (audited)")
    assert st.recipes.current.label == "housing-a v2"


def test_two_overriding_switches_at_once_each_audit_their_own_gate_note(
        recipes: Path, ungated: tuple[Station, StationControl], monkeypatch: pytest.MonkeyPatch) -> None:
    """The GUI's admin and another session override at once: the second switch is made between the first's
    switch and its audit; each audit row names its own detector and reason."""
    st, gui = ungated  # the GUI's session: the admin logged in
    retrained_copy(recipes.parent / "models", "defect-other")  # housing-a's next detector, no gate either
    a = recipes / "a.toml"
    a.write_text(a.read_text().replace('name = "defect-yolo11p-320"', 'name = "defect-other"'))
    other = StationControl(st)
    other.login("admin", "admin-pass")
    select, interleaved = st.recipes.select, []

    def select_then_the_other(*args: object, **kwargs: object) -> object:
        done = select(*args, **kwargs)
        if not interleaved:  # the other session's switch lands before the GUI's is audited
            interleaved.append("switching")
            interleaved[0] = other.select_recipe(1, override_gate=True, reason="other trial")
        return done

    monkeypatch.setattr(st.recipes, "select", select_then_the_other)
    assert gui.select_recipe(2, override_gate=True, reason="supplier trial") == "housing-b v2"
    assert interleaved == ["housing-a v2"]
    rows = {r.target: str(r.new) for r in gui.audit_entries() if r.action == "recipe.gate_override"}
    assert set(rows) == {"housing-b v2", "housing-a v2"}, rows
    assert "defect-new" in rows["housing-b v2"] and "supplier trial" in rows["housing-b v2"], rows
    assert "defect-other" not in rows["housing-b v2"], rows
    assert "defect-other" in rows["housing-a v2"] and "other trial" in rows["housing-a v2"], rows
