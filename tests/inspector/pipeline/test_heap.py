"""The process keeps the C heap's freed memory for its next frames: a frame-sized array is not faulted in afresh."""

from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt")

# a fresh process: 20 batches, each 8 frame-sized arrays (320 x 320 colour) and the batch stacked from them, made,
# touched and freed together, as a frame's work makes them; print the minor page faults a batch cost
_CHILD = """
import resource, sys
import numpy as np
if sys.argv[1] == "held":
    from inspector.pipeline.backends.base import hold_freed_heap
    hold_freed_heap()
def batch():
    frames = [np.ones((320, 320, 3), np.uint8) for _ in range(8)]
    return int(np.stack(frames)[0, 0, 0, 0])
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_freed_frames_are_reused_not_faulted_in_again() -> None:
    assert ctypes.util.find_library("c")
    pages = 16 * 320 * 320 * 3 // 4096  # a batch's: 1200
    # glibc's defaults: the batch mapped and unmapped, the heap's top given back, and each faulted in again
    assert _faults("default") > pages // 2
    # held: the freed memory is kept for the next batch (measured: 0 pages)
    assert _faults("held") < pages // 20


def test_every_command_holds_the_freed_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.cli import root

    called = []
    monkeypatch.setattr(root, "hold_freed_heap", lambda: called.append(True))
    with pytest.raises(SystemExit):
        root.run_cli(["--help"])
    assert called == [True]
