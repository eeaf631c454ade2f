"""Can Qt open a window here? Checked before PySide6's QtGui loads.

Without a display, or without the shared libraries of Qt's platform plugin (a fresh Debian 12
or Ubuntu lacks several ``libxcb-*``), Qt aborts the process (exit 134) with a message that
names ``libxcb-cursor0`` whatever is missing. `check` finds out first and returns the one
line to print instead: the missing libraries and the apt command, or ``--headless``.

The probe runs ``ldd`` on the platform plugin and on QtWidgets (falling back to loading a
known list of libraries with ctypes where there is no ``ldd``); it finds PySide6 without
importing it. ``python -m gui.qt_probe`` prints the result (exit 0 fine, 2 not); ``.ci/run``
calls it after the documented install.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

#: Shared libraries of Qt's Linux platform plugins (and of QtGui) -> the Debian/Ubuntu package.
PACKAGE_OF: dict[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
}

#: The documented install (installer/install.sh, the README, .ci/run; a test keeps them equal):
#: what QtWidgets and the xcb plugin need on Debian 12 / Ubuntu 22.04+ (apt adds their dependencies).
APT_PACKAGES: tuple[str, ...] = (
    "libegl1", "libgl1", "libxkbcommon0", "libfontconfig1", "libdbus-1-3", "libglib2.0-0",
    "libx11-xcb1", "libxkbcommon-x11-0", "libxcb-cursor0", "libxcb-icccm4", "libxcb-image0",
    "libxcb-keysyms1", "libxcb-randr0", "libxcb-render-util0", "libxcb-shape0", "libxcb-xkb1",
)

#: Platform plugins that draw without a display server.
NO_DISPLAY_PLATFORMS = frozenset({"offscreen", "minimal", "minimalegl", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"})

#: Opened at run time by the xcb plugin of Qt 6.5-6.10 (dlopen), so ldd of the plugin may not list it.
_XCB_RUNTIME = ("libxcb-cursor.so.0",)
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)

Ldd = Callable[[Path], "str | None"]
Loadable = Callable[[str], bool]


def platform_of(environ: Mapping[str, str]) -> str | None:
    """The platform plugin Qt will use (QT_QPA_PLATFORM's first, else the session's); None: no display."""
    first = environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if first:
        return first
    if environ.get("WAYLAND_DISPLAY") and (environ.get("XDG_SESSION_TYPE") == "wayland" or not environ.get("DISPLAY")):
        return "wayland"
    return "xcb" if environ.get("DISPLAY") else None


def run_ldd(path: Path) -> str | None:
    """``ldd``'s output for ``path``; None where there is no ldd or it failed."""
    if shutil.which("ldd") is None:
        return None
    try:
        res = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 or "not found" in res.stdout else None


def can_load(soname: str) -> bool:
    """Whether the dynamic loader finds ``soname`` (ctypes; only for system libraries, never Qt's)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(files: Iterable[Path], runtime: Iterable[str] = (), *, ldd: Ldd = run_ldd,
                      loadable: Loadable = can_load) -> list[str]:
    """Sonames that ``files`` need (per ldd) or that Qt opens at run time, and the loader cannot find."""
    missing: set[str] = set()
    for f in files:
        out = ldd(f)
        if out is None:  # no ldd: try the libraries we know of
            missing.update(s for s in _known_for(f) if not loadable(s))
        else:
            missing.update(_NOT_FOUND.findall(out))
    missing.update(s for s in runtime if not loadable(s))
    return sorted(missing)


def _known_for(path: Path) -> list[str]:
    name = path.name
    if name.startswith("libqxcb"):
        return [s for s in PACKAGE_OF if "xcb" in s.lower() or s.startswith(("libX11", "libxkbcommon"))]
    if name.startswith("libqwayland"):
        return [s for s in PACKAGE_OF if s.startswith(("libwayland", "libxkbcommon"))]
    return [s for s in PACKAGE_OF if not ("xcb" in s.lower() or s.startswith(("libwayland", "libX11-")))]


def pyside_dir() -> Path | None:
    """PySide6's folder, found without importing it (importing QtGui is what aborts)."""
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def check(environ: Mapping[str, str] | None = None, *, qt_dir: Path | None = None, ldd: Ldd = run_ldd,
          loadable: Loadable = can_load, system: str = sys.platform, platform: str | None = None) -> str | None:
    """One line saying why Qt cannot open a window here, or None when it can (or we cannot tell).

    Args:
        environ: The environment (default ``os.environ``).
        qt_dir: PySide6's folder (default: found on ``sys.path``); None there: nothing to check.
        ldd: Runs ldd on a file (tests pass a fake).
        loadable: Whether a soname loads (tests pass a fake).
        system: ``sys.platform``; only Linux is probed.
        platform: Check this platform plugin's libraries whether or not there is a display (CI).
    """
    env = os.environ if environ is None else environ
    if not system.startswith("linux"):
        return None
    if platform is None:
        platform = platform_of(env)
    elif platform not in NO_DISPLAY_PLATFORMS:
        env = {**env, "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}  # a display is assumed
    if platform is None or (platform == "xcb" and not env.get("DISPLAY")) or (
            platform.startswith("wayland") and not env.get("WAYLAND_DISPLAY")):
        return ("no display for the GUI (DISPLAY and WAYLAND_DISPLAY are unset): run the engine without it, "
                "'inspector run --headless', or start the app from a desktop session")
    qt_dir = pyside_dir() if qt_dir is None else qt_dir
    if qt_dir is None:
        return None  # no PySide6: the launcher says which extra to install
    files = [f for f in qt_dir.glob("QtWidgets*.so")][:1]
    plugin_name = "wayland" if platform.startswith("wayland") else platform
    plugin = qt_dir / "Qt" / "plugins" / "platforms" / f"libq{plugin_name}.so"
    if platform not in NO_DISPLAY_PLATFORMS and plugin.is_file():
        files.append(plugin)
    missing = missing_libraries(files, _XCB_RUNTIME if platform == "xcb" else (), ldd=ldd, loadable=loadable)
    if not missing:
        return None
    packages = sorted({PACKAGE_OF[s] for s in missing if s in PACKAGE_OF})
    install = (f"sudo apt-get install -y {' '.join(packages)}" if packages
               else "install the packages that provide them")
    return f"Qt's {platform} platform plugin cannot load, missing: {', '.join(missing)}; fix: {install}"


def main(argv: list[str] | None = None) -> int:
    """Print the probe's result: exit 0 when Qt can open a window here, 2 when not."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gui.qt_probe", description=main.__doc__)
    ap.add_argument("--platform", help="check this platform plugin's libraries, display or not (e.g. xcb)")
    problem = check(platform=ap.parse_args(argv).platform)
    print(problem or "qt probe: Qt's platform plugin and its libraries are all here")
    return 2 if problem else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
