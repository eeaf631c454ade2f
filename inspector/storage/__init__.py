"""Inspection storage: schema, database opening/migration, the batch writer, history queries."""

from __future__ import annotations

from inspector.storage.db import StorageError, default_db_url, migrate, open_database

__all__ = ["StorageError", "default_db_url", "migrate", "open_database"]
