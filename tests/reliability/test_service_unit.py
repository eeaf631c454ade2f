"""The service unit gives the station what its on-time threads need, and nothing more.

The deadline timer, the reject output's pulses and the simulated conveyor ask for ``SCHED_FIFO``
(`camera.realtime.raise_thread_priority`); the unit runs the station as the user ``inspector``,
who may do so only with ``CAP_SYS_NICE``. The second test runs that function as an unprivileged
user with exactly the capabilities the unit names (``setpriv``), and without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "installer" / "inspector-headless.service"
#: an unprivileged user and group (Debian's nobody / nogroup)
NOBODY = 65534


def _service_section() -> dict[str, list[str]]:
    """The ``[Service]`` keys of the unit, each with every value it is given."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def _caps(values: list[str]) -> set[str]:
    return {c for v in values for c in v.split()}


def test_the_unit_grants_cap_sys_nice_and_no_other_capability() -> None:
    service = _service_section()
    assert service["User"] == ["inspector"], "the station runs as its own user, not root"
    assert _caps(service.get("AmbientCapabilities", [])) == {"CAP_SYS_NICE"}
    assert _caps(service.get("CapabilityBoundingSet", [])) == {"CAP_SYS_NICE"}, "no capability beyond it"
    assert service.get("NoNewPrivileges") == ["yes"]


PROBE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from camera.realtime import raise_thread_priority; print(raise_thread_priority())"
)


def _as_nobody(ambient: set[str], bounding: set[str]) -> str:
    """What `raise_thread_priority` gets in a process of an unprivileged user holding these capabilities."""
    def names(caps: set[str]) -> str:
        return ",".join(f"+{c.removeprefix('CAP_').lower()}" for c in sorted(caps))

    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           "--bounding-set=-all" + ("," + names(bounding) if bounding else "")]
    if ambient:
        cmd += [f"--inh-caps={names(ambient)}", f"--ambient-caps={names(ambient)}"]
    done = subprocess.run([*cmd, sys.executable, "-c", PROBE, str(ROOT)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    return done.stdout.strip()


def test_with_the_units_capabilities_an_unprivileged_station_gets_real_time_threads() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run a probe as another user")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pytest.skip("real-time scheduling is not permitted here even for root")
    service = _service_section()
    ambient = _caps(service.get("AmbientCapabilities", []))
    bounding = _caps(service.get("CapabilityBoundingSet", []))
    assert _as_nobody(ambient, bounding) == "SCHED_FIFO 10"
    assert _as_nobody(set(), bounding) != "SCHED_FIFO 10", "without the ambient capability it must not work"
