"""The history browser on a million inspections: paging, filters, review, exports, statistics."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="Qt cannot load here (PySide6 or its system libraries, e.g. libEGL, are missing)")
pytest.importorskip("pytestqt")

from sqlalchemy import Engine, text

from gui.history import HistoryModel, HistoryTab
from inspector.access.users import PermissionDenied
from inspector.storage.db import open_database
from inspector.storage.history import HistoryFilter, count_history
from tests.gui.conftest import PASSWORDS, FakeStation, make_control
from tests.gui.history_data import CAMERAS, CLASSES, HistoryDb, build_history_db

MILLION = 1_000_000


@pytest.fixture(scope="session")
def million_db(tmp_path_factory: pytest.TempPathFactory) -> HistoryDb:
    """One million inspections (8 % NG), built once per session in ~10 s."""
    return build_history_db(tmp_path_factory.mktemp("history") / "million.db", MILLION)


@pytest.fixture
def million(million_db: HistoryDb) -> Iterator[Engine]:
    eng = open_database(million_db.url)
    yield eng
    eng.dispose()


@pytest.fixture
def small_db(tmp_path: Path) -> HistoryDb:
    """3,000 inspections with real NG images, every 3rd NG row reviewed."""
    return build_history_db(tmp_path / "small.db", 3000, images=tmp_path / "images", review_every=3, ng_share=0.2)


@pytest.fixture
def small_tab(qtbot: Any, small_db: HistoryDb) -> Iterator[HistoryTab]:
    eng = open_database(small_db.url)
    control = make_control(FakeStation("line-cam1"), eng)
    tab = HistoryTab(control, CAMERAS, CLASSES, default_range=4)  # all time
    qtbot.addWidget(tab)
    tab.resize(1200, 700)
    tab.show()
    tab.apply_filter()
    yield tab
    eng.dispose()


def _keys(model: HistoryModel) -> list[tuple[float, int]]:
    return [(r.acquired_at, r.id) for r in model.rows]


def test_first_page_is_quick_and_pages_are_consistent(qtbot: Any, million: Engine) -> None:
    model = HistoryModel(million, page_size=200)
    t0 = time.perf_counter()
    model.set_filter(HistoryFilter())
    assert time.perf_counter() - t0 < 1.0
    assert model.rowCount() == 200 and model.canFetchMore()
    for _ in range(9):
        model.fetchMore()
    keys = _keys(model)
    assert len(keys) == 2000 and len(set(keys)) == 2000
    assert keys == sorted(keys, reverse=True)  # newest first, no overlap between pages
    with million.connect() as conn:
        expected = conn.execute(text("SELECT acquired_at, id FROM inspections ORDER BY acquired_at DESC, id DESC LIMIT 2000")).all()
    assert keys == [tuple(r) for r in expected]
    assert model.pages_fetched == 10 and model.last_fetch_s < 1.0


def test_the_view_fetches_more_when_scrolled(qtbot: Any, million: Engine) -> None:
    control = make_control(FakeStation("line-cam1"), million)
    tab = HistoryTab(control, CAMERAS, CLASSES, default_range=4)
    qtbot.addWidget(tab)
    tab.resize(1000, 600)
    tab.show()
    tab.apply_filter()
    assert tab.model.rowCount() == 200
    tab.table.scrollToBottom()
    qtbot.waitUntil(lambda: tab.model.rowCount() >= 400, timeout=3000)
    qtbot.waitUntil(lambda: "inspections match" in tab.count_label.text(), timeout=10_000)
    assert tab.count_label.text().startswith(f"{MILLION:,} inspections match")


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        (HistoryFilter(camera_id="line-cam3"), lambda r: r.camera_id == "line-cam3"),
        (HistoryFilter(verdict="NG"), lambda r: r.verdict == "NG"),
        (HistoryFilter(class_name="crack"), lambda r: "crack" in r.classes),
        (HistoryFilter(camera_id="line-cam2", verdict="NG", class_name="dent"), lambda r: r.camera_id == "line-cam2" and "dent" in r.classes),
        (HistoryFilter(reviewed=False), lambda r: r.review_mark is None),
    ],
)
def test_filters_narrow_the_rows(million: Engine, million_db: HistoryDb, flt: HistoryFilter, check: Any) -> None:
    model = HistoryModel(million, page_size=200)
    model.set_filter(flt)
    model.fetchMore()
    assert model.rowCount() == 400
    assert all(check(r) for r in model.rows)
    keys = _keys(model)
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 400
    n = count_history(million, flt)
    assert 0 < n <= MILLION and (n < MILLION or flt.reviewed is False)


def test_time_range_filter(million: Engine, million_db: HistoryDb) -> None:
    since, until = million_db.last_at - 3600, million_db.last_at - 1800
    model = HistoryModel(million, page_size=200)
    model.set_filter(HistoryFilter(since=since, until=until))
    while model.canFetchMore():
        model.fetchMore()
    assert model.rowCount() == count_history(million, model.filter) == pytest.approx(18_000, abs=2)
    assert all(since <= r.acquired_at < until for r in model.rows)


def test_selecting_a_row_shows_its_image(qtbot: Any, small_tab: HistoryTab) -> None:
    small_tab.control.login("eng", PASSWORDS["eng"])  # review buttons are for engineers
    small_tab.update_permissions()
    small_tab.filter_bar.verdict_combo.setCurrentIndex(1)  # NG only
    assert small_tab.model.rowCount() > 0 and all(r.verdict == "NG" for r in small_tab.model.rows)
    small_tab.select_row(0)
    qtbot.waitUntil(lambda: small_tab.current is not None, timeout=2000)
    assert small_tab.image_view.image is not None
    assert {b.accepted for b in small_tab.image_view.boxes} == {True, False}  # rejected boxes drawn too
    assert small_tab.review_buttons["confirmed"].isEnabled()
    small_tab.filter_bar.verdict_combo.setCurrentIndex(2)  # OK rows have no saved image
    small_tab.select_row(0)
    assert small_tab.image_view.image is None and small_tab.image_view.placeholder == "image not saved"


def test_review_needs_an_engineer_and_is_audited(qtbot: Any, small_tab: HistoryTab) -> None:
    control = small_tab.control
    small_tab.filter_bar.verdict_combo.setCurrentIndex(1)
    small_tab.filter_bar.review_combo.setCurrentIndex(1)  # not reviewed
    small_tab.select_row(0)
    row_id = small_tab.current.id
    control.login("op", PASSWORDS["op"])
    with qtbot.waitSignal(small_tab.message) as msg:
        assert not small_tab.review("false_call")
    assert "history.review" in msg.args[0]
    assert small_tab.model.rows[0].review_mark is None
    control.logout()
    control.login("eng", PASSWORDS["eng"])
    assert small_tab.review("false_call")
    assert small_tab.model.rows[0].id == row_id and small_tab.model.rows[0].review_mark == "false_call"
    entry = control.audit_entries(limit=1)[0]
    assert (entry.user, entry.action, entry.old, entry.new) == ("eng", "history.review", None, "false_call")
    assert f"inspection {row_id}" in entry.target


def test_csv_export_streams_every_filtered_row(qtbot: Any, small_tab: HistoryTab, tmp_path: Path) -> None:
    small_tab.control.login("eng", PASSWORDS["eng"])
    small_tab.filter_bar.camera_combo.setCurrentIndex(2)  # line-cam2
    expected = count_history(small_tab.engine, small_tab.model.filter)
    assert expected > small_tab.model.page_size  # more than the pages loaded so far
    out = tmp_path / "rows.csv"
    assert small_tab.export_csv_to(out) == expected
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected and {r["camera_id"] for r in rows} == {"line-cam2"}
    assert small_tab.control.audit_entries(limit=1)[0].action == "history.export_csv"


def test_csv_export_refused_for_anonymous(small_tab: HistoryTab, tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied):
        small_tab.export_csv_to(tmp_path / "rows.csv")
    assert not (tmp_path / "rows.csv").exists()


def test_yolo_export_of_reviewed_images(small_tab: HistoryTab, small_db: HistoryDb, tmp_path: Path) -> None:
    small_tab.control.login("eng", PASSWORDS["eng"])
    eng = small_tab.engine
    with eng.connect() as conn:
        marks = dict(conn.execute(text("SELECT review_mark, count(*) FROM inspections WHERE review_mark IS NOT NULL GROUP BY 1")).all())
    out = tmp_path / "dataset"
    assert small_tab.export_yolo_to(out) == marks["confirmed"] + marks["false_call"]
    labels = sorted((out / "labels").glob("*.txt"))
    assert len(labels) == len(list((out / "images").glob("*.png"))) == marks["confirmed"] + marks["false_call"]
    empty = [p for p in labels if p.read_text() == ""]
    assert len(empty) == marks["false_call"]  # false calls are negatives
    line = next(p for p in labels if p.read_text()).read_text().splitlines()[0].split()
    assert int(line[0]) in range(len(CLASSES)) and all(0.0 <= float(v) <= 1.0 for v in line[1:])
    assert "names:" in (out / "data.yaml").read_text() and "  2: crack" in (out / "data.yaml").read_text()
    assert len((out / "needs_labels.txt").read_text().splitlines()) == marks["missed"] + 1


def test_statistics_panel(qtbot: Any, small_tab: HistoryTab) -> None:
    small_tab.side.setCurrentIndex(1)
    qtbot.waitUntil(lambda: small_tab.yield_chart.hours != [], timeout=3000)
    assert sum(h.total for h in small_tab.yield_chart.hours) == 3000
    assert {c for c, _ in small_tab.class_chart.items} == set(CLASSES)
    assert {c for c, _ in small_tab.camera_chart.items} == set(CAMERAS)
    small_tab.grab()  # paints without error


@pytest.mark.parametrize("who", [None, "op"])
def test_review_and_export_buttons_are_off_for_watchers_and_operators(
    qtbot: Any, small_tab: HistoryTab, who: str | None
) -> None:
    """Issue 15.3: a button the user's role cannot use is disabled and names the role needed."""
    if who:
        small_tab.control.login(who, PASSWORDS[who])
        small_tab.update_permissions()
    small_tab.select_row(0)
    qtbot.waitUntil(lambda: small_tab.current is not None, timeout=2000)
    for mark, b in small_tab.review_buttons.items():
        assert not b.isEnabled(), mark
        assert "needs the engineer role" in b.toolTip()
    for b in (small_tab.csv_button, small_tab.yolo_button):
        assert not b.isEnabled() and "needs the engineer role" in b.toolTip()
    small_tab.control.logout()
    small_tab.control.login("eng", PASSWORDS["eng"])
    small_tab.update_permissions()
    assert all(b.isEnabled() and "needs" not in b.toolTip() for b in small_tab.review_buttons.values())
    assert small_tab.csv_button.isEnabled() and small_tab.yolo_button.isEnabled()
    small_tab.apply_filter()  # no row selected: nothing to review
    assert not any(b.isEnabled() for b in small_tab.review_buttons.values())


def _write_more(eng: Engine, n: int, at: float) -> None:
    """The station writes on: ``n`` copies of the newest rows, acquired from ``at`` on."""
    with eng.begin() as conn:
        cols = [r[1] for r in conn.execute(text("PRAGMA table_info(inspections)"))]
        made = {"id": "id + 1000000", "uid": "'new-' || uid", "acquired_at": f"{at!r} + id * 0.001"}
        sel = ", ".join(made.get(c, c) for c in cols)
        conn.execute(text(f"INSERT INTO inspections ({', '.join(cols)}) SELECT {sel} FROM inspections "
                          f"ORDER BY id DESC LIMIT {n}"))


def test_csv_export_has_exactly_the_rows_the_table_matched(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15.5: "last 24 h" is frozen when the query runs; the export says how many rows went where."""
    import gui.history_widgets

    db = build_history_db(tmp_path / "moving.db", 2000, end=time.time() - 5.0)
    eng = open_database(db.url)
    try:
        control = make_control(FakeStation("line-cam1"), eng)
        control.login("eng", PASSWORDS["eng"])
        tab = HistoryTab(control, CAMERAS, CLASSES, default_range=2)  # last 24 h
        qtbot.addWidget(tab)
        tab.apply_filter()
        qtbot.waitUntil(lambda: "match" in tab.count_label.text(), timeout=3000)
        matched = int(tab.count_label.text().split()[0].replace(",", ""))
        assert matched == 2000
        # before the user exports, the station writes 388 more rows and a minute passes
        _write_more(eng, 388, time.time())
        later = time.time() + 60.0
        monkeypatch.setattr(gui.history_widgets.time, "time", lambda: later)
        out = tmp_path / "rows.csv"
        with qtbot.waitSignal(tab.message) as msg:
            assert tab.export_csv_to(out) == matched
        with open(out, newline="") as f:
            assert len(list(csv.DictReader(f))) == matched
        assert "2,000 rows" in msg.args[0] and str(out) in msg.args[0]
        tab.refresh()  # a new query moves the range to now: the new rows appear
        qtbot.waitUntil(lambda: tab.count_label.text().startswith("2,388"), timeout=3000)
    finally:
        eng.dispose()
