"""An agent's sequence accounting: the receipt high-water mark, the resolved ranges above it, and
the gaps the agent declared.

Per agent, ``agent_receipts.through`` is the highest sequence up to which every reading is
resolved (committed, or never to be accepted), and ``agent_resolved`` holds the resolved ranges
above it, waiting for the hole below them to close. :func:`lock_receipts` locks the agents' rows in
agent-id order (``FOR UPDATE``) so concurrent workers handling the same agent serialise instead of
deadlocking, and returns what is stored; the caller (``ingest.receipts``) merges and hands the
outcome to :func:`save_receipts`. Everything runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from store.connection import Connection

__all__ = ["GapRow", "lock_receipts", "record_gaps", "save_receipts"]


@dataclass(frozen=True, slots=True)
class GapRow:
    agent_id: str
    org_id: str
    first_seq: int
    last_seq: int
    reason: str | None = None  # why the agent says (migration 0064); None when it gave no reason


def lock_receipts(conn: Connection, orgs: Mapping[str, str]) -> tuple[dict[str, int], dict[str, list[tuple[int, int]]]]:
    """Lock the receipt rows of the agents ``orgs`` names (``agent -> org``; made when missing) in
    agent-id order; return each agent's ``through`` and its stored resolved ranges above it."""
    agents = sorted(orgs)
    conn.execute(
        "INSERT INTO agent_receipts (agent_id, org_id) SELECT * FROM unnest(%s::text[], %s::text[]) "
        "ON CONFLICT (agent_id) DO NOTHING",
        (agents, [orgs[a] for a in agents]),
    )
    current = {
        str(agent): int(through)
        for agent, through in conn.execute(
            "SELECT agent_id, through FROM agent_receipts WHERE agent_id = ANY(%s) ORDER BY agent_id FOR UPDATE",
            (agents,),
        ).fetchall()
    }
    stored: dict[str, list[tuple[int, int]]] = {a: [] for a in agents}
    for agent, first, last in conn.execute(
        "SELECT agent_id, first_seq, last_seq FROM agent_resolved WHERE agent_id = ANY(%s)", (agents,)
    ):
        stored[agent].append((first, last))
    return current, stored


def save_receipts(
    conn: Connection, through: Mapping[str, int], remaining: Mapping[str, Sequence[tuple[int, int]]], *, now: datetime
) -> None:
    """Store each locked agent's new ``through`` and the resolved ranges still above it (replacing
    the stored ones)."""
    agents = sorted(through)
    conn.execute(
        "UPDATE agent_receipts r SET through = u.through, updated_at = %s "
        "FROM unnest(%s::text[], %s::bigint[]) AS u(agent_id, through) "
        "WHERE r.agent_id = u.agent_id AND r.through <> u.through",
        (now, agents, [through[a] for a in agents]),
    )
    conn.execute("DELETE FROM agent_resolved WHERE agent_id = ANY(%s)", (agents,))
    rest = [(a, first, last) for a in agents for first, last in remaining.get(a, ())]
    if rest:
        conn.execute(
            "INSERT INTO agent_resolved (agent_id, first_seq, last_seq) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[])",
            ([r[0] for r in rest], [r[1] for r in rest], [r[2] for r in rest]),
        )


def record_gaps(conn: Connection, rows: Sequence[GapRow]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO agent_gaps (agent_id, org_id, first_seq, last_seq, reason) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(g.agent_id, g.org_id, g.first_seq, g.last_seq, g.reason) for g in rows],
        )
