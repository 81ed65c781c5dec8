"""Follow newly stored readings by ingest watermark, without ever skipping a late commit.

A watermark ``w`` means: every reading stored by a transaction with id below ``w`` has been
consumed. :func:`readings_since` returns readings with ``w <= ingest_xid < horizon``, where the
horizon is the current snapshot's ``xmin``: every transaction below it has finished, so no row can
still appear there later. A long-running writer holds the horizon back (readings wait) but is never
skipped. Rows of one transaction are never split across two pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any, Final

import psycopg

from store.readings import READING_COLUMNS, ReadingRow

__all__ = ["FeedPage", "current_horizon", "page_query", "readings_since"]

_SELECT: Final = f"SELECT ingest_xid::text::bigint, {', '.join(READING_COLUMNS)} FROM readings "  # noqa: S608 - constant columns


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Whole transactions in commit-id order: ``(ingest_xid, the readings it stored)``."""

    transactions: list[tuple[int, list[ReadingRow]]]
    watermark: int  # pass back as ``after`` next time

    @property
    def readings(self) -> list[ReadingRow]:
        return [r for _, rows in self.transactions for r in rows]


def _page(rows: list[tuple[Any, ...]], watermark: int) -> FeedPage:
    return FeedPage(
        [(xid, [ReadingRow(*r[1:]) for r in tx]) for xid, tx in groupby(rows, key=itemgetter(0))], watermark
    )


def current_horizon(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT vigil_horizon()::text::bigint").fetchone()
    if row is None:  # pragma: no cover - a SELECT without FROM always returns one row
        raise RuntimeError("no snapshot")
    return int(row[0])


def page_query(after: int, horizon: int, limit: int) -> tuple[str, tuple[object, ...]]:
    """The SQL of one page (public for the TimescaleDB conformance test)."""
    return (
        _SELECT + "WHERE ingest_xid >= %s::text::xid8 AND ingest_xid < %s::text::xid8 ORDER BY ingest_xid LIMIT %s",
        (str(after), str(horizon), limit),
    )


def readings_since(conn: psycopg.Connection[Any], after: int, *, limit: int = 5000) -> FeedPage:
    """Readings committed at or after watermark ``after``, in transaction order."""
    if limit < 1:
        raise ValueError("limit must be positive")
    horizon = current_horizon(conn)
    if after >= horizon:
        return FeedPage([], after)
    rows = conn.execute(*page_query(after, horizon, limit + 1)).fetchall()
    if len(rows) <= limit:
        return _page(rows, horizon)
    # Cut at a transaction boundary: the last transaction may continue beyond the page.
    last = int(rows[-1][0])
    complete = [r for r in rows if r[0] < last]
    if complete:
        return _page(complete, last)
    whole = conn.execute(_SELECT + "WHERE ingest_xid = %s::text::xid8", (str(last),)).fetchall()
    return _page(whole, last + 1)
