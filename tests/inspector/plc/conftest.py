"""Fixtures of the OPC UA tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def ua_db(tmp_path) -> Iterator[tuple[Any, Any]]:
    """A migrated SQLite database with an operator ``plc`` and an engineer ``eng``: (users, audit)."""
    from inspector.access.audit import AuditLog
    from inspector.access.users import UserStore
    from inspector.storage.db import migrate, open_database

    engine = open_database(f"sqlite:///{tmp_path / 'ua.db'}")
    migrate(engine)
    users = UserStore(engine)
    users.create_user("plc", "operator-pass", "operator", by="test")
    users.create_user("eng", "engineer-pass", "engineer", by="test")
    yield users, AuditLog(engine)
    engine.dispose()
