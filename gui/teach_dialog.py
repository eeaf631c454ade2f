"""The **Teach** dialog (engineer role): a new product from good parts only, from the station itself.

Pick the cameras; collect N good parts from the running line (or pick a folder of good images, and
optionally one of NG images); teach one anomaly model per camera off the GUI thread, with a progress bar;
look at the histogram of the held-out good scores (and the NG ones) with the threshold on it; move the
threshold; save the product recipe's next version (audited) and switch to it. The work itself is
`gui.teach_session.TeachSession`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.roles import gate
from gui.teach_session import DEFAULT_GOOD, TeachSession, TeachTarget, enough, teach_root
from inspector.access.control import ControlError, GateRefused, StationControl
from inspector.anomaly.teach import MIN_GOOD, TeachReport

log = logging.getLogger(__name__)

GOOD_COLOUR = QColor("#2ea043")
NG_COLOUR = QColor("#f85149")
LINE_COLOUR = QColor("#f0c000")


def rates(good: np.ndarray, bad: np.ndarray, threshold: float) -> tuple[int, int]:
    """(held-out good scores at or above ``threshold``: false rejects, NG scores below it: escapes)."""
    return int(np.sum(good >= threshold)), int(np.sum(bad < threshold))


class ScoreHistogram(QWidget):
    """Histogram of good (green) and NG (red) anomaly scores with the threshold as a vertical line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.good = np.empty(0, np.float32)
        self.bad = np.empty(0, np.float32)
        self.threshold = 1.0
        self.setMinimumSize(420, 220)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(560, 260)

    def set_scores(self, good: np.ndarray, bad: np.ndarray, threshold: float) -> None:
        self.good, self.bad, self.threshold = np.asarray(good, np.float32), np.asarray(bad, np.float32), threshold
        self.update()

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        self.update()

    def edges(self) -> np.ndarray:
        """Bin edges: 0 .. a little past the largest score (at least 2x the model's threshold), 40 bins."""
        top = max(2.0, self.threshold * 1.2, *(float(a.max()) * 1.05 for a in (self.good, self.bad) if len(a)))
        return np.linspace(0.0, top, 41)

    def paintEvent(self, _e: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect())
        p.fillRect(r, QColor("#161b22"))
        plot = r.adjusted(44, 26, -14, -34)
        p.setPen(QColor("#8b949e"))
        if not len(self.good) and not len(self.bad):
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "teach a model to see its scores")
            p.end()
            return
        edges = self.edges()
        g, _ = np.histogram(self.good, edges)
        b, _ = np.histogram(self.bad, edges)
        peak = max(1, int(g.max(initial=0)), int(b.max(initial=0)))
        bw = plot.width() / (len(edges) - 1)
        for counts, colour, dx in ((g, GOOD_COLOUR, 0.0), (b, NG_COLOUR, 0.5)):
            fill = QColor(colour)
            fill.setAlpha(200)
            for i, c in enumerate(counts):
                if c:
                    h = plot.height() * c / peak
                    p.fillRect(QRectF(plot.left() + (i + dx) * bw, plot.bottom() - h, bw * 0.5, h), fill)
        # axes, ticks
        p.setPen(QColor("#8b949e"))
        p.drawLine(plot.bottomLeft(), plot.bottomRight())
        p.drawLine(plot.bottomLeft(), plot.topLeft())
        for v in np.arange(0.0, edges[-1] + 1e-9, 0.5 if edges[-1] <= 4 else 1.0):
            x = plot.left() + plot.width() * v / edges[-1]
            p.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 4))
            p.drawText(QRectF(x - 20, plot.bottom() + 5, 40, 14), Qt.AlignmentFlag.AlignCenter, f"{v:g}")
        p.drawText(QRectF(plot.left(), r.bottom() - 16, plot.width(), 14), Qt.AlignmentFlag.AlignCenter,
                   "anomaly score (1.0 = the taught threshold)")
        p.drawText(QRectF(2, plot.top() - 6, 40, 14), Qt.AlignmentFlag.AlignRight, str(peak))
        p.drawText(QRectF(2, plot.bottom() - 8, 40, 14), Qt.AlignmentFlag.AlignRight, "0")
        # the threshold
        x = plot.left() + plot.width() * min(1.0, self.threshold / edges[-1])
        p.setPen(QPen(LINE_COLOUR, 2.0, Qt.PenStyle.DashLine))
        p.drawLine(QPointF(x, plot.top() - 4), QPointF(x, plot.bottom()))
        p.setPen(LINE_COLOUR)
        p.drawText(QRectF(x + 4, plot.top() - 22, 160, 16), Qt.AlignmentFlag.AlignLeft,
                   f"threshold {self.threshold:.2f}")
        # legend
        fr, esc = rates(self.good, self.bad, self.threshold)
        legend = [(GOOD_COLOUR, f"good (held out) {len(self.good)} · {fr} above")]
        if len(self.bad):
            legend.append((NG_COLOUR, f"NG {len(self.bad)} · {esc} below"))
        y = plot.top()
        for colour, text in legend:
            p.fillRect(QRectF(plot.right() - 214, y + 3, 10, 10), colour)
            p.setPen(QColor("#e6edf3"))
            p.drawText(QRectF(plot.right() - 200, y, 200, 16), Qt.AlignmentFlag.AlignLeft, text)
            y += 18
        p.end()


class _Relay(QObject):
    """Carries the teaching thread's news to the GUI thread (queued signals)."""

    progress = Signal(str, int, int)
    finished = Signal(object)  # dict[str, TeachReport]
    failed = Signal(str)


class TeachDialog(QDialog):
    """Teach anomaly models for the chosen cameras and save them into the product recipe (see the module).

    Args:
        station: The running station.
        control: Its control API (engineer role to teach and save).
        bridge: The engine bridge (the newest inspected frame of each camera).
        root: Where collections and models go (default: the recipe folder).
        size: Model input side in pixels (320, as the detector's).
    """

    taught = Signal()
    saved = Signal(str)

    def __init__(self, station: Any, control: StationControl, bridge: Any, *, root: Path | None = None,
                 size: int = 320, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Teach a product from good parts")
        self.station, self.control, self.bridge, self.input_side = station, control, bridge, size
        try:
            target = TeachTarget.of(control)
        except ControlError as exc:  # a service that does not answer it: teach, but nothing to save to
            log.warning("teach: no recipe to save to: %s", exc)
            target = None
        self.session = TeachSession(station, root or teach_root(target), target)
        self.reports: dict[str, TeachReport] = {}
        self.thresholds: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.finished.connect(self._on_taught)
        self._relay.failed.connect(self._on_failed)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._collect_tick)

        self.cameras = QListWidget()
        for cid in station.cameras:
            it = QListWidgetItem(cid)
            it.setData(Qt.ItemDataRole.UserRole, cid)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(Qt.CheckState.Unchecked)
            self.cameras.addItem(it)
        self.cameras.setMaximumWidth(230)

        self.from_line = QRadioButton("Good parts from the running line")
        self.from_folder = QRadioButton("Good images from a folder")
        self.from_line.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.from_line)
        group.addButton(self.from_folder)
        self.count = QSpinBox()
        self.count.setRange(MIN_GOOD, 5000)
        self.count.setValue(DEFAULT_GOOD)
        self.count.setSuffix(" per camera")
        self.only_ok = QCheckBox("skip parts the station calls NG")
        self.only_ok.setChecked(True)
        self.good_dir = QLineEdit()
        self.good_dir.setPlaceholderText("a folder of good images (one camera), searched recursively")
        self.bad_dir = QLineEdit()
        self.bad_dir.setPlaceholderText("optional: a folder of NG images (refines the threshold)")
        src = QFormLayout()
        src.addRow(self.from_line)
        src.addRow("collect", self.count)
        src.addRow("", self.only_ok)
        src.addRow(self.from_folder)
        src.addRow("good", self._with_browse(self.good_dir))
        src.addRow("NG", self._with_browse(self.bad_dir))
        source = QGroupBox("Good parts")
        source.setLayout(src)

        self.collect_button = QPushButton("Collect")
        self.collect_button.clicked.connect(self.start_collecting)
        self.teach_button = QPushButton("Teach")
        self.teach_button.clicked.connect(self.start_teaching)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        first = "pick the cameras, then collect good parts or pick a folder"
        if target is not None and root is None and self.session.root != target.folder:
            # the recipes folder is the service's and not writable here: the service must read the models here
            first += (f" (models go to {self.session.root}: the recipes folder {target.folder} is not writable "
                      "here, and the station must be able to read them)")
        self.status = QLabel(first)
        self.status.setWordWrap(True)
        actions = QHBoxLayout()
        actions.addWidget(self.collect_button)
        actions.addWidget(self.teach_button)
        actions.addWidget(self.progress, 1)

        self.histogram = ScoreHistogram()
        self.shown_camera = QComboBox()
        self.shown_camera.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.shown_camera.setMinimumContentsLength(12)
        self.shown_camera.currentTextChanged.connect(self._show_camera)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.05, 20.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setValue(1.0)
        self.threshold.valueChanged.connect(self._on_threshold)
        self.rates = QLabel("")
        self.detector = QCheckBox("the detector decides too (uncheck for a product it was not trained on)")
        self.detector.setChecked(True)
        tune = QHBoxLayout()
        tune.addWidget(QLabel("camera"))
        tune.addWidget(self.shown_camera)
        tune.addSpacing(12)
        tune.addWidget(QLabel("threshold"))
        tune.addWidget(self.threshold)
        tune.addWidget(self.rates, 1)

        self.save_button = QPushButton("Save as new recipe version and switch")
        self.save_button.clicked.connect(self.save)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.detector, 1)
        bottom.addWidget(self.save_button)
        bottom.addWidget(self.close_button)

        right = QVBoxLayout()
        right.addWidget(source)
        right.addLayout(actions)
        right.addWidget(self.status)
        right.addWidget(self.histogram, 1)
        right.addLayout(tune)
        left = QVBoxLayout()
        left.addWidget(QLabel("Cameras"))
        left.addWidget(self.cameras, 1)
        top = QHBoxLayout()
        top.addLayout(left)
        top.addLayout(right, 1)
        root_layout = QVBoxLayout(self)
        root_layout.addLayout(top, 1)
        root_layout.addLayout(bottom)
        self.resize(900, 640)
        self.update_permissions()

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        b = QPushButton("Browse…")
        b.clicked.connect(lambda: edit.setText(QFileDialog.getExistingDirectory(self, "Folder of images") or edit.text()))
        row.addWidget(b)
        return w

    # ------------------------------------------------------------------ state
    def chosen(self) -> list[str]:
        """The cameras ticked."""
        return [str(self.cameras.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.cameras.count())
                if self.cameras.item(i).checkState() == Qt.CheckState.Checked]

    def choose(self, cameras: list[str]) -> None:
        for i in range(self.cameras.count()):
            it = self.cameras.item(i)
            it.setCheckState(Qt.CheckState.Checked if it.data(Qt.ItemDataRole.UserRole) in cameras
                             else Qt.CheckState.Unchecked)

    @property
    def busy(self) -> bool:
        return self._timer.isActive() or self._thread is not None  # until its result is shown (_on_taught)

    def update_permissions(self) -> None:
        """Teach and save need the engineer role (``recipe.save``); saving also needs recipes and a model."""
        can_save = self.session.target is not None and bool(self.reports) and not self.busy
        tip = "" if self.session.target is not None else "this station has no product recipes ([recipes] dir)"
        gate(self.teach_button, self.control, "recipe.save", usable=not self.busy)
        gate(self.collect_button, self.control, "recipe.save", usable=not self.busy)
        gate(self.save_button, self.control, "recipe.save", usable=can_save, tip=tip)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    # ------------------------------------------------------------------ collect
    def start_collecting(self) -> bool:
        """Collect good parts of the ticked cameras from the running line (the dialog's timer)."""
        cams = self.chosen()
        if not cams:
            self._say("tick at least one camera")
            return False
        self.from_line.setChecked(True)
        self.progress.setRange(0, self.count.value() * len(cams))
        self.progress.setValue(sum(self.session.collected.get(c, 0) for c in cams))
        self.bridge.lossless_images(True)  # attached: PNG from the service, not its JPEG (no-op in process)
        self._timer.start()
        self._say(f"collecting {self.count.value()} good parts per camera: run good parts past the cameras")
        self.update_permissions()
        return True

    def _collect_tick(self) -> None:
        cams, want = self.chosen(), self.count.value()
        try:
            self.session.collect(self.bridge, cams, want, only_ok=self.only_ok.isChecked())
        except OSError as exc:
            self._stop_collecting()
            self._say(f"collecting stopped: {exc}")
            self.update_permissions()
            return
        have = sum(min(want, self.session.collected.get(c, 0)) for c in cams)
        self.progress.setValue(have)
        self._show_counts()
        if have >= want * len(cams):
            self._stop_collecting()
            self._say(f"collected {want} good parts per camera: teach now")
            self.update_permissions()

    def _stop_collecting(self) -> None:
        if self._timer.isActive():
            self._timer.stop()
            self.bridge.lossless_images(False)

    def _show_counts(self) -> None:
        """Each camera's line: its id, the good parts collected and whether a model was taught."""
        for i in range(self.cameras.count()):
            it = self.cameras.item(i)
            cid = str(it.data(Qt.ItemDataRole.UserRole))
            n = self.session.collected.get(cid, 0)
            it.setText(cid + (f"  ·  {n} good" if n else "") + ("  ·  taught" if cid in self.reports else ""))

    # ------------------------------------------------------------------ teach
    def sources(self) -> dict[str, Path]:
        """Camera -> its folder of good images (the collection, or the folder picked for every ticked camera)."""
        cams = self.chosen()
        if self.from_folder.isChecked():
            folder = Path(self.good_dir.text().strip()).expanduser()
            return {c: folder for c in cams}
        return {c: self.session.good_folder(c) for c in cams}

    def start_teaching(self) -> bool:
        """Teach a model per ticked camera in a thread of its own; the histogram shows when done."""
        if self.busy:
            return False
        cams = self.chosen()
        if not cams:
            self._say("tick at least one camera")
            return False
        if self.from_line.isChecked() and not enough(self.session.collected, cams):
            self._say(f"collect at least {MIN_GOOD} good parts per camera first")
            return False
        if self.from_folder.isChecked() and not self.good_dir.text().strip():
            self._say("pick a folder of good images")
            return False
        bad = Path(self.bad_dir.text().strip()).expanduser() if self.bad_dir.text().strip() else None
        sources, relay, size = self.sources(), self._relay, self.input_side

        def work() -> None:
            try:
                relay.finished.emit(self.session.teach(sources, bad=bad, size=size, progress=relay.progress.emit))
            except Exception as exc:  # noqa: BLE001 - any failure is shown in the dialog, one line
                log.warning("teach failed: %s", exc)
                relay.failed.emit(str(exc))

        self._thread = threading.Thread(target=work, name="teach", daemon=True)
        self._say("teaching (features, memory bank, threshold) …")
        self.progress.setRange(0, 0)
        self._thread.start()
        self.update_permissions()
        return True

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self._say(f"teaching {stage}: {done} of {total}")

    def _on_failed(self, text: str) -> None:
        self._thread = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._say(f"teaching failed: {text}")
        self.update_permissions()

    def _on_taught(self, reports: dict[str, TeachReport]) -> None:
        self._thread = None
        self.reports.update(reports)
        for cid in reports:
            self.thresholds.setdefault(cid, 1.0)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        secs = sum(r.seconds for r in reports.values())
        # this round, and every camera the save takes (an earlier round's too): not just the last round's count
        text = f"taught {', '.join(reports)} in {secs:.0f} s"
        if len(self.reports) > len(reports):
            text += f"; {len(self.reports)} cameras taught ({', '.join(self.reports)})"
        self._say(text + ": check each camera's histogram and threshold, then save")
        self.shown_camera.blockSignals(True)
        self.shown_camera.clear()
        self.shown_camera.addItems(list(self.reports))
        if reports:  # the histogram of a camera just taught
            self.shown_camera.setCurrentText(next(iter(reports)))
        self.shown_camera.blockSignals(False)
        self._show_counts()
        self._show_camera(self.shown_camera.currentText())
        self.update_permissions()
        self.taught.emit()

    def wait_taught(self, timeout: float = 300.0) -> bool:
        """Block until the teaching thread ends (tests); True when it did."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    # ------------------------------------------------------------------ histogram, threshold
    def _show_camera(self, cid: str) -> None:
        r = self.reports.get(cid)
        if r is None:
            return
        self.threshold.blockSignals(True)
        self.threshold.setValue(self.thresholds.get(cid, 1.0))
        self.threshold.blockSignals(False)
        self.histogram.set_scores(r.good_scores, r.bad_scores, self.thresholds.get(cid, 1.0))
        self._show_rates()

    def _on_threshold(self, value: float) -> None:
        cid = self.shown_camera.currentText()
        if cid in self.reports:
            self.thresholds[cid] = float(value)
        self.histogram.set_threshold(float(value))
        self._show_rates()

    def _show_rates(self) -> None:
        r = self.reports.get(self.shown_camera.currentText())
        if r is None:
            self.rates.setText("")
            return
        fr, esc = rates(r.good_scores, r.bad_scores, self.threshold.value())
        text = f"false rejects {fr}/{len(r.good_scores)} held-out good"
        if len(r.bad_scores):
            text += f" · escapes {esc}/{len(r.bad_scores)} NG"
        lost = r.good_without_pose
        if lost:  # an aligned part's good images it found no pose for: scored where they lay, worth a look
            text += f" · {lost} good without a part pose"
        self.rates.setText(text)

    def set_threshold(self, camera_id: str, value: float) -> None:
        """Adjust one camera's threshold (as the spin box does)."""
        self.shown_camera.setCurrentText(camera_id)
        self.threshold.setValue(value)

    # ------------------------------------------------------------------ save
    def save(self) -> str | None:
        """Save the recipe's next version with the taught models and switch to it; returns its label."""
        from inspector.access.users import PermissionDenied

        detector = None if self.detector.isChecked() else {cid: False for cid in self.reports}
        try:
            label = self.session.save(self.control, self.thresholds, detector)
        except (PermissionDenied, ControlError, GateRefused) as exc:
            self._say(f"not saved: {exc}")
            return None
        self._say(f"saved and switched to {label}")
        self.saved.emit(label)
        return label

    def reject(self) -> None:
        self._stop_collecting()
        super().reject()
