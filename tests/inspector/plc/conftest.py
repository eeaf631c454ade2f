"""Fixtures of the PLC link tests."""

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


@pytest.fixture
def plc() -> Iterator[tuple[Any, Any, Any]]:
    """A Modbus server on a free port for a `FakeStation` (cameras cam1, cam2) and a client: (station, server, client)."""
    from inspector.plc.modbus_client import PlcClient
    from inspector.plc.modbus_server import ModbusPlc
    from tests.inspector.plc.test_modbus import FakeStation, free_port

    station = FakeStation()
    server = ModbusPlc(station, port=free_port(), cameras=("cam1", "cam2"))
    server.start()
    client = PlcClient(port=server.port)
    yield station, server, client
    client.close()
    server.stop()
