"""Dead letters: what ingest could not accept, kept for an operator (a bounded payload prefix with
the full length and SHA-256 of what arrived), the per-agent, per-hour summary of dead letters that
were over the agent's rate and not stored (``dead_letter_suppressed``), and their retention
(:func:`prune_dead_letters`). Writes run in the caller's transaction, with the readings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from store.connection import Connection

__all__ = ["DeadLetterRow", "SuppressedRow", "insert_dead_letters", "prune_dead_letters", "record_suppressed"]


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    topic: str
    reason: str
    detail: str
    payload: bytes  # what is kept: the payload, or a prefix of it
    org_id: str | None
    agent_id: str | None
    # The whole payload as it arrived: its length and SHA-256 (None: ``payload`` is all of it).
    payload_bytes: int | None = None
    payload_sha256: bytes | None = None


@dataclass(frozen=True, slots=True)
class SuppressedRow:
    """Dead letters of one agent that were over its rate: counted, their payloads not stored."""

    agent_id: str  # '' when the publisher could not be told from the topic
    org_id: str | None
    messages: int
    payload_bytes: int
    last_reason: str


def insert_dead_letters(conn: Connection, rows: Sequence[DeadLetterRow]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (org_id, agent_id, topic, reason, detail, payload, payload_bytes, "
            "payload_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    r.org_id,
                    r.agent_id,
                    r.topic,
                    r.reason,
                    r.detail,
                    r.payload,
                    len(r.payload) if r.payload_bytes is None else r.payload_bytes,
                    hashlib.sha256(r.payload).digest() if r.payload_sha256 is None else r.payload_sha256,
                )
                for r in rows
            ],
        )


def record_suppressed(conn: Connection, rows: Sequence[SuppressedRow], *, now: datetime) -> None:
    """Add to the agents' summary rows of the hour of ``now`` (one row per agent and hour)."""
    if not rows:
        return
    hour = now.replace(minute=0, second=0, microsecond=0)
    ordered = sorted(rows, key=lambda r: r.agent_id)  # lock order: concurrent workers never deadlock
    conn.execute(
        "INSERT INTO dead_letter_suppressed AS d (agent_id, hour, org_id, messages, payload_bytes, last_reason) "
        "SELECT u.agent_id, %s, u.org_id, u.messages, u.payload_bytes, u.last_reason "
        "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[]) "
        "AS u(agent_id, org_id, messages, payload_bytes, last_reason) "
        "ON CONFLICT (agent_id, hour) DO UPDATE SET messages = d.messages + excluded.messages, "
        "payload_bytes = d.payload_bytes + excluded.payload_bytes, last_reason = excluded.last_reason",
        (
            hour,
            [r.agent_id for r in ordered],
            [r.org_id for r in ordered],
            [r.messages for r in ordered],
            [r.payload_bytes for r in ordered],
            [r.last_reason for r in ordered],
        ),
    )


def prune_dead_letters(conn: Connection, *, before: datetime, limit: int = 10_000) -> int:
    """Delete up to ``limit`` dead letters received before ``before`` (oldest first), and every
    summary row of an hour before it; return how many dead letters went. Autocommit connection:
    each statement is its own short transaction (call again while it returns ``limit``)."""
    cur = conn.execute(
        "DELETE FROM dead_letters WHERE id IN "
        "(SELECT id FROM dead_letters WHERE received_at < %s ORDER BY received_at LIMIT %s)",
        (before, limit),
    )
    deleted = cur.rowcount
    conn.execute("DELETE FROM dead_letter_suppressed WHERE hour < %s", (before,))
    return max(deleted, 0)
