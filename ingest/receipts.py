"""Receipt semantics: how far an agent's readings are resolved, so that a receipt may empty its outbox.

A reading is *resolved* when it is committed or will never be accepted (a dead letter, a declared
gap). Per agent the server keeps ``through``, the highest sequence up to which every reading is
resolved, and the resolved ranges above a hole (``store.receipts``). :func:`merge_resolved` is the
pure core: it absorbs new ranges and advances ``through`` over every range that now touches it,
never backwards. :func:`advance_receipts` runs it inside the batch's transaction over the locked
rows, so concurrent workers handling the same agent serialise instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from store import receipts
from store.connection import Connection

__all__ = ["advance_receipts", "merge_resolved"]


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
    conn: Connection, resolved: Mapping[str, tuple[str, Sequence[tuple[int, int]]]], *, now: datetime
) -> dict[str, int]:
    """Add resolved ranges per agent (``agent -> (org, ranges)``); return every such agent's ``through``."""
    if not resolved:
        return {}
    current, stored = receipts.lock_receipts(conn, {agent: org for agent, (org, _) in resolved.items()})
    out: dict[str, int] = {}
    rest: dict[str, list[tuple[int, int]]] = {}
    for agent in sorted(resolved):
        out[agent], rest[agent] = merge_resolved(current[agent], [*resolved[agent][1], *stored[agent]])
    receipts.save_receipts(conn, out, rest, now=now)
    return out
