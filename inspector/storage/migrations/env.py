"""Alembic environment for the inspection database.

`inspector.storage.db.migrate` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line (for writing new
revisions) falls back to the ``sqlalchemy.url`` option or ``INSPECTOR_DB_URL``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

# imported to register their tables on Base: users/audit (users_models) and camera_events (event_models)
from inspector.storage import event_models, users_models  # noqa: F401
from inspector.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # we emit BEGIN ourselves on SQLite (see db.py), so its DDL is transactional
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from inspector.storage.db import default_db_url, open_database

    engine = open_database(config.get_main_option("sqlalchemy.url") or default_db_url())
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
