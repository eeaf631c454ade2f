"""``streams = "auto"``: the two-stream graph is left when a batch finds the runtime idle and is at most half
of what this station's cameras fill (not half of max_batch: one camera's batches are all of 1)."""

from __future__ import annotations

import pytest

from inspector.pipeline.backends import create_backend
from inspector.pipeline.backends import openvino_backend as ob
from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card


def run(be, sizes: list[int]) -> list[bool]:
    """Start batches of ``sizes`` three at a time (a queue forms), waiting for all before the next three;
    whether each ran on the two-stream graph."""
    on_loaded = []
    for k in range(0, len(sizes), 3):
        before = be.loaded_batches
        pending = []
        for slot, n in enumerate(sizes[k:k + 3]):
            pending.append(be.start(slot, n))
            on_loaded.append(be.loaded_batches > before)
            before = be.loaded_batches
        for p in pending:
            p.wait()
    return on_loaded


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ob, "LOADED_LINGER_NS", 60 * 10**9)  # no pause ends the loaded phase here: sizes decide
    be = create_backend("openvino", load_card(DEFAULT_MODEL), max_batch=8, precision="f32", depth=3, streams="auto")
    for slot in range(3):
        be.slot_buffer(slot)[:] = 114
    yield be
    be.close()


def test_one_saturated_camera_stays_on_the_two_stream_graph(backend) -> None:
    # batches of 1 only (one camera): the third finds two inside and the station is loaded; from then on a
    # batch of 1 that finds the runtime idle is a full batch of this station, not a sign that it keeps up
    on = run(backend, [1] * 9)
    assert on[2:] == [True] * 7  # before: the first batch of each three went back to the one-stream graph


def test_a_small_batch_of_a_many_camera_station_goes_back_to_every_core(backend) -> None:
    on = run(backend, [8, 8, 8, 1, 8, 8])
    assert on[2] and on[1 + 2] is False  # 1 of 8 found the runtime idle: the station keeps up
