"""The durable, encrypted outbox (SQLite): readings wait here until the server's receipt.

:mod:`.store` is the blocking implementation and documents the guarantees and the schema,
:mod:`.codec` the encryption at rest, :mod:`.aio` the asyncio wrapper the agent uses and
:mod:`.inspect` the key-less read-only view behind ``vigil edge status``.
"""

from edge_agent.outbox.aio import AsyncOutbox
from edge_agent.outbox.inspect import LocalState, inspect_outbox
from edge_agent.outbox.store import SCHEMA_VERSION, Backlog, Cursor, OutboxStats, SqliteOutbox

__all__ = [
    "SCHEMA_VERSION",
    "AsyncOutbox",
    "Backlog",
    "Cursor",
    "LocalState",
    "OutboxStats",
    "SqliteOutbox",
    "inspect_outbox",
]
