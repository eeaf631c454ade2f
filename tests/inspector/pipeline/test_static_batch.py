"""A station's full batch runs on graphs compiled for exactly its size (`openvino_backend.STATIC_FULL_BATCH`),
compiled off the critical path; other sizes stay on the dynamic graph, and both give the same detections."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inspector.bench.pipeline import bench_frames
from inspector.pipeline.backends import create_backend
from inspector.pipeline.backends import openvino_backend as ob
from inspector.pipeline.model_repo import DEFAULT_MODEL, load_card
from inspector.pipeline.preprocess import Letterbox, letterbox_into


def _fill(be, slot: int, n: int) -> None:
    for i, f in enumerate(bench_frames(n, 320, 320)):
        letterbox_into(be.slot_buffer(slot)[i], f, "Mono8" if f.ndim == 2 else "BGR8", Letterbox.fit(320, 320, 320, 320))


@pytest.mark.parametrize("streams", ["auto", 0])
def test_the_full_batch_runs_on_its_static_graph_with_the_dynamic_graphs_detections(streams: int | str) -> None:
    card = load_card(DEFAULT_MODEL)
    be = create_backend("openvino", card, max_batch=8, precision="f32", depth=2, streams=streams, nms_iou=0.5,
                        batch=4)
    try:
        assert be.full_batch == 4
        assert be.wait_static(120.0)
        _fill(be, 0, 4)
        _fill(be, 1, 4)
        static = be.start(0, 4).wait()
        assert be.static_batches == 1
        dynamic = be.start(1, 3).wait()  # not the full batch: the dynamic graph
        assert be.static_batches == 1
        again = be.start(1, 4).wait()
        assert be.static_batches == 2
        assert static.detections is not None and dynamic.detections is not None and again.detections is not None
        assert sum(len(d) for d in static.detections) > 0
        for a, b in zip(static.detections[:3], dynamic.detections):  # f32: the same kernels' arithmetic
            np.testing.assert_allclose(a, b, atol=1e-3)
        np.testing.assert_allclose(static.raw[:3], dynamic.raw, atol=1e-3)
    finally:
        be.close()


def test_without_static_graphs_every_batch_runs_on_the_dynamic_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "STATIC_FULL_BATCH", False)
    be = create_backend("openvino", load_card(DEFAULT_MODEL), max_batch=8, precision="f32", depth=1, batch=2)
    try:
        assert be.wait_static(0.0)
        _fill(be, 0, 2)
        be.start(0, 2).wait()
        assert be.static_batches == 0
    finally:
        be.close()


def test_a_graph_that_cannot_take_a_static_batch_leaves_the_dynamic_one_running(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise RuntimeError("no static shape here\nmore")

    monkeypatch.setattr(ob, "_read_model", refuse)  # what the static graphs' thread reads the model with
    static = ob._Static(None, load_card(DEFAULT_MODEL), "f32", None, "CPU", {}, False, 2, 1)
    assert static.wait(60.0)
    assert static.requests() is None  # `start` keeps the dynamic graph
    assert "no graph for batches of 2 (no static shape here)" in caplog.text and "more" not in caplog.text
    static.close()


def test_closing_while_the_static_graphs_compile_waits_for_them() -> None:
    be = create_backend("openvino", load_card(DEFAULT_MODEL), max_batch=8, precision="f32", depth=1, batch=8)
    static = be._static
    assert static is not None and not static.wait(0.0)  # under way
    be.close()  # a process must not exit inside a compile
    assert static.wait(0.0) and not static._thread.is_alive()


def test_the_static_graphs_compile_only_once_the_backend_has_decided_batches_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the first results neither wait for their compile nor share the cores with it, and a station that runs
    # only seconds (a test's) never compiles them
    monkeypatch.setattr(ob, "STATIC_AFTER_S", 0.3)
    be = create_backend("openvino", load_card(DEFAULT_MODEL), max_batch=8, precision="f32", depth=1, batch=2)
    try:
        static = be._static
        assert static is not None
        be.warmup()
        _fill(be, 0, 2)
        running = be.start(0, 2)
        assert not static.begun
        running.wait()
        assert not static.begun  # the first batch decided: the clock starts
        time.sleep(0.35)
        be.start(0, 2).wait()
        assert static.begun
        assert be.wait_static(120.0) and static.requests() is not None
    finally:
        be.close()


def test_a_benchmark_waiting_for_the_static_graphs_compiles_them_at_once() -> None:
    be = create_backend("openvino", load_card(DEFAULT_MODEL), max_batch=8, precision="f32", depth=1, batch=2)
    try:
        assert be._static is not None and not be._static.begun
        assert be.wait_static(120.0) and be._static.requests() is not None
    finally:
        be.close()
