"""A retired recipe gives back what it held; switches are serialised, one retirement thread at most."""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from pathlib import Path

import pytest

from inspector.config import parse_config
from inspector.recipes.switch import RecipeBusy
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config

#: Memory a switch may add for good (allocator noise, caches filling); a retired model held ~110 MB
RSS_PER_SWITCH_MB = 4.0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _station(recipes: Path) -> Station:
    return Station(parse_config(line_config(n=2) + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")


def _switch(st: Station, key: int) -> None:
    st.select_recipe(key)
    st.recipes.wait_retired(timeout=30)
    gc.collect()


def test_switching_back_and_forth_keeps_memory_threads_and_files_flat(recipes: Path) -> None:
    st = _station(recipes)
    n = 8
    with st:
        st.recipes.wait_retired(timeout=30)
        _switch(st, 2)
        _switch(st, 1)  # both models have been compiled once: caches are warm from here on
        base = (_rss_mb(), _os_threads(), _fds())
        for i in range(n):
            _switch(st, 2 if i % 2 == 0 else 1)
        after = (_rss_mb(), _os_threads(), _fds())
    assert st.recipes.switches == n + 3
    assert after[1] <= base[1], f"threads {base[1]} -> {after[1]} over {n} switches"
    assert after[2] <= base[2], f"file descriptors {base[2]} -> {after[2]} over {n} switches"
    grown = after[0] - base[0]
    assert grown <= n * RSS_PER_SWITCH_MB, f"RSS {base[0]:.0f} -> {after[0]:.0f} MB over {n} switches"


def test_a_switch_while_another_is_prepared_is_busy_and_starts_no_thread(recipes: Path) -> None:
    st = _station(recipes)
    try:
        st.recipes.wait_retired(timeout=30)
        make = st.make_backends
        entered, go = threading.Event(), threading.Event()

        def slow_make(card):  # the model of the first request takes its time to compile
            entered.set()
            assert go.wait(30)
            return make(card)

        st.make_backends = slow_make
        first = threading.Thread(target=st.recipes.select, args=(2,))
        first.start()
        assert entered.wait(30)
        threads = threading.active_count()
        for key in (1, 2, "housing-a"):
            with pytest.raises(RecipeBusy, match="busy"):
                st.recipes.select(key)
        assert threading.active_count() == threads  # refused at once: no thread waits per request
        go.set()
        first.join(30)
        assert st.recipes.current.recipe.number == 2 and st.recipes.switches == 2
        st.make_backends = make
        st.select_recipe(1)  # once done, the next switch goes through
        assert st.recipes.current.recipe.number == 1
    finally:
        st.stop()


FREE_RUNNING = """
name = "free-running"
[model]
threads = 1
[[cameras]]
id = "cam1"
kind = "simulated"
width = 160
height = 160
bank_size = 8
fps = 10
"""


@pytest.mark.parametrize("station", ["triggered line", "free-running"])
def test_switches_that_overtake_their_retirement_let_go_of_every_model_but_the_current(
        recipes: Path, station: str) -> None:
    """Switches faster than their retirement, and switches with no trigger between them (a free-running
    station: every recipe starts at once) close every earlier backend, and nothing keeps one alive."""
    text = line_config(n=2) if station == "triggered line" else FREE_RUNNING
    st = Station(parse_config(text + f'[recipes]\ndir = "{recipes}"\nselect = 1\n'), db_url="none")
    made = []
    make = st.make_backends

    def counting_make(card):
        backends = make(card)
        made.extend(weakref.ref(be) for be in backends)
        return backends

    st.make_backends = counting_make
    with st:
        st.recipes.wait_retired(timeout=30)
        retirers = []
        for key in (2, 1, 2, 1, 2):  # each one before the one before it retired
            st.select_recipe(key)
            retirers.append(sum(t.name == "recipe-retire" for t in threading.enumerate()))
        st.recipes.wait_retired(timeout=30)
        time.sleep(0.2)
        gc.collect()
        alive = [r() for r in made]
        assert max(retirers) == 1
        assert len(made) == 5 and alive[-1] is st.backends[0]
        assert alive[:-1] == [None] * 4, "a retired recipe's backend is still referenced"
    assert st.recipes.current.recipe.number == 2
