"""``inspector bench --anomaly``: the anomaly model's rows beside the detector's (issue 28.8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.cli.root import app


@pytest.fixture(autouse=True)
def _backbone_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "anomaly-cache"))


def test_bench_puts_the_anomaly_model_beside_the_detector(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    out = tmp_path / "b.json"
    r = CliRunner().invoke(app, ["bench", "--cameras", "1", "--seconds", "1", "--no-db", "--no-ultralytics",
                                 "--anomaly", "anomaly-plate-320", "--anomaly-teach", "12", "--json", str(out)])
    assert r.exit_code == 0, r.output
    a = json.loads(out.read_text())["anomaly"]
    m = a["ms_per_frame"]
    assert m["batch"] == 8 and m["anomaly_model"] == "anomaly-plate-320"
    assert 0 < m["detector_ms"] and 0 < m["anomaly_ms"] and 0 < m["both_ms"]
    for key in ("detector", "both"):  # the demo station, 8 cameras x 5 fps
        s = a["station"][key]
        assert a["station"]["cameras"] == 8 and s["busy_fraction"] > 0 and s["dropped"] >= 0 and s["fps"] > 0
    assert a["teach"]["images"] == 12 and a["teach"]["seconds"] > 0
    assert "ms per frame at batch 8: detector" in r.output and "detector + anomaly" in r.output
    assert "teach: 12 good 320x320 plate images" in r.output


def test_bench_without_the_anomaly_model_has_no_anomaly_rows() -> None:
    from inspector.bench.anomaly import format_lines

    assert format_lines(None) == []


def test_an_unknown_anomaly_model_is_one_line_before_anything_is_measured() -> None:
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["bench", "--cameras", "1", "--anomaly", "no-such-model"])
    assert r.exit_code == 2 and "no-such-model" in r.output and "Traceback" not in r.output


def test_the_anomaly_model_is_timed_on_the_products_own_images_where_given(tmp_path: Path) -> None:
    """A part's aligned model costs what its own parts cost it (the pose found, the frame warped): the demo line's
    frames are not the product, so the anomaly figures can take a folder of the product's images instead."""
    import cv2

    from camera.products import render_product
    from inspector.bench.anomaly import format_lines, ms_per_frame

    for seed in range(3):  # fewer than a batch: the batch repeats them
        cv2.imwrite(str(tmp_path / f"{seed}.png"), render_product("plate", seed, 320, 320).image)
    m = ms_per_frame("defect-yolo11p-320", "openvino", "anomaly-plate-320", threads=0, seconds=0.5,
                     streams="auto", precision="auto", in_flight=2, images=tmp_path)
    assert m["anomaly_images"] == {"folder": str(tmp_path), "images": 3}
    assert 0 < m["anomaly_ms"] and 0 < m["both_ms"]
    res = {"ms_per_frame": m, "station": {"station": "demo", "cameras": 8, "fps_per_camera": 5.0, **{
        k: {"fps": 40.0, "busy_fraction": 0.5, "dropped": 0, "p99_ms": 50.0} for k in ("detector", "both")}},
        "teach": None, "load_before": [1.0], "load_after": [1.0]}
    assert f"the anomaly model on 3 images of {tmp_path}" in "\n".join(format_lines(res))


def test_a_folder_without_images_for_the_anomaly_figures_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["bench", "--cameras", "1", "--anomaly", "anomaly-plate-320",
                                 "--anomaly-images", str(tmp_path)])
    assert r.exit_code == 2 and str(tmp_path) in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["bench", "--cameras", "1", "--anomaly-images", str(tmp_path)])
    assert r.exit_code == 2 and "--anomaly-images" in r.output and "--anomaly" in r.output
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a truncated image among the 8 read
    r = CliRunner().invoke(app, ["bench", "--cameras", "1", "--anomaly", "anomaly-plate-320",
                                 "--anomaly-images", str(tmp_path)])
    assert r.exit_code == 2 and "cut.png" in r.output and "Traceback" not in r.output
