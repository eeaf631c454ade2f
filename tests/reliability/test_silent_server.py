"""A PostgreSQL URL to a server that accepts TCP and never answers: one line and exit 2, soon."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from inspector.storage import db as dbmod


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    srv.close()


@pytest.mark.parametrize("command", [["history"], ["run", "--headless", "--station", "demo", "--duration", "5"]])
def test_silent_postgres_is_one_line_and_exit_2(command: list[str], silent_port: int) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://inspector@127.0.0.1:{silent_port}/inspector"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "gui.launcher", *command, "--db", url],
                         capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("inspector: db: cannot open 'postgresql+psycopg://inspector@127.0.0.1:")
    assert "timeout" in lines[-1]
    assert "Traceback" not in res.stderr
    assert took < dbmod.CONNECT_TIMEOUT_S + 25  # bounded: on today's main this hung until killed


def test_url_timeouts_win_over_the_defaults() -> None:
    from sqlalchemy.engine import make_url

    args = dbmod._postgres_timeouts(make_url("postgresql+psycopg://u@h/db?connect_timeout=2"))
    assert "connect_timeout" not in args and args["options"] == "-c statement_timeout=30000"
    assert dbmod._postgres_timeouts(make_url("postgresql+psycopg://u@h/db"))["connect_timeout"] == dbmod.CONNECT_TIMEOUT_S
