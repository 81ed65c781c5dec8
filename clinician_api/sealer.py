"""The audit sealer of one API process: a thread that appends new audit rows to the hash chain.

Every ``api_audit_seal_interval_s`` it calls :func:`store.audit.seal` until nothing is left; API
processes share the work through the sealer's advisory lock (one seals, the others find it taken
and wait for the next round). A lost database is logged and retried at the next round; a row
written meanwhile is sealed later, never skipped (the chain follows the rows' transaction ids).
"""

from __future__ import annotations

import logging
import threading

from store import audit as audit_store
from store.app_pool import AppPool
from store.errors import StoreError

__all__ = ["AuditSealer"]

log = logging.getLogger(__name__)


class AuditSealer:
    def __init__(self, pool: AppPool, *, interval_s: float) -> None:
        self._pool = pool
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-audit-sealer", daemon=True)
        self.sealed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def seal_now(self) -> int:
        """Seal until nothing is left; returns how many rows."""
        total = 0
        with self._pool.connection() as conn:
            while n := audit_store.seal(conn):
                total += n
        self.sealed += total
        return total

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.seal_now()
            except StoreError as exc:
                log.warning("audit sealing failed (%s); retrying next round", exc.reason)
