"""Follow newly stored readings by ingest watermark, without ever skipping a late commit.

A watermark ``w`` means: every reading stored by a transaction with id below ``w`` has been
consumed. :func:`readings_since` returns readings with ``w <= ingest_xid < horizon``, where the
horizon is the current snapshot's ``xmin``: every transaction below it has finished, so no row can
still appear there later. A long-running writer holds the horizon back (readings wait) but is never
skipped. Rows of one transaction are never split across two pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

__all__ = ["FeedPage", "FeedReading", "current_horizon", "page_query", "readings_since"]

_SELECT: Final = (
    "SELECT ingest_xid::text::bigint, time, org_id, patient_id, agent_id, device_id, metric, value, seq, flags "
    "FROM readings "
)


@dataclass(frozen=True, slots=True)
class FeedReading:
    xid: int
    time: datetime
    org_id: str
    patient_id: str
    agent_id: str
    device_id: str
    metric: str
    value: float
    seq: int
    flags: list[str]


@dataclass(frozen=True, slots=True)
class FeedPage:
    readings: list[FeedReading]
    watermark: int  # pass back as ``after`` next time


def current_horizon(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
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
    page = [FeedReading(*r) for r in rows]
    if len(page) <= limit:
        return FeedPage(page, horizon)
    # Cut at a transaction boundary: the last transaction may continue beyond the page.
    last = page[-1].xid
    complete = [r for r in page if r.xid < last]
    if complete:
        return FeedPage(complete, last)
    whole = conn.execute(_SELECT + "WHERE ingest_xid = %s::text::xid8", (str(last),)).fetchall()
    return FeedPage([FeedReading(*r) for r in whole], last + 1)
