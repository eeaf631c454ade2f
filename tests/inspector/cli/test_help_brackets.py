"""Every option's help is shown whole: a ``[section]`` in it is not eaten as rich markup (issue 31.8)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from inspector.cli import make_app

WIDE = {"COLUMNS": "400", "NO_COLOR": "1"}
_BOX = re.compile(r"[│╭╮╰╯─]")


def _bracketed() -> list[tuple[list[str], str]]:
    """Every option help with a ``[`` in it, with its command's path; the app builds its commands on first use."""
    app = make_app()
    CliRunner().invoke(app, ["--help"], env=WIDE)
    out: list[tuple[list[str], str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.extend((path, p.help) for p in cmd.params if "[" in (getattr(p, "help", None) or ""))
        for name, sub in getattr(cmd, "commands", {}).items():  # typer carries its own click: no isinstance
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


BRACKETED = _bracketed()


def test_the_scan_finds_the_bracketed_helps() -> None:
    assert (["run"], "Product recipe to start with (number or name; needs \\[recipes] dir).") in BRACKETED
    assert len(BRACKETED) >= 3


@pytest.mark.parametrize(("path", "text"), [pytest.param(p, t, id=f"{' '.join(p)}: {t[:30]}") for p, t in BRACKETED])
def test_bracketed_help_is_shown_whole(path: list[str], text: str) -> None:
    """Before: ``run --help`` said "( broker; the rest of  from the config)" for ``[mqtt] broker``."""
    res = CliRunner().invoke(make_app(), [*path, "--help"], env=WIDE, terminal_width=400)
    assert res.exit_code == 0, res.output
    shown = re.sub(r"\s+", " ", _BOX.sub(" ", res.output))
    assert re.sub(r"\s+", " ", text.replace("\\[", "[")) in shown
