"""Camera settings: the feature tree by category, with typed editors; writes go through `StationControl`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from camera.features import VISIBILITY_ORDER, Feature, FeatureError
from gui.roles import gate
from inspector.access.control import ControlError, FeatureSetError, StationControl
from inspector.access.users import PermissionDenied
from inspector.settings_store import CameraSettingsStore, SettingsError

log = logging.getLogger(__name__)

VISIBILITY_LEVELS = ("Beginner", "Expert", "Guru")
_INT_LIMIT = 2**31 - 1
_OK = QColor("#1a7f37")
_ERR = QColor("#b3261e")


class _WheelWhenFocused:
    """Mixed into an editor in the tree: the wheel scrolls the tree unless the editor has focus
    (clicked or tabbed into), so scrolling past a value never changes it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # type: ignore[attr-defined]  # the wheel never gives it focus

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.hasFocus():  # type: ignore[attr-defined]
            super().wheelEvent(event)  # type: ignore[misc]
        else:
            event.ignore()  # on to the tree


class _SpinBox(_WheelWhenFocused, QSpinBox):
    """A spin box in the tree (`_WheelWhenFocused`)."""


class _DoubleSpinBox(_WheelWhenFocused, QDoubleSpinBox):
    """`_SpinBox` for floats."""


class _ComboBox(_WheelWhenFocused, QComboBox):
    """`_SpinBox` for enumerations."""


def make_editor(f: Feature, value: Any) -> QWidget:
    """An editor for one feature's type, set to ``value`` (min/max/increment honoured).

    Number and choice editors take the mouse wheel only once focused: scrolling the tree
    over them scrolls the tree and changes nothing.
    """
    if f.type == "int":
        w = _SpinBox()
        lo = int(f.minimum) if f.minimum is not None else -_INT_LIMIT
        hi = int(f.maximum) if f.maximum is not None else _INT_LIMIT
        w.setRange(max(-_INT_LIMIT - 1, lo), min(_INT_LIMIT, hi))
        if f.increment:
            w.setSingleStep(int(f.increment))
            w.setStepType(QAbstractSpinBox.StepType.DefaultStepType)
        w.setSuffix(f" {f.unit}" if f.unit else "")
        if value is not None:
            w.setValue(int(value))
        return w
    if f.type == "float":
        d = _DoubleSpinBox()
        flo = float(f.minimum) if f.minimum is not None else -1e12
        fhi = float(f.maximum) if f.maximum is not None else 1e12
        d.setDecimals(3)
        d.setRange(flo, fhi)
        d.setSingleStep(f.increment or max(0.001, (fhi - flo) / 100 if fhi - flo < 1e9 else 1.0))
        d.setSuffix(f" {f.unit}" if f.unit else "")
        if value is not None:
            d.setValue(float(value))
        return d
    if f.type == "enum":
        c = _ComboBox()
        entries = list(f.enum_entries)
        if value is not None and str(value) not in entries:
            entries.insert(0, str(value))
        c.addItems(entries)
        if value is not None:
            c.setCurrentText(str(value))
        return c
    if f.type == "bool":
        b = QCheckBox()
        b.setChecked(bool(value))
        return b
    e = QLineEdit("" if value is None else str(value))
    return e


def editor_value(f: Feature, w: QWidget) -> Any:
    """The value an editor holds, in the feature's type."""
    if isinstance(w, QSpinBox):
        return w.value()
    if isinstance(w, QDoubleSpinBox):
        return w.value()
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QLineEdit):
        return w.text()
    raise TypeError(f"{f.name}: no editor value")


def set_editor_value(w: QWidget, value: Any) -> None:
    """Put ``value`` into an editor made by `make_editor`."""
    if isinstance(w, QSpinBox):
        w.setValue(int(value))
    elif isinstance(w, QDoubleSpinBox):
        w.setValue(float(value))
    elif isinstance(w, QComboBox):
        w.setCurrentText(str(value))
    elif isinstance(w, QCheckBox):
        w.setChecked(bool(value))
    elif isinstance(w, QLineEdit):
        w.setText(str(value))


class CameraSettingsDialog(QDialog):
    """Browse and change one camera's features.

    Features are grouped by category and filtered by visibility level and a search text.
    Edited rows are marked; *Apply* writes each one through
    `StationControl.set_camera_feature` and shows the device's answer (the value read
    back) or its refusal next to it. A user without the role gets a one-line message.

    *Save as start-up settings* applies the edits and writes the camera's changed features
    where the station reads them at its next start (`inspector.settings_store`: the
    station's config file, or the selected product recipe's). *Export/Import feature set*
    copy every writable feature of one camera to and from a "camera feature set" file
    (not a product recipe: those live in ``inspector/recipes``).

    Args:
        control: The control API.
        camera_id: The camera shown first.
        store: Where settings persist (None: the station cannot save them; the button is hidden).
    """

    def __init__(self, control: StationControl, camera_id: str | None = None, parent: QWidget | None = None, *,
                 store: CameraSettingsStore | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.setWindowTitle("Camera settings")
        self.resize(760, 640)
        self.control = control
        self.features: dict[str, Feature] = {}
        self.items: dict[str, QTreeWidgetItem] = {}
        self.editors: dict[str, QWidget] = {}
        self.loaded: dict[str, Any] = {}
        self.dirty: set[str] = set()

        self.camera_combo = QComboBox()
        for cid, cam in control.station.cameras.items():
            model = f" ({cam.info.vendor} {cam.info.model})".replace("( ", "(") if cam.info.model else ""
            self.camera_combo.addItem(f"{cid}{model}", cid)
        self.visibility_combo = QComboBox()
        self.visibility_combo.addItems(VISIBILITY_LEVELS)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search features…")
        self.search.setClearButtonEnabled(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Camera"))
        top.addWidget(self.camera_combo, 1)
        top.addWidget(QLabel("Visibility"))
        top.addWidget(self.visibility_combo)
        top.addWidget(self.search, 1)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Feature", "Value", "Device answer"])
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.tree.setColumnWidth(0, 240)
        self.tree.setColumnWidth(1, 220)

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.role_hint = QLabel()
        self.role_hint.setStyleSheet("color: #9a6700;")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setDefault(True)
        self.apply_button.clicked.connect(self.apply)
        revert = QPushButton("Revert")
        revert.clicked.connect(self.reload)
        self.persist_button = QPushButton("Save as start-up settings")
        self.persist_button.clicked.connect(self.save_startup_settings)
        self.persist_button.setVisible(store is not None)
        self.save_button = save = QPushButton("Export feature set…")
        save.clicked.connect(self._ask_save_feature_set)
        self.load_button = load = QPushButton("Import feature set…")
        load.clicked.connect(self._ask_load_feature_set)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addWidget(save)
        buttons.addWidget(load)
        buttons.addStretch(1)
        buttons.addWidget(revert)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.persist_button)
        buttons.addWidget(close)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.tree, 1)
        self.search_hint = QLabel()  # matches the visibility level hides ("1 match at Expert visibility")
        self.search_hint.setStyleSheet("color: #9a6700;")
        self.search_hint.setVisible(False)
        lay.addWidget(self.search_hint)
        lay.addWidget(self.role_hint)
        lay.addWidget(self.status)
        lay.addLayout(buttons)

        self.camera_combo.currentIndexChanged.connect(lambda _i: self.reload())
        self.visibility_combo.currentIndexChanged.connect(lambda _i: self.apply_visibility())
        self.search.textChanged.connect(lambda _t: self.apply_visibility())
        if camera_id is not None:
            idx = self.camera_combo.findData(camera_id)
            if idx >= 0:
                self.camera_combo.setCurrentIndex(idx)
        self.reload()

    @property
    def camera_id(self) -> str:
        return str(self.camera_combo.currentData())

    # ------------------------------------------------------------------ building
    def reload(self) -> None:
        """Read the camera's features and values again (drops unapplied edits)."""
        self.tree.clear()
        self.features.clear()
        self.items.clear()
        self.editors.clear()
        self.loaded.clear()
        self.dirty.clear()
        self._update_role_hint()
        cam = self.control.station.cameras[self.camera_id]
        try:
            feats = [f for f in cam.features.features() if f.type != "command" and f.visibility != "Invisible"]
        except FeatureError as exc:
            self._set_status(f"cannot read the features of {self.camera_id}: {exc}", ok=False)
            return
        categories: dict[str, QTreeWidgetItem] = {}
        bold = QFont(self.tree.font())
        bold.setBold(True)
        for f in feats:
            try:
                value = cam.features.get(f.name)
            except FeatureError as exc:
                value, unreadable = None, str(exc)
            else:
                unreadable = ""
            cat = categories.get(f.category)
            if cat is None:
                cat = categories[f.category] = QTreeWidgetItem(self.tree, [f.category])
                cat.setFont(0, bold)
                cat.setFirstColumnSpanned(True)
                cat.setExpanded(True)
            item = QTreeWidgetItem(cat, [f.display_name or f.name])
            tip = f"{f.name} ({f.type}, {f.visibility})" + (f"\n{f.description}" if f.description else "")
            if f.minimum is not None or f.maximum is not None:
                tip += f"\nrange {f.minimum:g} … {f.maximum:g}" if f.minimum is not None and f.maximum is not None else ""
            item.setToolTip(0, tip)
            self.features[f.name] = f
            self.items[f.name] = item
            self.loaded[f.name] = value
            if f.writable and not unreadable:
                ed = make_editor(f, value)
                self._watch(f.name, ed)
                self.editors[f.name] = ed
                self.tree.setItemWidget(item, 1, ed)
            else:
                item.setText(1, "(not available now)" if unreadable else _show(value))
                item.setForeground(1, QBrush(QColor("#6e7781")))
                item.setToolTip(1, unreadable or "read-only")
        self.apply_visibility()
        self._set_status(f"{len(feats)} features of {self.camera_id}", ok=True)

    def _watch(self, name: str, ed: QWidget) -> None:
        mark = lambda *_a: self._mark_dirty(name)
        if isinstance(ed, (QSpinBox, QDoubleSpinBox)):
            ed.valueChanged.connect(mark)
        elif isinstance(ed, QComboBox):
            ed.currentTextChanged.connect(mark)
        elif isinstance(ed, QCheckBox):
            ed.toggled.connect(mark)
        elif isinstance(ed, QLineEdit):
            ed.textEdited.connect(mark)

    def _mark_dirty(self, name: str) -> None:
        self.dirty.add(name)
        item = self.items[name]
        f = QFont(item.font(0))
        f.setBold(True)
        item.setFont(0, f)
        item.setText(2, "edited (not applied)")
        item.setForeground(2, QBrush(QColor("#9a6700")))

    def apply_visibility(self) -> None:
        """Hide features above the visibility level or not matching the search text."""
        level = VISIBILITY_ORDER[self.visibility_combo.currentText()]
        needle = self.search.text().strip().lower()
        above: dict[str, int] = {}  # matches hidden by the level, by their visibility
        for name, item in self.items.items():
            f = self.features[name]
            hit = not needle or needle in name.lower() or needle in (f.display_name or "").lower()
            too_deep = VISIBILITY_ORDER.get(f.visibility, 0) > level
            if needle and hit and too_deep:
                above[f.visibility] = above.get(f.visibility, 0) + 1
            item.setHidden(too_deep or not hit)
        self._show_search_hint(above)
        for i in range(self.tree.topLevelItemCount()):
            cat = self.tree.topLevelItem(i)
            if cat is not None:
                children = [cat.child(j) for j in range(cat.childCount())]
                cat.setHidden(all(c is None or c.isHidden() for c in children))

    def _show_search_hint(self, above: dict[str, int]) -> None:
        """Say how many matches of the search the visibility level hides, and at which levels."""
        n = sum(above.values())
        self.search_hint.setVisible(bool(n))
        if not n:
            self.search_hint.clear()
            return
        levels = [v for v in VISIBILITY_LEVELS if v in above]
        self.search_hint.setText(f"{n} match{'es' if n != 1 else ''} at {'/'.join(levels)} visibility: "
                                 f"choose {levels[0]} under Visibility to see {'them' if n != 1 else 'it'}")

    def visible_features(self) -> list[str]:
        """Names of the features currently shown (tests, search)."""
        return [n for n, it in self.items.items() if not it.isHidden()]

    def _update_role_hint(self) -> None:
        if self.control.can("camera.set_feature"):
            self.role_hint.setText("")
        else:
            self.role_hint.setText("Read-only: log in as engineer or admin to change camera settings.")
        gate(self.apply_button, self.control, "camera.set_feature", tip="write the edited features to the camera")
        gate(self.persist_button, self.control, "camera.set_feature",
             tip="apply the edits and keep this camera's changed settings for the station's next start")
        # the actions keep their historical names ("recipe.save"/"recipe.load"): the audit trail has them
        gate(self.save_button, self.control, "recipe.save",
             tip="write every writable feature of this camera to a camera feature set file")
        gate(self.load_button, self.control, "recipe.load", tip="write a camera feature set file's values to this camera")

    def update_permissions(self) -> None:
        """Enable the buttons the logged-in user's role allows."""
        self._update_role_hint()

    # ------------------------------------------------------------------ applying
    def set_value(self, name: str, value: Any) -> None:
        """Put a value in a feature's editor as the user would (marks it edited)."""
        set_editor_value(self.editors[name], value)
        self._mark_dirty(name)

    def apply(self) -> dict[str, Any]:
        """Write the edited features; returns ``name -> device answer`` of those accepted."""
        answers: dict[str, Any] = {}
        errors = 0
        for name in [n for n in self.items if n in self.dirty]:
            f = self.features[name]
            item = self.items[name]
            try:
                answer = self.control.set_camera_feature(self.camera_id, name, editor_value(f, self.editors[name]))
            except PermissionDenied as exc:
                self._set_status(f"Refused: {exc}", ok=False)
                return answers
            except (FeatureError, ControlError) as exc:
                item.setText(2, f"✗ {exc}")
                item.setForeground(2, QBrush(_ERR))
                item.setToolTip(2, str(exc))
                errors += 1
                continue
            answers[name] = answer
            self.dirty.discard(name)
            self.loaded[name] = answer
            item.setText(2, f"✓ {_show(answer)}")
            item.setForeground(2, QBrush(_OK))
            font = QFont(item.font(0))
            font.setBold(False)
            item.setFont(0, font)
            ed = self.editors[name]
            ed.blockSignals(True)
            set_editor_value(ed, answer)  # show what the device took (it may round or clamp)
            ed.blockSignals(False)
        if not answers and not errors:
            self._set_status("nothing to apply", ok=True)
        else:
            self._set_status(f"{len(answers)} written, {errors} refused by the device", ok=errors == 0)
        return answers

    def _set_status(self, text: str, *, ok: bool) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {(_OK if ok else _ERR).name()};")

    # ------------------------------------------------------------------ start-up settings
    def save_startup_settings(self) -> bool:
        """Apply the edits, then keep the camera's changed settings for the next start; False when refused."""
        if self.store is None:
            return False
        if self.dirty:
            self.apply()
            if self.dirty:  # refused by the device or the role: the status says why
                return False
        try:
            saved = self.store.save(self.camera_id)
        except (PermissionDenied, SettingsError, ControlError) as exc:
            self._set_status(f"Refused: {exc}" if isinstance(exc, PermissionDenied) else str(exc), ok=False)
            return False
        changed = self.store.changed(self.camera_id)
        self._set_status(f"saved {', '.join(f'{k} = {_show(v)}' for k, v in changed.items())} of {self.camera_id} "
                         f"to {saved.path} ({saved.kind}): the camera starts with them", ok=True)
        return True

    # ------------------------------------------------------------------ camera feature sets
    def save_feature_set_to(self, path: Path | str) -> bool:
        """Write every writable feature of the camera to a camera feature set file."""
        try:
            values = self.control.save_feature_set(self.camera_id, path)
        except (PermissionDenied, FeatureSetError, ControlError) as exc:
            self._set_status(f"Refused: {exc}" if isinstance(exc, PermissionDenied) else str(exc), ok=False)
            return False
        self._set_status(f"exported {len(values)} features of {self.camera_id} to the feature set {path}", ok=True)
        return True

    def load_feature_set_from(self, path: Path | str) -> bool:
        """Write a camera feature set file's values to the camera (each write audited)."""
        try:
            res = self.control.load_feature_set(self.camera_id, path)
        except (PermissionDenied, FeatureSetError, ControlError) as exc:
            self._set_status(f"Refused: {exc}" if isinstance(exc, PermissionDenied) else str(exc), ok=False)
            return False
        self.reload()
        for name, msg in res.errors.items():
            if name in self.items:
                self.items[name].setText(2, f"✗ {msg}")
                self.items[name].setForeground(2, QBrush(_ERR))
        for name, answer in res.applied.items():
            if name in self.items:
                self.items[name].setText(2, f"✓ {_show(answer)} (recipe)")  # "(recipe)": from the feature set file
                self.items[name].setForeground(2, QBrush(_OK))
        self._set_status(
            f"feature set {Path(path).name}: {len(res.applied)} written, {len(res.unchanged)} unchanged, "
            f"{len(res.errors)} refused",
            ok=not res.errors,
        )
        return True

    #: The names these had while they were called "recipes" (a camera feature set is not a product recipe).
    save_recipe_to = save_feature_set_to
    load_recipe_from = load_feature_set_from

    def _ask_save_feature_set(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export camera feature set", f"{self.camera_id}.features.toml",
                                              "Camera feature sets (*.toml)")
        if path:
            self.save_feature_set_to(path)

    def _ask_load_feature_set(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import camera feature set", "", "Camera feature sets (*.toml)")
        if path:
            self.load_feature_set_from(path)


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
