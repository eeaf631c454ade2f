"""Opening and migrating the inspection database.

SQLite (WAL) in the user data folder is the default; any SQLAlchemy URL can replace it,
e.g. ``postgresql+psycopg://user@host/inspector`` for a plant-wide database. The
``INSPECTOR_DB_URL`` environment variable overrides the default.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

ENV_URL = "INSPECTOR_DB_URL"
MIGRATIONS = Path(__file__).with_name("migrations")

# A server that accepts TCP and never answers must not hang a station or a command
# (issue 12): libpq gives up connecting after CONNECT_TIMEOUT_S, the server cancels a
# statement after STATEMENT_TIMEOUT_S, and the kernel drops a connection whose data is
# unacknowledged for TCP_USER_TIMEOUT_S (the writer then spools). Each may be set in the
# URL's query instead (``?connect_timeout=3``, ``?options=-c statement_timeout=60000``).
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_S = 30
TCP_USER_TIMEOUT_S = 30


class StorageError(ValueError):
    """A database problem a user can cause or fix (bad URL, unreachable server, bad file).

    The message is one line that names the database, fit for the CLI to print as is.
    """


def default_db_url() -> str:
    """The database URL to use when none is configured.

    Returns:
        ``INSPECTOR_DB_URL`` if set, else a SQLite file ``inspector.db`` in the user data
        folder (created if missing).
    """
    env = os.environ.get(ENV_URL, "").strip()
    if env:
        return env
    folder = Path(platformdirs.user_data_dir("inspector"))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'inspector.db'}"


def sqlite_path(target: str | URL | Engine) -> Path | None:
    """The database file of a file-backed SQLite URL or engine, else None.

    Args:
        target: A database URL (string or parsed) or an engine.
    """
    if isinstance(target, Engine):
        url = target.url
    else:
        try:
            url = make_url(target)
        except ArgumentError:
            return None
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db).expanduser()


def display_url(url: str | URL) -> str:
    """The URL as it may appear in messages and logs (password hidden)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    # as the user wrote it unless there is a password to hide (rendering re-encodes ':' and reorders the query)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def open_database(
    url: str | None = None, *, busy_timeout_ms: int = 5000, connect: bool = True, durable: bool = False
) -> Engine:
    """Create an engine for ``url`` (default: `default_db_url`).

    For SQLite every new connection gets the PRAGMAs the engine relies on (WAL,
    synchronous=FULL, foreign keys, busy timeout, incremental auto-vacuum for a new file)
    and real transactions (SQLAlchemy's documented pysqlite recipe: we emit BEGIN
    ourselves so DDL is transactional too).

    Args:
        url: SQLAlchemy database URL.
        busy_timeout_ms: How long SQLite waits for a lock held by another connection
            before failing with "database is locked".
        connect: Open one connection now so a bad URL or an unreachable server is
            reported here rather than at the first write.
        durable: The database must keep what is written (a station's): an in-memory
            SQLite database, a read-only file or a file in a read-only folder is refused.

    Returns:
        The engine (thread-safe; share it between writer and readers).

    Raises:
        StorageError: The URL cannot be parsed, names an unknown dialect or a driver
            that is not installed, (with ``durable``) would not keep what is written, or
            (with ``connect``) the database cannot be opened.
    """
    raw = url if url is not None else default_db_url()
    shown = display_url(raw)
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise StorageError(
            f"db: cannot open {shown!r}: not a database URL (e.g. sqlite:///path/inspector.db)"
        ) from None
    kwargs: dict[str, Any] = {}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and durable:
        _refuse_unkept_sqlite(parsed, shown)
    if is_sqlite:
        database = parsed.database or ""
        if database in ("", ":memory:"):
            # one shared in-memory database for every thread
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        elif not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StorageError(f"db: cannot open {shown!r}: folder {parent} does not exist")
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = _postgres_timeouts(parsed)
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise StorageError(f"db: cannot open {shown!r}: unknown dialect {parsed.drivername!r}") from None
    except ImportError as exc:
        hint = ' (pip install "inspector[postgres]")' if parsed.get_backend_name() == "postgresql" else ""
        raise StorageError(f"db: cannot open {shown!r}: driver not installed ({exc.name or exc}){hint}") from None
    except (ArgumentError, TypeError) as exc:
        raise StorageError(f"db: cannot open {shown!r}: {_one_line(exc)}") from None
    if is_sqlite:
        _install_sqlite_pragmas(engine, busy_timeout_ms)
    if connect or (is_sqlite and durable):
        try:
            with engine.connect() as conn:
                if is_sqlite and durable:
                    _probe_sqlite_write(conn.connection.driver_connection)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StorageError(f"db: cannot open {shown!r}: {_one_line(exc)}") from None
        except sqlite3.OperationalError as exc:  # the write probe: a read-only file or filesystem
            engine.dispose()
            raise StorageError(
                f"db: cannot open {shown!r}: the database is read-only ({exc}); "
                "make the file and its folder writable for this user, or give another file"
            ) from None
    log.info("db: opened %s", shown)
    return engine


def is_in_memory(url: str | URL) -> bool:
    """True for a SQLite URL whose database lives in memory only (gone when the process ends)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite":
        return False
    db = parsed.database or ""
    mode = str(parsed.query.get("mode", ""))
    return db in ("", ":memory:") or db.startswith("file::memory:") or (db.startswith("file:") and mode == "memory")


def _refuse_unkept_sqlite(url: URL, shown: str) -> None:
    """Raise `StorageError` for a SQLite database that would not keep a station's results."""
    if is_in_memory(url):
        raise StorageError(
            f"db: {shown!r} is an in-memory database: every result would be gone when the station stops; "
            "give a file (e.g. sqlite:///path/inspector.db), or 'none' to run without a database"
        )
    db = url.database or ""
    if db.startswith("file:"):
        if str(url.query.get("mode", "")) == "ro" or str(url.query.get("immutable", "")) in ("1", "true"):
            raise StorageError(f"db: {shown!r} opens the database read-only; drop mode=ro / immutable=1")
        db = db[len("file:"):].split("?", 1)[0]
    path = Path(db).expanduser()
    folder = path.resolve().parent
    # Root writes through any file mode, but a file or folder without write permission is meant to be
    # read-only (and is, for the service user): refuse it rather than write through it.
    if path.exists() and not _writable(path):
        raise StorageError(f"db: cannot open {shown!r}: {path} is read-only; make it writable or give another file")
    if folder.is_dir() and not _writable(folder):
        raise StorageError(
            f"db: cannot open {shown!r}: folder {folder} is read-only (SQLite writes its journal beside the "
            "database); make it writable or give a file in another folder"
        )


def _writable(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(path, os.W_OK)


def _probe_sqlite_write(dbapi: Any) -> None:
    """Take the write lock and write the header's user_version unchanged, then roll back.

    Catches what the file modes do not show (a read-only mount); costs one lock, no data.
    """
    dbapi.execute("BEGIN IMMEDIATE")
    try:
        version = dbapi.execute("PRAGMA user_version").fetchone()[0]
        dbapi.execute(f"PRAGMA user_version={int(version)}")
    finally:
        dbapi.execute("ROLLBACK")


def _postgres_timeouts(url: URL) -> dict[str, Any]:
    """libpq connection parameters that bound every wait, unless the URL sets them."""
    query = url.query
    args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        args["connect_timeout"] = max(1, int(CONNECT_TIMEOUT_S))
    if "options" not in query:
        args["options"] = f"-c statement_timeout={int(STATEMENT_TIMEOUT_S * 1000)}"
    if "tcp_user_timeout" not in query:
        args["tcp_user_timeout"] = int(TCP_USER_TIMEOUT_S * 1000)
    if "keepalives" not in query:
        args.update(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
    return args


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop pysqlite from issuing BEGIN/COMMIT on its own; "begin" below does it.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            # Space of purged rows goes back to the filesystem (retention runs incremental_vacuum).
            # Takes effect only in a new file, before its first table: an existing database keeps
            # its mode until a VACUUM (see inspector.storage.retention).
            # only on an empty file: on one with tables it does nothing, yet it waits for (and with
            # another connection holding the write lock fails after) the busy timeout
            if cur.execute("PRAGMA page_count").fetchone()[0] == 0:
                cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            cur.execute("PRAGMA journal_mode=WAL")  # readers (GUI) never block the writer
            # a retention purge writes its deletes to the WAL: truncate it back after each checkpoint
            cur.execute("PRAGMA journal_size_limit=67108864")
            # A result reported as written must survive power loss and kill -9. FULL
            # fsyncs the WAL on every commit (NORMAL may lose the last commits on power
            # loss); the writer commits in batches, so the cost is amortised.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A transaction that reads and then writes (the audit chain reads its last hash) must
        # take the write lock up front: a deferred one that read before another connection
        # committed fails at its first write with "database is locked" at once, whatever
        # the busy timeout. `writing(engine)` marks such transactions.
        immediate = conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writing(engine: Engine) -> Engine:
    """``engine`` for transactions that write: on SQLite they begin IMMEDIATE (wait for the
    write lock within the busy timeout instead of failing on a read-then-write upgrade)."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the schema up to date (Alembic ``upgrade head``), creating it if needed.

    Raises:
        StorageError: The database cannot be reached or the migration failed.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    from inspector.storage.audit_chain import ensure_audit_triggers

    cfg = Config()
    # ConfigParser interpolates '%': escape it in the path.
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            # even at head: put back append-only triggers someone dropped (issue 12)
            restored = ensure_audit_triggers(conn)
            if restored:
                log.warning("db: restored missing audit_log triggers: %s", ", ".join(restored))
    except SQLAlchemyError as exc:
        raise StorageError(f"db: cannot migrate {display_url(engine.url)!r}: {_one_line(exc)}") from None
    except CommandError as exc:  # e.g. a schema revision from a newer inspector
        raise StorageError(
            f"db: cannot migrate {display_url(engine.url)!r}: {_one_line(exc)} "
            "(a newer inspector made this database? use that version or another database)"
        ) from None


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
