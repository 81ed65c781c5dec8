"""Exceptions of the ingestion service.

::

    VigilError
    └── IngestError                  .reason
        └── RefusedToStart           .why  a precondition of "ack after COMMIT" does not hold
                                           (synchronous_commit off, no server keys, bad settings)

Database trouble arrives as ``store.errors.DatabaseUnavailable`` (translated from psycopg in
store) and is retried with ``rpm_core.backoff``; envelope trouble is ``rpm_core.errors.EnvelopeError``
and ends as a dead letter, never as an exception out of the service.
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = ["IngestError", "RefusedToStart"]


class IngestError(VigilError):
    reason = "ingest"


class RefusedToStart(IngestError):
    reason = "refused_to_start"

    def __init__(self, why: str) -> None:
        super().__init__(f"ingest refuses to start: {why}")
        self.why = why
