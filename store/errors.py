"""Exceptions of the storage layer.

::

    VigilError
    └── StoreError                 .reason
        ├── MigrationError         a migration failed, or the schema on disk and in the database disagree
        ├── DatabaseUnavailable    .sqlstate  the server cannot be reached or cannot take writes now
        │                          (lost connection, read-only, disk full, ...: store.connection)
        ├── NotFound               .kind .key  a row the caller named does not exist
        ├── Conflict               .kind .key  the row exists already, or is in the wrong state
        ├── Rejected               .sqlstate   the database refused a statement or the COMMIT for the
        │                          data written (a constraint or trigger: store.transaction)
        └── TransientConflict      .sqlstate   deadlock or serialization failure: retry at once (.transient)
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = [
    "Conflict",
    "DatabaseUnavailable",
    "MigrationError",
    "NotFound",
    "Rejected",
    "StoreError",
    "TransientConflict",
]


class StoreError(VigilError):
    reason = "store"


class MigrationError(StoreError):
    reason = "migration"


class DatabaseUnavailable(StoreError):
    reason = "database_unavailable"

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate  # None: no server answer (connection refused or lost)


class NotFound(StoreError):
    reason = "not_found"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class Conflict(StoreError):
    reason = "conflict"

    def __init__(self, kind: str, key: str, why: str) -> None:
        super().__init__(f"{kind} {key!r}: {why}")
        self.kind = kind
        self.key = key
        self.why = why


class Rejected(StoreError):
    """The database refused what was written (not its own failure): the message is the server's primary
    message (never its detail, which may quote the values written)."""

    reason = "rejected"

    def __init__(self, message: str, *, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class TransientConflict(StoreError):
    reason = "transient_conflict"
    transient = True  # rpm_core.backoff retries it from the base delay

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"transaction conflict ({sqlstate}); retry")
        self.sqlstate = sqlstate
