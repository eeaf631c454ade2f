"""The history's image view shows the heat map of an NG anomaly result in the station's own process (the
attached window's history: tests/gui/test_teach_attached.py): a real station with an archive, cam-a scored by
the shipped plate anomaly model with a threshold so low that every frame is NG, its NG images archived with
their heat maps, the GUI's main window reading them back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.app import MainWindow
from gui.bridge import EngineBridge
from inspector.archive import heat_map_path
from inspector.config import parse_config
from inspector.station import Station
from tests.gui.conftest import make_control

STATION = """
name = "heat-history"
[scheduler]
max_wait_ms = 2
[[cameras]]
id = "cam-a"
kind = "simulated"
fps = 5
width = 320
height = 320
bank_size = 8
[cameras.anomaly]
model = "anomaly-plate-320"
threshold = 0.3
"""


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Station]:
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    st = Station(parse_config(STATION), db_url=f"sqlite:///{tmp_path / 'station.db'}", archive=True)
    st.start()
    yield st
    st.stop()


def test_the_history_shows_the_heat_map_of_an_ng_anomaly_result_in_process(qtbot: Any, station: Station) -> None:
    control = make_control(station, station.engine)
    win = MainWindow(station, control, EngineBridge(station, control), stop_station_on_close=False)
    qtbot.addWidget(win)
    win.show()
    history = win.history
    assert history is not None

    def ng_row_with_heat_map() -> int | None:
        history.refresh()
        for i, row in enumerate(history.model.rows):
            if row.verdict == "NG" and row.image_path and heat_map_path(row.image_path).is_file():
                return i
        return None

    qtbot.waitUntil(lambda: ng_row_with_heat_map() is not None, timeout=90_000)
    i = ng_row_with_heat_map()
    assert i is not None
    row = history.model.rows[i]
    assert "anomaly" in row.rule  # the anomaly model's rule decided it
    history.select_row(i)
    view = history.image_view
    assert view.image is not None and view.heat.available and history.heat_check.isEnabled()
    archived = cv2.imread(str(heat_map_path(row.image_path)), cv2.IMREAD_GRAYSCALE)  # type: ignore[arg-type]
    assert view.heat.heat is not None and np.array_equal(view.heat.heat, archived) and archived.shape == (160, 160)
    # drawn over the image: the view's pixels differ with the heat map on and off
    view.repaint()
    on = view.grab().toImage()
    history.heat_check.setChecked(False)
    view.repaint()
    off = view.grab().toImage()
    assert on != off
    win.close()
