"""One transaction on its own connection, committed when the caller says so.

For work whose COMMIT waits for something outside the database: provisioning changes the broker's
accounts between its statements and the COMMIT, and undoes the broker's side if the COMMIT fails
(docs/provisioning.md). Callers above ``store`` hold a :class:`Transaction`, pass ``tx.conn`` to
store functions and call ``tx.commit()``; leaving the block without a commit rolls back and the
connection is closed either way.

Every psycopg error raised in the block, the COMMIT's included, leaves it as a
:class:`~store.errors.StoreError`, so callers never import psycopg: what
:func:`store.connection.translate_error` names (``DatabaseUnavailable``, ``TransientConflict``,
``MigrationError``), else :class:`~store.errors.Rejected` (the database refused the data: a
constraint, a trigger). A ``Rejected`` message quotes the server only where the text cannot hold a
value written: class 23 (integrity; the values are in the detail, never quoted) and class P0
(``RAISE`` in a trigger or function); for anything else it names the SQLSTATE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg

from store.connection import Connection, session_options, translate_error
from store.errors import DatabaseUnavailable, Rejected, StoreError

__all__ = ["Transaction", "transaction", "translate_all"]

_QUOTED_CLASSES: Final = frozenset({"23", "P0"})


def _rejected(exc: psycopg.Error) -> Rejected:
    state = exc.sqlstate
    primary = exc.diag.message_primary if state is not None and state[:2] in _QUOTED_CLASSES else None
    if primary:
        return Rejected(f"the database refused the change: {primary[:200]}", sqlstate=state)
    return Rejected(f"the database refused the change ({state or type(exc).__name__})", sqlstate=state)


def translate_all(exc: psycopg.Error) -> StoreError:
    """The store error ``exc`` stands for: :func:`~store.connection.translate_error`'s, else ``Rejected``."""
    return translate_error(exc) or _rejected(exc)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise translate_all(exc) from exc


class Transaction:
    """An open transaction; ``conn`` goes to store functions, the owner decides when it commits."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def commit(self) -> None:
        with _translated():
            self.conn.commit()

    def rollback(self) -> None:
        with _translated():
            self.conn.rollback()


@contextmanager
def transaction(url: str, *, application_name: str = "vigil", connect_timeout_s: float = 10.0) -> Iterator[Transaction]:
    """A new connection holding one transaction for the block (see the module docstring)."""
    try:
        conn = psycopg.connect(
            url,
            autocommit=False,
            application_name=application_name,
            connect_timeout=max(1, int(connect_timeout_s)),
            options=session_options(url),
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the database: {exc.sqlstate or 'unreachable'}", sqlstate=exc.sqlstate
        ) from exc
    try:
        with _translated():
            yield Transaction(conn)
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()  # nothing to undo after a commit; a broken connection has nothing left to undo
        conn.close()
