"""What the ingest service writes besides readings, in the same transaction as the readings.

* receipts: per agent the highest contiguous resolved sequence (``agent_receipts.through``) and the
  resolved ranges above it (``agent_resolved``); :func:`merge_resolved` is the pure core.
  Rows are locked in agent-id order (``FOR UPDATE``) so concurrent workers handling the same agent
  serialise instead of deadlocking, and never move ``through`` backwards.
* dead letters (a bounded payload prefix with the full length and SHA-256 of what arrived), the
  per-agent, per-hour summary of dead letters that were over the agent's rate and not stored
  (``dead_letter_suppressed``), declared gaps, agent last-seen and device status rows.
* the ``synchronous_commit`` check.
* :func:`prune_dead_letters`: the retention of dead letters and their summaries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

__all__ = [
    "DeadLetterRow",
    "DeviceRow",
    "GapRow",
    "SuppressedRow",
    "advance_receipts",
    "insert_dead_letters",
    "merge_resolved",
    "prune_dead_letters",
    "record_gaps",
    "record_suppressed",
    "synchronous_commit",
    "touch_agents",
    "upsert_devices",
]


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


@dataclass(frozen=True, slots=True)
class GapRow:
    agent_id: str
    org_id: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    org_id: str
    agent_id: str
    profile: str | None
    name: str | None
    manufacturer: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    battery_pct: int | None
    last_seen_at: datetime | None


def merge_resolved(through: int, ranges: Iterable[tuple[int, int]]) -> tuple[int, list[tuple[int, int]]]:
    """Advance ``through`` over resolved inclusive ranges; return it and the ranges still above a hole.

    Ranges may overlap, touch, repeat or lie below ``through`` (duplicates): all are absorbed.
    """
    merged: list[list[int]] = []
    for first, last in sorted(r for r in ranges if r[1] > through):
        first = max(first, through + 1)
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    if merged and merged[0][0] == through + 1:
        through = merged.pop(0)[1]
    return through, [(a, b) for a, b in merged]


def advance_receipts(
    conn: psycopg.Connection[Any], resolved: Mapping[str, tuple[str, Sequence[tuple[int, int]]]], *, now: datetime
) -> dict[str, int]:
    """Add resolved ranges per agent (``agent -> (org, ranges)``); return every such agent's ``through``."""
    agents = sorted(resolved)
    if not agents:
        return {}
    conn.execute(
        "INSERT INTO agent_receipts (agent_id, org_id) SELECT * FROM unnest(%s::text[], %s::text[]) "
        "ON CONFLICT (agent_id) DO NOTHING",
        (agents, [resolved[a][0] for a in agents]),
    )
    current = dict(
        conn.execute(
            "SELECT agent_id, through FROM agent_receipts WHERE agent_id = ANY(%s) ORDER BY agent_id FOR UPDATE",
            (agents,),
        ).fetchall()
    )
    pending: dict[str, list[tuple[int, int]]] = {a: list(resolved[a][1]) for a in agents}
    for agent, first, last in conn.execute(
        "SELECT agent_id, first_seq, last_seq FROM agent_resolved WHERE agent_id = ANY(%s)", (agents,)
    ):
        pending[agent].append((first, last))
    out: dict[str, int] = {}
    rest: list[tuple[str, int, int]] = []
    for agent in agents:
        through, remaining = merge_resolved(int(current[agent]), pending[agent])
        out[agent] = through
        rest.extend((agent, a, b) for a, b in remaining)
    conn.execute(
        "UPDATE agent_receipts r SET through = u.through, updated_at = %s "
        "FROM unnest(%s::text[], %s::bigint[]) AS u(agent_id, through) "
        "WHERE r.agent_id = u.agent_id AND r.through <> u.through",
        (now, agents, [out[a] for a in agents]),
    )
    conn.execute("DELETE FROM agent_resolved WHERE agent_id = ANY(%s)", (agents,))
    if rest:
        conn.execute(
            "INSERT INTO agent_resolved (agent_id, first_seq, last_seq) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[])",
            ([r[0] for r in rest], [r[1] for r in rest], [r[2] for r in rest]),
        )
    return out


def insert_dead_letters(conn: psycopg.Connection[Any], rows: Sequence[DeadLetterRow]) -> None:
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


def record_suppressed(conn: psycopg.Connection[Any], rows: Sequence[SuppressedRow], *, now: datetime) -> None:
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


def prune_dead_letters(conn: psycopg.Connection[Any], *, before: datetime, limit: int = 10_000) -> int:
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


def record_gaps(conn: psycopg.Connection[Any], rows: Sequence[GapRow]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO agent_gaps (agent_id, org_id, first_seq, last_seq) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(g.agent_id, g.org_id, g.first_seq, g.last_seq) for g in rows],
        )


def touch_agents(conn: psycopg.Connection[Any], seen: Mapping[str, datetime]) -> None:
    """``last_seen_at`` moves forward only (workers may commit out of order)."""
    if not seen:
        return
    agents = sorted(seen)
    conn.execute(
        "UPDATE agents a SET last_seen_at = greatest(a.last_seen_at, u.seen) "
        "FROM unnest(%s::text[], %s::timestamptz[]) AS u(agent_id, seen) WHERE a.agent_id = u.agent_id",
        (agents, [seen[a] for a in agents]),
    )


def upsert_devices(conn: psycopg.Connection[Any], rows: Sequence[DeviceRow]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO devices (device_id, org_id, agent_id, profile, name, manufacturer, model, serial, firmware, "
            "battery_pct, last_seen_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id) DO UPDATE SET agent_id = excluded.agent_id, org_id = excluded.org_id, "
            "profile = coalesce(excluded.profile, devices.profile), name = coalesce(excluded.name, devices.name), "
            "manufacturer = coalesce(excluded.manufacturer, devices.manufacturer), "
            "model = coalesce(excluded.model, devices.model), serial = coalesce(excluded.serial, devices.serial), "
            "firmware = coalesce(excluded.firmware, devices.firmware), "
            "battery_pct = coalesce(excluded.battery_pct, devices.battery_pct), "
            "last_seen_at = greatest(devices.last_seen_at, excluded.last_seen_at)",
            [
                (
                    d.device_id,
                    d.org_id,
                    d.agent_id,
                    d.profile,
                    d.name,
                    d.manufacturer,
                    d.model,
                    d.serial,
                    d.firmware,
                    d.battery_pct,
                    d.last_seen_at,
                )
                for d in rows
            ],
        )


def synchronous_commit(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW synchronous_commit").fetchone()
    return str(row[0]) if row else ""
