"""The Qt probe: before Qt loads, one line naming what is missing (or --headless), exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gui import qt_probe

ROOT = Path(__file__).resolve().parents[2]
XCB = {"DISPLAY": ":0"}


def fake_qt(tmp_path: Path) -> Path:
    """A PySide6 folder with the two files the probe looks at."""
    plugins = tmp_path / "PySide6" / "Qt" / "plugins" / "platforms"
    plugins.mkdir(parents=True)
    (plugins / "libqxcb.so").touch()
    (tmp_path / "PySide6" / "QtWidgets.abi3.so").touch()
    return tmp_path / "PySide6"


def ldd_output(*missing: str) -> str:
    found = "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f)\n"
    return found + "".join(f"\t{s} => not found\n" for s in missing)


@pytest.mark.parametrize(
    ("missing", "packages"),
    [
        ((), None),
        (("libxcb-icccm.so.4", "libxcb-keysyms.so.1"), "libxcb-icccm4 libxcb-keysyms1"),
        (("libxcb-cursor.so.0",), "libxcb-cursor0"),
        (("libEGL.so.1", "libxkbcommon-x11.so.0"), "libegl1 libxkbcommon-x11-0"),
    ],
)
def test_names_exactly_the_missing_libraries(tmp_path: Path, missing: tuple[str, ...], packages: str | None) -> None:
    line = qt_probe.check(XCB, qt_dir=fake_qt(tmp_path), ldd=lambda _f: ldd_output(*missing),
                          loadable=lambda s: s not in missing, system="linux")
    if packages is None:
        assert line is None
        return
    assert line is not None and "\n" not in line
    named = re.search(r"missing: (.*?);", line)
    assert named is not None and set(named.group(1).split(", ")) == set(missing)
    assert line.endswith(f"sudo apt-get install -y {packages}")
    assert "libxcb.so.1" not in line  # found libraries are not named


def test_a_library_without_a_known_package_is_still_named(tmp_path: Path) -> None:
    line = qt_probe.check(XCB, qt_dir=fake_qt(tmp_path), ldd=lambda _f: ldd_output("libfoo.so.3"),
                          loadable=lambda _s: True, system="linux")
    assert line is not None and "libfoo.so.3" in line and "apt-get" not in line


def test_without_ldd_the_known_list_is_loaded(tmp_path: Path) -> None:
    gone = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}
    line = qt_probe.check(XCB, qt_dir=fake_qt(tmp_path), ldd=lambda _f: None, loadable=lambda s: s not in gone,
                          system="linux")
    assert line is not None and line.endswith("sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1")


@pytest.mark.parametrize(
    "env",
    [{}, {"QT_QPA_PLATFORM": "xcb"}, {"XDG_SESSION_TYPE": "x11"}, {"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}],
)
def test_no_display_suggests_headless(tmp_path: Path, env: dict[str, str]) -> None:
    line = qt_probe.check(env, qt_dir=fake_qt(tmp_path), ldd=lambda _f: ldd_output(), system="linux")
    assert line is not None and "--headless" in line and "\n" not in line


@pytest.mark.parametrize("env", [{"QT_QPA_PLATFORM": "offscreen"}, {"DISPLAY": ":1"}, {"WAYLAND_DISPLAY": "wayland-0"}])
def test_a_display_or_offscreen_is_fine(tmp_path: Path, env: dict[str, str]) -> None:
    assert qt_probe.check(env, qt_dir=fake_qt(tmp_path), ldd=lambda _f: ldd_output(), loadable=lambda _s: True,
                          system="linux") is None


def test_offscreen_does_not_need_the_xcb_libraries(tmp_path: Path) -> None:
    def ldd(f: Path) -> str:
        return ldd_output("libxcb-icccm.so.4") if f.name == "libqxcb.so" else ldd_output()

    qt = fake_qt(tmp_path)
    assert qt_probe.check({"QT_QPA_PLATFORM": "offscreen"}, qt_dir=qt, ldd=ldd,
                          loadable=lambda _s: True, system="linux") is None
    assert qt_probe.check({"QT_QPA_PLATFORM": "offscreen"}, qt_dir=qt, ldd=ldd,
                          loadable=lambda _s: True, system="linux", platform="xcb") is not None


def test_only_linux_is_probed(tmp_path: Path) -> None:
    assert qt_probe.check({}, qt_dir=fake_qt(tmp_path), system="win32") is None


# -- through the console script, in a stripped environment: exit 2 and Qt never imported --------------------

LAUNCH = """
import sys
from gui import launcher
sys.argv = ["inspector", *sys.argv[1:]]
try:
    launcher.main()
except SystemExit as exc:
    code = exc.code
qt = sorted(m for m in sys.modules if m in ("PySide6.QtGui", "PySide6.QtWidgets"))
print("QT-IMPORTED:", ",".join(qt) or "none")
sys.exit(code)
"""


def launch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": env.pop("HOME"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], env={**base, **env}, capture_output=True, check=False,
                          text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("args", [["gui"], ["run"], ["run", "--station", "demo"]])
def test_no_display_exits_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    res = launch(args, {"HOME": str(tmp_path)})
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "--headless" in lines[0], res.stderr
    assert "QT-IMPORTED: none" in res.stdout


def test_missing_libraries_exit_2_with_the_apt_command(tmp_path: Path) -> None:
    if qt_probe.pyside_dir() is None:
        pytest.skip("PySide6 is not installed: the launcher names the gui extra instead")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ldd = bin_dir / "ldd"
    ldd.write_text("#!/bin/sh\nprintf '\\tlibxcb-icccm.so.4 => not found\\n\\tlibxcb-keysyms.so.1 => not found\\n'\n")
    ldd.chmod(0o755)
    res = launch(["gui"], {"HOME": str(tmp_path), "DISPLAY": ":0", "PATH": f"{bin_dir}:/usr/bin:/bin"})
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "libxcb-icccm.so.4, libxcb-keysyms.so.1" in lines[0], res.stderr
    assert re.search(r"sudo apt-get install -y .*libxcb-icccm4 libxcb-keysyms1", lines[0])
    assert "QT-IMPORTED: none" in res.stdout


# -- the documented install is one list ---------------------------------------------------------------------

def packages_in(text: str, pattern: str) -> set[str]:
    m = re.search(pattern, text)
    assert m is not None, pattern
    return set(m.group(1).split()) - {"python3-venv"}


def test_readme_installer_and_ci_install_the_probes_packages() -> None:
    readme = (ROOT / "README.md").read_text()
    two_commands = readme[readme.index("## Two commands"):readme.index("## Command line")]
    want = set(qt_probe.APT_PACKAGES)
    commands = re.findall(r"sudo apt-get install -y ([^\n`&]+)", two_commands)
    assert len(commands) == 2 and all(set(c.split()) - {"python3-venv"} == want for c in commands)
    assert packages_in((ROOT / "installer" / "install.sh").read_text(), r'qt_packages="([^"]+)"') == want
    assert packages_in((ROOT / ".ci" / "run").read_text(), r'qt_packages="([^"]+)"') == want
    assert "python3-venv" in two_commands and "gui.qt_probe" in (ROOT / ".ci" / "run").read_text()
    assert set(qt_probe.APT_PACKAGES) <= set(qt_probe.PACKAGE_OF.values())
