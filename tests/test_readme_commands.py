"""The README's two set-up commands run as root without sudo and as a user with sudo (issue 31.7)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_STUB = '#!/bin/sh\necho "{name} $*" >> "$STUB_LOG"\n{tail}'


def two_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Two commands"):readme.index("## Command line")]
    return re.findall(r"```bash\n(.+?)\n```", section)


def apt_part(command: str) -> str:
    """The command up to the venv: what needs root (apt), run here against stubs."""
    head, sep, _rest = command.partition(" && python3 -m venv")
    assert sep, command
    return head


def run_with_stubs(tmp_path: Path, command: str, *, with_sudo: bool) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    stubs = {"apt-get": ""}
    if with_sudo:
        stubs["sudo"] = 'exec "$@"\n'
    for name, tail in stubs.items():
        p = bin_dir / name
        p.write_text(_STUB.format(name=name, tail=tail))
        p.chmod(0o755)
    env = {"PATH": str(bin_dir), "STUB_LOG": str(log), "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/sh", "-c", apt_part(command)], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_the_readme_has_two_set_up_commands_and_the_tests_one_is_what_ci_runs() -> None:
    commands = two_commands()
    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/inspector gui")
    checks = "lint-imports && {bin}ruff check inspector camera gui tests && {bin}mypy"
    assert commands[1].endswith('.venv/bin/pip install -e ".[dev]" && .venv/bin/'
                                + checks.format(bin=".venv/bin/") + " && .venv/bin/python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]" && ' + checks.format(bin="") in ci and "python -m pytest -q" in ci


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
@pytest.mark.parametrize("index", [0, 1])
def test_as_root_without_sudo_the_apt_lines_run_directly(tmp_path: Path, index: int) -> None:
    calls = run_with_stubs(tmp_path, two_commands()[index], with_sudo=False)
    assert calls[0] == "apt-get update"
    assert calls[1].startswith("apt-get install -y python3-venv libegl1")
    assert len(calls) == 2


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
@pytest.mark.parametrize("index", [0, 1])
def test_as_a_user_with_sudo_the_apt_lines_go_through_sudo(tmp_path: Path, index: int) -> None:
    calls = run_with_stubs(tmp_path, two_commands()[index], with_sudo=True)
    assert calls[0] == "sudo apt-get update" and calls[1] == "apt-get update"
    assert calls[2].startswith("sudo apt-get install -y python3-venv") and calls[3].startswith("apt-get install -y")
    assert len(calls) == 4
