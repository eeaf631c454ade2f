"""The Teach dialog's status line when cameras are taught in several rounds: it names what the save will take.

The models themselves are not taught here (tests/gui/test_teach_dialog.py does that end to end): the session's
`teach` is replaced by one that answers at once with a report per camera, as the real one does.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from gui.teach_dialog import TeachDialog
from inspector.anomaly.teach import TeachReport
from tests.gui.conftest import PASSWORDS, make_control


def _report(folder: Path, scores: float) -> TeachReport:
    good = np.full(20, scores, np.float32)
    return TeachReport(folder=folder, good_images=20, bank_images=20, held_out=20, bad_images=0, bank_rows=100,
                       raw_threshold=1.0, good_scores=good, bad_scores=np.zeros(0, np.float32), seconds=2.0)


@pytest.fixture
def dialog(qtbot: Any, engine: Any, tmp_path: Path) -> TeachDialog:
    station = SimpleNamespace(cameras={"cam-a": None, "cam-b": None, "cam-c": None})
    control = make_control(station, engine)
    control.login("eng", PASSWORDS["eng"])
    dlg = TeachDialog(station, control, SimpleNamespace(line=None), root=tmp_path)
    qtbot.addWidget(dlg)
    scores = {"cam-a": 0.3, "cam-b": 0.4, "cam-c": 0.5}

    def teach(sources: dict[str, Path], **_: Any) -> dict[str, TeachReport]:
        return {cid: _report(tmp_path / cid, scores[cid]) for cid in sources}

    dlg.session.teach = teach  # type: ignore[method-assign]
    dlg.from_folder.setChecked(True)
    dlg.good_dir.setText(str(tmp_path))
    return dlg


def _teach(qtbot: Any, dlg: TeachDialog, cameras: list[str]) -> str:
    dlg.choose(cameras)
    assert dlg.start_teaching()
    qtbot.waitUntil(lambda: not dlg.busy, timeout=10_000)
    return dlg.status.text()


def test_after_a_second_round_the_status_names_every_camera_the_save_takes(qtbot: Any, dialog: TeachDialog) -> None:
    first = _teach(qtbot, dialog, ["cam-a", "cam-b"])
    assert "cam-a" in first and "cam-b" in first and "camera(s)" not in first
    second = _teach(qtbot, dialog, ["cam-c"])
    # the last round taught cam-c; the save takes all three (the list says "taught" beside each)
    assert second.startswith("taught cam-c in 2 s"), second
    assert "3 cameras taught (cam-a, cam-b, cam-c)" in second and "save" in second, second
    # the histogram shows the camera just taught, not the first one of the window
    assert dialog.shown_camera.currentText() == "cam-c"
    assert float(dialog.histogram.good[0]) == pytest.approx(0.5)


def test_a_camera_whose_good_images_had_no_part_pose_says_so_beside_its_rates(
        qtbot: Any, dialog: TeachDialog, tmp_path: Path) -> None:
    from dataclasses import replace

    def teach(sources: dict[str, Path], **_: Any) -> dict[str, TeachReport]:
        lost = {"cam-a": 2, "cam-b": 0}
        return {cid: replace(_report(tmp_path / cid, 0.3), alignment={"good_without_pose": lost[cid]})
                for cid in sources}

    dialog.session.teach = teach  # type: ignore[method-assign]
    _teach(qtbot, dialog, ["cam-a", "cam-b"])
    dialog.shown_camera.setCurrentText("cam-a")
    assert "2 good without a part pose" in dialog.rates.text(), dialog.rates.text()
    dialog.shown_camera.setCurrentText("cam-b")
    assert "pose" not in dialog.rates.text(), dialog.rates.text()
