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
