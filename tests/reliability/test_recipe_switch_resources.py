"""Many recipe switches hold what one switch holds: threads, files, compiled-model cache files, backends.

Counts, not times (issue 26: 100 switches, RSS and threads within 5% of their value after the first
switch; `benchmarks/recipe_switches.py` measures RSS). Every switch compiles the recipe's model again:
the compiled-model cache must find the graph it compiled before, not write a new blob each time.
"""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path

import pytest

from inspector.config import parse_config
from inspector.pipeline.backends import create_backend
from inspector.pipeline.backends.openvino_backend import compiled_model_cache
from inspector.pipeline.model_repo import load_card
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config
from tests.inspector.recipes.helpers import write_recipes

#: switches after the first one (each waits for the old recipe to be retired)
SWITCHES = 6


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A compiled-model cache folder of this test's own; returns it."""
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache" / "banks"))
    folder = compiled_model_cache()
    assert folder is not None
    return folder


def _blobs(cache: Path) -> int:
    return len(list(cache.glob("*.blob"))) if cache.exists() else 0


def _wait_static(st: Station) -> None:
    for backend in st.backends:
        wait = getattr(backend, "wait_static", None)
        if wait is not None:
            assert wait(timeout=120), "the static graphs did not compile in 120 s"


def _resources() -> tuple[int, int]:
    """OS threads and open file descriptors of this process."""
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def test_a_model_compiled_again_is_found_in_the_compiled_model_cache(cache: Path) -> None:
    """The graph with NMS inside (the station's default) gets the same cache key every time it is built."""
    card = load_card("defect-yolo11p-320")
    for _ in range(2):
        be = create_backend("openvino", card, max_batch=2, device="CPU", threads=1, precision="f32", depth=1,
                            streams=0, nms_iou=0.5)
        be.close()
    assert _blobs(cache) == 1


def test_recipe_switches_hold_what_the_first_switch_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """After the first switch (both models compiled once), more switches add no thread, no file descriptor,
    no cache file, and every retired backend is garbage-collected."""
    monkeypatch.setenv("INSPECTOR_MODELS_DIR", str(tmp_path / "models"))
    # static graphs begin with the first batch, as on a machine slow enough to reach STATIC_AFTER_S in a switch
    monkeypatch.setattr("inspector.pipeline.backends.openvino_backend.STATIC_AFTER_S", 0.0)
    recipes = write_recipes(tmp_path)
    st = Station(parse_config(line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    made: list[weakref.ref[object]] = []
    make = st.make_backends

    def tracked_make(card):
        backends = make(card)
        made.extend(weakref.ref(be) for be in backends)
        return backends

    st.make_backends = tracked_make  # type: ignore[method-assign]
    with st:
        # each model's full-batch static graphs go into the cache too; they compile once a backend has decided
        # batches for STATIC_AFTER_S, which a loaded machine reaches within the switches below: compile them now
        _wait_static(st)
        st.recipes.wait_retired(timeout=60)
        st.select_recipe(2)
        _wait_static(st)
        st.recipes.wait_retired(timeout=60)
        gc.collect()
        threads, fds = _resources()
        blobs = _blobs(cache)
        for i in range(SWITCHES):
            st.select_recipe(1 if i % 2 == 0 else 2)
            st.recipes.wait_retired(timeout=60)
        _wait_static(st)
        gc.collect()
        after_threads, after_fds = _resources()
        after_blobs = _blobs(cache)
        alive = [r() is not None for r in made]
        current = st.backends[0]
    assert st.recipes.switches == SWITCHES + 2
    assert blobs >= 1, "the station compiled no model into its cache"
    assert after_blobs == blobs, f"compiled-model cache files {blobs} -> {after_blobs} over {SWITCHES} switches"
    assert after_threads <= threads, f"threads {threads} -> {after_threads} over {SWITCHES} switches"
    assert after_fds <= fds, f"file descriptors {fds} -> {after_fds} over {SWITCHES} switches"
    assert len(made) == SWITCHES + 1 and made[-1]() is current
    assert alive[:-1] == [False] * SWITCHES, "a retired recipe's backend is still referenced"
