"""Collect mode (issue 29.1): the next N parts' images of chosen cameras into a dataset folder, as a frame sink
on the station's fan-out, while inspection goes on."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from camera.frame_pool import FramePool
from inspector.config import parse_config
from inspector.pipeline.results import InspectionResult
from inspector.pipeline.sinks import FrameSink
from inspector.quality.collect import DatasetCollector
from inspector.quality.dataset_import import import_dataset
from inspector.station import Station
from tests.inspector.factories import make_result, wait_until

CLASSES = ("scratch", "dent", "crack", "contamination")
SMALL_STATION = """
name = "collect-test"
[model]
threads = 1
[scheduler]
max_wait_ms = 2
[[cameras]]
id = "cam-a"
kind = "simulated"
fps = 20
width = 160
height = 120
bank_size = 4
[[cameras]]
id = "cam-b"
kind = "simulated"
fps = 20
width = 160
height = 120
mono = true
bank_size = 4
"""


def _frames(camera: str, seqs: range, part: str | None = None, mono: bool = False) -> list[InspectionResult]:
    """Frames of one camera, each from a pool of its own (so its refcount ends at the pool's one reference)."""
    shape = (24, 32) if mono else (24, 32, 3)
    out = []
    for s in seqs:
        r = make_result(camera, s, "OK", with_frame=True, pool=FramePool(camera, 3, shape), shape=shape)
        if part is not None:
            r = replace(r, part_id=f"{part}{s}")
        out.append(r)
    return out


def _hand(sink: DatasetCollector, results: list[InspectionResult]) -> None:
    """What `SinkFanOut.frames` does with frames the factory already retained once for a sink."""
    for r in results:
        if sink.wants(r):
            sink.submit(r)
        elif r.frame is not None:
            r.frame.release()


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "parts.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_free_running_frames_of_the_chosen_camera_each_a_part(tmp_path: Path) -> None:
    out = tmp_path / "collected"
    sink = DatasetCollector(out, ["cam-b"], 3, classes=CLASSES)
    assert isinstance(sink, FrameSink)
    sink.start()
    a, b = _frames("cam-a", range(1, 6)), _frames("cam-b", range(1, 6), mono=True)
    _hand(sink, [x for pair in zip(a, b) for x in pair])
    assert sink.wait(5.0)
    sink.stop()
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["cam-b-000001__cam-b.png", "cam-b-000002__cam-b.png", "cam-b-000003__cam-b.png"]
    assert sorted(p.read_text() for p in (out / "labels").iterdir()) == ["", "", ""]  # nothing labelled yet
    img = cv2.imread(str(out / "images" / names[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (24, 32) and (img == b[0].frame.image).all()  # Mono8 stays grey, pixels as taken
    assert _rows(out) == [{"image": f"images/{n}", "part": n.split("__")[0]} for n in names]
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    assert all(r.frame is not None and r.frame.refcount == 1 for r in a + b)  # every frame went back
    s = sink.summary()
    assert (s.parts, s.images, s.incomplete, s.skipped, s.complete) == (3, 3, (), 0, True)


def test_a_triggered_part_is_collected_with_each_chosen_camera(tmp_path: Path) -> None:
    out = tmp_path / "collected"
    sink = DatasetCollector(out, ["cam1", "cam2"], 2)
    sink.start()
    c1, c2, c3 = _frames("cam1", range(1, 4), "P"), _frames("cam2", range(1, 4), "P"), _frames("cam3", range(1, 4), "P")
    _hand(sink, [c1[0], c3[0], c1[1], c2[0]])  # part P2 has only cam1 so far
    assert not sink.done.is_set()
    _hand(sink, [c1[2], c2[2], c2[1]])  # P3 is a third part: not taken; P2's cam2 frame completes it
    assert sink.wait(5.0)
    sink.stop()
    assert sorted(p.name for p in (out / "images").iterdir()) == ["P1__cam1.png", "P1__cam2.png", "P2__cam1.png",
                                                                  "P2__cam2.png"]
    assert {r["part"] for r in _rows(out)} == {"P1", "P2"}
    _hand(sink, c3[1:])
    assert all(r.frame is not None and r.frame.refcount == 1 for r in c1 + c2 + c3)


def test_a_full_queue_skips_and_counts_never_waits(tmp_path: Path) -> None:
    sink = DatasetCollector(tmp_path / "collected", ["cam1"], 3, maxsize=1)  # not started: nothing drains it
    frames = _frames("cam1", range(1, 4))
    _hand(sink, frames)
    assert sink.skipped_full == 2 and sink.done.is_set() is False
    sink.start()
    sink.stop()
    s = sink.summary()
    assert (s.images, s.skipped, len(s.incomplete), s.complete) == (1, 2, 2, False)
    assert all(r.frame is not None and r.frame.refcount == 1 for r in frames)


def test_a_collection_never_mixes_into_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(ValueError, match="is not an empty folder"):
        DatasetCollector(tmp_path / "ds", ["cam1"], 1)
    with pytest.raises(ValueError, match="--parts 0"):
        DatasetCollector(tmp_path / "new", ["cam1"], 0)


def test_collected_images_import_as_a_dataset_with_their_parts(tmp_path: Path) -> None:
    out = tmp_path / "collected"
    sink = DatasetCollector(out, ["cam1", "cam2"], 4, classes=CLASSES)
    sink.start()
    _hand(sink, _frames("cam1", range(1, 5), "P") + _frames("cam2", range(1, 5), "P"))
    assert sink.wait(5.0)
    sink.stop()
    (out / "labels" / "P1__cam2.txt").write_text("2 0.5 0.5 0.25 0.25\n")  # someone labelled a crack
    s = import_dataset("yolo", out, tmp_path / "imported", CLASSES, split=(0.5, 0.25, 0.25), seed=0)
    assert sum(s.images.values()) == 8 and sum(s.parts.values()) == 4 and s.boxes_per_class["crack"] == 1
    with open(tmp_path / "imported" / "parts.csv", newline="") as f:
        by_part: dict[str, set[str]] = {}
        for row in csv.DictReader(f):
            by_part.setdefault(row["part"], set()).add(row["image"].split("/")[1])
    assert all(len(splits) == 1 for splits in by_part.values())  # a part's two images stay in one split


def test_a_small_simulated_station_collects_without_stopping_inspection(tmp_path: Path) -> None:
    st = Station(parse_config(SMALL_STATION, "collect-test"), db_url="none", archive=False)
    sink = DatasetCollector(tmp_path / "collected", ["cam-b"], 4, classes=st.card.classes)
    st.fan_out.add_frame_sink(sink)
    try:
        st.start()
        assert sink.wait(60.0)
        inspected = _inspected(st)
        wait_until(lambda: _inspected(st) >= inspected + 4, 30.0, "more inspections after the collection")
    finally:
        st.stop()
    names = sorted(p.name for p in (tmp_path / "collected" / "images").iterdir())
    assert len(names) == 4 and all(n.endswith("__cam-b.png") for n in names)
    img = cv2.imread(str(tmp_path / "collected" / "images" / names[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (120, 160)  # the mono camera's frame, full size


def _inspected(st: Station) -> int:
    return sum(st.stats.camera(c).inspected for c in ("cam-a", "cam-b"))


def test_the_collect_command(tmp_path: Path) -> None:
    from inspector.cli import app

    cfg = tmp_path / "station.toml"
    cfg.write_text(SMALL_STATION)
    runner = CliRunner()
    bad = runner.invoke(app, ["dataset", "collect", "--config", str(cfg), "--cameras", "cam-a,nope", "--parts", "2",
                              "--out", str(tmp_path / "x"), "--db", "none"])
    assert bad.exit_code == 2 and "--cameras: no camera 'nope' in station collect-test (cam-a, cam-b)" in bad.output
    assert not (tmp_path / "x").exists()
    res = runner.invoke(app, ["dataset", "collect", "--config", str(cfg), "--cameras", "cam-a", "--parts", "3",
                              "--out", str(tmp_path / "c"), "--db", "none", "--no-archive", "--timeout", "60"])
    assert res.exit_code == 0, res.output
    assert "collected 3 images of 3 parts" in res.output
    assert len(list((tmp_path / "c" / "images").glob("*__cam-a.png"))) == 3
    assert len(_rows(tmp_path / "c")) == 3
