"""Controls a role cannot use: disabled, with a tooltip naming the role needed."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QWidget

from inspector.access.control import StationControl


def role_needed(control: StationControl, action: str) -> str:
    """``"needs the engineer role"`` for an action the current user may not perform, else ``""``."""
    if control.can(action):
        return ""
    need = control.permissions.table.get(action)
    who = "log in" if control.user is None else f"logged in as {control.user.role.label}"
    return f"needs the {need.label} role ({who})" if need is not None else ""


def gate(control_widget: QWidget | QAction, control: StationControl, action: str, *, usable: bool = True,
         tip: str = "") -> bool:
    """Enable ``control_widget`` only if the user may perform ``action`` (and ``usable``); returns whether enabled.

    A refusal by role shows as the tooltip (``"needs the engineer role"``); otherwise ``tip``.
    """
    need = role_needed(control, action)
    control_widget.setEnabled(usable and not need)
    control_widget.setToolTip(need or tip)
    return usable and not need
