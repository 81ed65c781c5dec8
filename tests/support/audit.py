"""Sealing the audit chain in tests.

A row is sealed only once every transaction older than it has finished, cluster-wide: another
test run's open transaction on the same PostgreSQL server holds sealing back for a moment. So
tests seal until nothing is left unsealed (a positive signal), within a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from store import audit as audit_store


def seal_all(url: str, *, seal: Callable[[], object] | None = None, timeout: float = 30.0) -> None:
    """Seal (with ``seal``, else store.audit.seal) until no audit row is left unsealed."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            if seal is None:
                audit_store.seal(conn)
            else:
                seal()
            if audit_store.unsealed(conn) == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError("audit rows stayed unsealed: a transaction holds the horizon back")
            time.sleep(0.02)
