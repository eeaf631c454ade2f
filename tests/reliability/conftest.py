"""Fixtures for the reliability tests: a throwaway PostgreSQL server, a small real filesystem."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary folder on 127.0.0.1, started and stopped at will."""

    bindir: Path
    datadir: Path
    port: int
    run_as: str | None  # PostgreSQL refuses to run as root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.datadir / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.datadir} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.datadir / "data"), "-o", opts, "-l", str(self.datadir / "log"), "-w",
                  "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` drops every connection like a crash or a pulled cable."""
        self._run("pg_ctl", "-D", str(self.datadir / "data"), "-m", mode, "-w", "-t", "30", "stop", check=False)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 (skips, saying why, when it cannot be had)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing")
        run_as = "postgres"
    datadir = Path(tempfile.mkdtemp(prefix="inspector-pg-"))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bindir, datadir, _free_port(), run_as)
    try:
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(datadir, ignore_errors=True)
        pytest.skip(f"cannot start a throwaway PostgreSQL: {(exc.stderr or exc.stdout or '').strip()[:300]}")
    try:
        yield server
    finally:
        server.stop("fast")
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs mounted on a temporary folder, so writes meet a real ENOSPC."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs (needs root): {res.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler
