"""The Parts view of the History tab: offered only with parts, newest first, filters, a part camera by camera."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from sqlalchemy import Engine

from gui.history import NO_PARTS_TEXT, HistoryTab
from gui.history_parts import NO_IMAGE_MISSING, NO_IMAGE_OK, PartsFilter, PartsModel, frames_of
from inspector.pipeline.results import InspectionResult, PartResult, PartTimes, Verdict
from inspector.storage.db import migrate, open_database
from inspector.storage.history import count_parts, query_parts
from inspector.storage.writer import DbWriter
from tests.gui.conftest import FakeStation, make_control
from tests.gui.history_data import CLASSES, build_history_db
from tests.inspector.factories import make_result

CAMS = ("line-cam1", "line-cam2", "line-cam3")
T0 = time.time() - 600.0


def _part(part_id: str, at: float, *, ng: str | None = None, missing: Sequence[str] = (), seq0: int = 0,
          late: Sequence[str] = ()) -> tuple[PartResult, list[InspectionResult]]:
    """A part of the 3 cameras as the tracker hands it over, and its late frames (for cameras in ``late``)."""
    def frame(i: int, cam: str, *, is_late: bool = False) -> InspectionResult:
        is_ng = cam == ng
        r = make_result(cam, seq0 + i, "NG" if is_ng else "OK", [("scratch", 0.8)] if is_ng else [],
                        acquired_at=at + 0.05 + 0.01 * i + (1.5 if is_late else 0.0))
        return dataclasses.replace(r, trigger_id=seq0, part_id=part_id, late=is_late)

    frames = tuple(frame(i, c) for i, c in enumerate(CAMS) if c not in missing)
    if missing:
        verdict, reason, deciding = Verdict.NG, f"incomplete: {', '.join(missing)} no image", missing[0]
    elif ng is not None:
        verdict, reason, deciding = Verdict.NG, f"{ng}: scratch>=0.40", ng
    else:
        verdict, reason, deciding = Verdict.OK, "no defect", None
    part = PartResult(
        part_id=part_id, line="line1", trigger_id=seq0, triggered_at=at, verdict=verdict, reason=reason,
        frames=frames, expected=CAMS, missing=tuple(missing), deciding_camera=deciding, budget_ms=400.0,
        deadline_met=not missing, times=PartTimes(120.0, 180.0, 401.0 if missing else 181.0), recipe="housing-a",
    )
    return part, [frame(CAMS.index(c), c, is_late=True) for c in late]


def write_parts_db(path: Path, images: Path, parts: Sequence[tuple[PartResult, list[InspectionResult]]]) -> str:
    """A migrated SQLite database with ``parts`` written through the engine's `DbWriter` (NG frames with images)."""
    url = f"sqlite:///{path}"
    eng = open_database(url)
    migrate(eng)
    images.mkdir(parents=True, exist_ok=True)

    def image_path_for(r: InspectionResult) -> str | None:
        if not r.ng:
            return None
        out = images / f"{r.camera_id}-{r.sequence}.png"
        img = np.full((96, 128, 3), 70, np.uint8)
        cv2.rectangle(img, (4, 4), (12, 12), (0, 200, 255), -1)
        cv2.imwrite(str(out), img)
        return str(out)

    writer = DbWriter(eng, image_path_for=image_path_for, spool_path=path.with_name("spool.jsonl"))
    for part, late in parts:
        for f in part.frames:
            assert writer.submit(f)
        assert writer.submit_part(part)
        for f in late:
            assert writer.submit(f)
    writer.start()
    writer.stop()
    assert writer.parts_written == len(parts) and writer.failed_batches == 0
    eng.dispose()
    return url


PARTS = [
    _part("P-1", T0, seq0=0),
    _part("P-2", T0 + 10, ng="line-cam2", seq0=10),
    _part("P-3", T0 + 20, missing=("line-cam3",), seq0=20, late=("line-cam3",)),
    _part("P-4", T0 + 30, seq0=30),
    _part("P-5", T0 + 40, missing=("line-cam1",), seq0=40),
]


@pytest.fixture
def parts_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_database(write_parts_db(tmp_path / "parts.db", tmp_path / "images", PARTS))
    yield eng
    eng.dispose()


def _tab(qtbot: Any, engine: Engine, **kwargs: Any) -> HistoryTab:
    tab = HistoryTab(make_control(FakeStation("line-cam1"), engine), CAMS, CLASSES, default_range=4, **kwargs)
    qtbot.addWidget(tab)
    tab.resize(1300, 760)
    tab.show()
    tab.apply_filter()
    return tab


def test_the_parts_switch_is_off_without_parts(qtbot: Any, tmp_path: Path) -> None:
    db = build_history_db(tmp_path / "free.db", 200)  # a free-running station: inspections, no parts
    eng = open_database(db.url)
    try:
        tab = _tab(qtbot, eng)
        assert count_parts(eng) == 0
        assert not tab.parts_button.isEnabled() and tab.inspections_button.isChecked()
        assert tab.parts_note.text() == NO_PARTS_TEXT and "free-running" in NO_PARTS_TEXT
        assert not tab.show_parts() and not tab.showing_parts
        assert tab.model.rowCount() == 200  # the inspections view as before
    finally:
        eng.dispose()


def test_parts_table_is_newest_first_and_filters_incomplete(qtbot: Any, parts_engine: Engine) -> None:
    tab = _tab(qtbot, parts_engine)
    assert tab.parts_button.isEnabled() and tab.parts_note.text() == ""
    assert tab.show_parts() and tab.showing_parts
    view = tab.parts_view
    assert [r.part_id for r in view.model.rows] == ["P-5", "P-4", "P-3", "P-2", "P-1"]
    qtbot.waitUntil(lambda: "parts match" in view.count_label.text(), timeout=3000)
    assert view.count_label.text().startswith("5 parts match")
    assert view.model.data(view.model.index(0, 4)).startswith("INCOMPLETE")
    assert view.model.data(view.model.index(0, 3)) == "401 / 400 ms LATE"
    assert view.model.data(view.model.index(1, 3)) == "181 / 400 ms"

    view.filter_bar.incomplete_box.setChecked(True)
    assert [r.part_id for r in view.model.rows] == ["P-5", "P-3"]
    assert all(r.incomplete and r.verdict == "NG" for r in view.model.rows)
    view.filter_bar.incomplete_box.setChecked(False)
    view.filter_bar.verdict_combo.setCurrentIndex(2)  # OK only
    assert [r.part_id for r in view.model.rows] == ["P-4", "P-1"]

    tab.show_parts(False)
    assert not tab.showing_parts and tab.stack.currentIndex() == 0


def test_parts_page_like_the_inspections(parts_engine: Engine) -> None:
    model = PartsModel(parts_engine, page_size=2)
    model.set_filter(PartsFilter())
    assert model.rowCount() == 2 and model.canFetchMore()
    while model.canFetchMore():
        model.fetchMore()
    assert [r.part_id for r in model.rows] == [r.part_id for r in query_parts(parts_engine)]
    assert len({r.id for r in model.rows}) == 5


def test_a_part_shows_every_expected_camera(qtbot: Any, parts_engine: Engine) -> None:
    tab = _tab(qtbot, parts_engine)
    tab.show_parts()
    view = tab.parts_view
    view.select_row([r.part_id for r in view.model.rows].index("P-3"))
    tiles = view.detail.tiles
    assert list(tiles) == list(CAMS)
    assert tiles["line-cam3"].missing and tiles["line-cam3"].placeholder().startswith(NO_IMAGE_MISSING)
    assert "missing at the deadline" in tiles["line-cam3"].text.text().lower()
    assert "LATE" in tiles["line-cam3"].text.text()  # its frame came after the verdict
    assert tiles["line-cam1"].placeholder() == NO_IMAGE_OK and "LATE" not in tiles["line-cam1"].text.text()
    assert "INCOMPLETE" in view.detail.head.text() and "line-cam3" in view.detail.head.text()

    view.select_row([r.part_id for r in view.model.rows].index("P-5"))  # missing, nothing came late
    tiles = view.detail.tiles
    assert list(tiles) == list(CAMS) and tiles["line-cam1"].placeholder() == NO_IMAGE_MISSING
    assert tiles["line-cam1"].frame is None

    view.select_row([r.part_id for r in view.model.rows].index("P-2"))  # NG: its image is archived
    tiles = view.detail.tiles
    assert tiles["line-cam2"].image.image is not None and tiles["line-cam2"].placeholder() == ""
    assert tiles["line-cam2"].image.boxes and "scratch" in tiles["line-cam2"].text.text()
    assert tiles["line-cam1"].placeholder() == NO_IMAGE_OK
    tab.grab()  # paints without error


def test_an_older_part_with_a_repeated_id_shows_its_own_frames(tmp_path: Path) -> None:
    # the station's own ids start again after a restart: "7" now and "7" ten minutes ago
    old, new = _part("7", T0 - 600, ng="line-cam1", seq0=1), _part("7", T0, seq0=2, missing=("line-cam2",))
    eng = open_database(write_parts_db(tmp_path / "again.db", tmp_path / "img", [old, new]))
    try:
        newest, older = query_parts(eng)
        assert [f.verdict for f in frames_of(eng, older).frames] == ["NG", "OK", "OK"]
        assert [f.camera_id for f in frames_of(eng, newest).frames] == ["line-cam1", "line-cam3"]
    finally:
        eng.dispose()
