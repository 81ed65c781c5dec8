"""Exceptions of the storage layer.

::

    VigilError
    └── StoreError                 .reason
        ├── MigrationError         a migration failed, or the schema on disk and in the database disagree
        └── DatabaseUnavailable    the server cannot be reached (translated from psycopg.OperationalError)
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = ["DatabaseUnavailable", "MigrationError", "StoreError"]


class StoreError(VigilError):
    reason = "store"


class MigrationError(StoreError):
    reason = "migration"


class DatabaseUnavailable(StoreError):
    reason = "database_unavailable"
