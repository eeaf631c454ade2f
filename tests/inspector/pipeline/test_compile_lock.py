"""Compiles into one OpenVINO cache folder never overlap, across threads and processes.

OpenVINO writes a blob in place when it compiled a graph it found no blob for, and a graph imported
from a blob keeps it mapped. Two compiles of one graph at once (a recipe switch beside the previous
backend's static-graph compile, or the precision-timing child beside the station) let the second
writer truncate a blob the first importer runs from: the station died of SIGBUS
(tests/reliability/test_recipe_switch_resources.py, 1 run in 2 with static graphs begun at once;
3 threads with a Core each, 8 rounds, crashed 1 run in 3; one Core or one lock: none in 9).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector.pipeline.backends import compiled_cache
from inspector.pipeline.backends.compiled_cache import compile_lock

HOLD = """
import sys, time
from inspector.pipeline.backends.compiled_cache import compile_lock
with compile_lock({"CACHE_DIR": sys.argv[1]}):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_compile_waits_while_another_process_compiles_into_the_same_folder(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        began = time.monotonic()
        with compile_lock({"CACHE_DIR": str(tmp_path)}):
            waited = time.monotonic() - began
    finally:
        child.wait(timeout=30)
    assert waited > 0.8, f"entered after {waited:.2f} s while the other process held the folder"


def test_compiles_without_a_cache_folder_take_no_lock(tmp_path: Path) -> None:
    inside = threading.Event()

    def other_compile() -> None:
        with compile_lock({}):
            inside.set()

    with compile_lock({}):
        thread = threading.Thread(target=other_compile)
        thread.start()
        assert inside.wait(5)
    thread.join()


def test_an_unusable_cache_folder_compiles_anyway(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with compile_lock({"CACHE_DIR": str(tmp_path / "file" / "cache")}):
        pass  # no folder can be made below a file: the cache is an optimisation, the compile goes on


def test_every_openvino_compile_of_a_backend_holds_the_cache_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    import openvino as ov

    from inspector.pipeline.backends.openvino_backend import OpenVinoBackend
    from inspector.pipeline.model_repo import load_card

    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "banks"))
    held = threading.local()
    unlocked: list[str] = []
    real_lock = compiled_cache.compile_lock

    @contextlib.contextmanager
    def counting(config: Any) -> Iterator[None]:
        with real_lock(config):
            held.n = getattr(held, "n", 0) + 1
            try:
                yield
            finally:
                held.n -= 1

    real_compile = ov.Core.compile_model

    def watched(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(held, "n", 0):
            unlocked.append(threading.current_thread().name)
        return real_compile(self, *args, **kwargs)

    monkeypatch.setattr(compiled_cache, "compile_lock", counting)
    monkeypatch.setattr(ov.Core, "compile_model", watched)
    backend = OpenVinoBackend(load_card("defect-yolo11p-320"), max_batch=2, precision="f32", streams="auto", batch=2)
    try:
        assert backend.wait_static(timeout=120)
    finally:
        backend.close()
    assert unlocked == [], f"compiled outside the cache lock in {unlocked}"
