"""The ingest worker's database session: one connection, one transaction per batch.

The service hands a :class:`BatchWrite` to :meth:`IngestDatabase.commit` and gets a
:class:`BatchResult` back, or a :class:`~store.errors.StoreError`:

* ``DatabaseUnavailable`` (connection refused or lost, server shutting down, read-only, disk full,
  out of memory, too many connections: ``store.connection.translate_error``): the batch is not
  committed; reconnect with backoff and write it again (it is idempotent). Never the data's fault.
* ``MigrationError``: a table is missing (the database was not migrated, or was changed under us).
* ``TransientConflict`` (deadlock, serialization failure): retry at once.
* ``StoreError``: anything else the server refused; the data written may be at fault.

Inside the transaction, through ``store``'s SQL: activations, readings (COPY into the session's
staging table, made once at connect, + ``INSERT ... ON CONFLICT DO NOTHING``), dead letters and the
summary of suppressed ones, gaps, agent last-seen and devices, agent statuses, receipt high-water
marks (``ingest.receipts``); then COMMIT; then the watermark ``NOTIFY``
(``store.channels.notify_watermark``). :meth:`IngestDatabase.prune_dead_letters` applies the dead
letters' retention outside any batch.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ingest.receipts import advance_receipts
from rpm_core.keys import AgentPublicKeys
from store import dead_letters
from store.agents import AgentRecord, activate_agent, load_agents, touch_agents
from store.channels import notify_watermark
from store.connection import Connection, as_store_errors, connect, synchronous_commit
from store.dead_letters import DeadLetterRow, SuppressedRow, insert_dead_letters, record_suppressed
from store.devices import DeviceRow, upsert_devices
from store.fleet import AgentStatusRow, record_statuses
from store.readings import ReadingRow, create_staging, insert_readings
from store.receipts import GapRow, record_gaps

__all__ = ["Activation", "BatchResult", "BatchWrite", "IngestDatabase"]

_DEDUP_KEY = operator.itemgetter(3, 7, 0)  # ReadingRow (agent_id, seq, time)


@dataclass(frozen=True, slots=True)
class Activation:
    agent_id: str
    keys: AgentPublicKeys
    agent_version: str


@dataclass(slots=True)
class BatchWrite:
    readings: list[ReadingRow] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    suppressed: list[SuppressedRow] = field(default_factory=list)
    gaps: list[GapRow] = field(default_factory=list)
    activations: list[Activation] = field(default_factory=list)
    devices: list[DeviceRow] = field(default_factory=list)
    statuses: list[AgentStatusRow] = field(default_factory=list)  # the fleet page's outbox depth, version
    seen: dict[str, datetime] = field(default_factory=dict)
    # agent -> (org, resolved inclusive sequence ranges) for the receipt high-water mark
    resolved: dict[str, tuple[str, list[tuple[int, int]]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResult:
    inserted: int
    activated: tuple[str, ...]
    through: Mapping[str, int]
    watermark: int


class IngestDatabase:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @classmethod
    def connect(cls, url: str, *, application_name: str = "vigil-ingest", timeout_s: int = 5) -> IngestDatabase:
        with as_store_errors():
            conn = connect(url, application_name=application_name, connect_timeout_s=timeout_s)
            try:
                create_staging(conn)  # autocommit: the table lasts for the session, not one transaction
            except BaseException:
                conn.close()  # e.g. a read-only database: every retry would leak a connection otherwise
                raise
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def synchronous_commit(self) -> str:
        with as_store_errors():
            return synchronous_commit(self._conn)

    def load_agents(self, agent_ids: Iterable[str]) -> dict[str, AgentRecord]:
        with as_store_errors():
            return load_agents(self._conn, agent_ids)

    def commit(self, batch: BatchWrite, *, now: datetime) -> BatchResult:
        """Write ``batch`` in one transaction and commit it; then notify the watermark."""
        conn = self._conn
        with as_store_errors():
            with conn.transaction():
                activated = tuple(
                    a.agent_id
                    for a in batch.activations
                    if activate_agent(conn, a.agent_id, a.keys, agent_version=a.agent_version, now=now)
                )
                inserted = insert_readings(conn, _ordered(batch.readings), staging_ready=True) if batch.readings else 0
                insert_dead_letters(conn, batch.dead_letters)
                record_suppressed(conn, batch.suppressed, now=now)
                record_gaps(conn, batch.gaps)
                touch_agents(conn, batch.seen)
                upsert_devices(conn, batch.devices)
                record_statuses(conn, batch.statuses, now=now)
                through = advance_receipts(conn, batch.resolved, now=now)
            watermark = notify_watermark(conn)
        return BatchResult(inserted, activated, through, watermark)

    def prune_dead_letters(self, *, before: datetime, limit: int = 10_000, rounds: int = 10) -> int:
        """Delete dead letters (and summaries) older than ``before``, ``limit`` rows per short
        transaction, at most ``rounds`` times; return how many went (``limit * rounds``: call again)."""
        deleted = 0
        with as_store_errors():
            for _ in range(rounds):
                n = dead_letters.prune_dead_letters(self._conn, before=before, limit=limit)
                deleted += n
                if n < limit:
                    break
        return deleted


def _ordered(rows: Sequence[ReadingRow]) -> list[ReadingRow]:
    """Insert in dedup-key order: two workers inserting overlapping duplicates then wait, not deadlock."""
    return sorted(rows, key=_DEDUP_KEY)
