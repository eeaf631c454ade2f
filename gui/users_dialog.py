"""Login, first-start and user-management dialogs."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.access.control import StationControl
from inspector.access.users import MIN_PASSWORD_LENGTH, PermissionDenied, Role, UserError

ROLE_LABELS = [r.label for r in Role]


def _error_label() -> QLabel:
    lbl = QLabel()
    lbl.setStyleSheet("color: #b3261e;")
    lbl.setWordWrap(True)
    return lbl


class LoginDialog(QDialog):
    """Asks for a user name and password and logs in through the control API."""

    def __init__(self, control: StationControl, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Log in")
        self.control = control
        self.name = QLineEdit()
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = _error_label()
        form = QFormLayout()
        form.addRow("User", self.name)
        form.addRow("Password", self.password)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.try_login)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def try_login(self) -> bool:
        """Log in with the entered credentials; accept the dialog on success."""
        try:
            user = self.control.login(self.name.text(), self.password.text())
        except PermissionDenied as exc:  # locked, or too early after failed logins: never sleep here
            self.error.setText(str(exc))
            self.password.clear()
            return False
        if user is None:
            self.error.setText("Wrong user name or password.")
            self.password.clear()
            return False
        self.accept()
        return True


class FirstStartDialog(QDialog):
    """First start (no users yet): choose the admin password, or watch only for now."""

    #: `exec()` result when the user chose to watch the line without creating an admin yet.
    WATCH_ONLY = 2

    def __init__(self, control: StationControl, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("First start: create the administrator")
        self.control = control
        self.name = QLineEdit("admin")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = _error_label()
        intro = QLabel(
            "This station has no users yet. Choose the administrator's password "
            f"(at least {MIN_PASSWORD_LENGTH} characters). The administrator adds operators and engineers."
        )
        intro.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Admin user", self.name)
        form.addRow("Password", self.password)
        form.addRow("Repeat", self.confirm)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        watch = buttons.addButton("Watch only for now", QDialogButtonBox.ButtonRole.ActionRole)
        watch.setToolTip("Open the live wall without users; this dialog comes back at the next start.")
        watch.clicked.connect(lambda: self.done(self.WATCH_ONLY))
        buttons.accepted.connect(self.try_create)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def try_create(self) -> bool:
        if self.password.text() != self.confirm.text():
            self.error.setText("The passwords differ.")
            return False
        name = self.name.text().strip() or "admin"
        try:
            self.control.create_admin(self.password.text(), name=name)
        except (UserError, PermissionDenied) as exc:
            self.error.setText(str(exc))
            return False
        # whoever just chose the password is the administrator at this screen: log them in
        if self.control.login(name, self.password.text()) is None:
            self.error.setText(f"{name} was created but could not log in; use Log in…")
        self.password.clear()
        self.confirm.clear()
        self.accept()
        return True


class UsersDialog(QDialog):
    """Admin: list users, change roles, add users, reset passwords."""

    def __init__(self, control: StationControl, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Users")
        self.resize(520, 420)
        self.control = control
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["User", "Role"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.new_name = QLineEdit()
        self.new_password = QLineEdit()
        self.new_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_role = QComboBox()
        self.new_role.addItems(ROLE_LABELS)
        add = QPushButton("Add user")
        add.clicked.connect(self.add_user)
        reset = QPushButton("Set password of selected")
        reset.clicked.connect(self.reset_password)
        self.message = _error_label()
        form = QFormLayout()
        form.addRow("Name", self.new_name)
        form.addRow("Password", self.new_password)
        form.addRow("Role", self.new_role)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(reset)
        row.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.message)
        lay.addWidget(close)
        self.reload()

    def reload(self) -> None:
        try:
            users = self.control.list_users()
        except PermissionDenied as exc:
            self.message.setText(str(exc))
            users = []
        self.table.setRowCount(len(users))
        for i, u in enumerate(users):
            self.table.setItem(i, 0, QTableWidgetItem(u.name))
            combo = QComboBox()
            combo.addItems(ROLE_LABELS)
            combo.setCurrentText(u.role.label)
            combo.currentTextChanged.connect(lambda role, name=u.name: self.change_role(name, role))
            self.table.setCellWidget(i, 1, combo)

    def _show(self, text: str, *, ok: bool) -> None:
        self.message.setStyleSheet(f"color: {'#1a7f37' if ok else '#b3261e'};")
        self.message.setText(text)

    def change_role(self, name: str, role: str) -> bool:
        try:
            self.control.set_role(name, role)
        except (PermissionDenied, UserError) as exc:
            self._show(str(exc), ok=False)
            self.reload()
            return False
        self._show(f"{name} is now {role}", ok=True)
        return True

    def add_user(self) -> bool:
        try:
            u = self.control.add_user(self.new_name.text(), self.new_password.text(), self.new_role.currentText())
        except (PermissionDenied, UserError) as exc:
            self._show(str(exc), ok=False)
            return False
        self.new_name.clear()
        self.new_password.clear()
        self._show(f"added {u}", ok=True)
        self.reload()
        return True

    def reset_password(self) -> bool:
        item = self.table.item(self.table.currentRow(), 0)
        if item is None:
            self._show("select a user first", ok=False)
            return False
        name = item.text()
        try:
            self.control.set_password(name, self.new_password.text())
        except (PermissionDenied, UserError) as exc:
            self._show(str(exc), ok=False)
            return False
        self.new_password.clear()
        self._show(f"password of {name} changed", ok=True)
        return True
