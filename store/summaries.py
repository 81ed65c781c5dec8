"""The clinician panel's summaries of ``readings``, kept by following its transaction watermark:
the newest value of each metric per patient (migration 0027: ``latest_readings``) and the UTC days
on which a patient has readings, with the earliest reading of each (migration 0028:
``reading_days``, for adherence).

:func:`advance` counts the readings committed since the last call, exactly once each (the
watermark moves in the same transaction as the upserts), and runs in one process at a time (a
transaction-scoped advisory lock; a caller that finds it taken returns at once). The alert engine
calls it after each batch it evaluates and the panel before it reads. :func:`latest` adds the
readings above the watermark (committed, not yet counted) in the same statement, so it is exact
even while the watermark waits (it cannot pass a transaction still running anywhere in the
cluster); advancing only keeps that tail short. Both tables move in one statement, so they always
count the same readings. Ingest's insert is untouched: no ingest
transaction ever waits on a summary row.

:func:`rebuild` recomputes the table from scratch (a bulk load that bypasses ingest).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from rpm_core.metrics import METRIC_NAMES
from store.readings import LatestValue

__all__ = ["adherence", "advance", "latest", "rebuild"]

_LOCK_KEY: Final = 0x5649_4749_4C53_554D  # "VIGILSUM": one advancer at a time

_UPSERTS: Final = (
    "newest AS (INSERT INTO latest_readings AS l (org_id, patient_id, metric, time, value, device_id) "
    "  SELECT DISTINCT ON (org_id, patient_id, metric) org_id, patient_id, metric, time, value, device_id "
    "  FROM new ORDER BY org_id, patient_id, metric, time DESC, device_id "
    "  ON CONFLICT (org_id, patient_id, metric) DO UPDATE SET time = excluded.time, value = excluded.value, "
    "  device_id = excluded.device_id WHERE excluded.time > l.time), "
    "days AS (INSERT INTO reading_days AS d (org_id, patient_id, day, first_at) "
    "  SELECT org_id, patient_id, (time AT TIME ZONE 'UTC')::date, min(time) FROM new GROUP BY 1, 2, 3 "
    "  ON CONFLICT (org_id, patient_id, day) DO UPDATE SET first_at = excluded.first_at "
    "  WHERE excluded.first_at < d.first_at) "
)

# The bounds go into the text as literals (``{lo}``, ``{hi}``), read by a statement before: with
# them in a CTE the planner guessed a tenth of the table, which at 10 million readings put the
# statement's cost above ``jit_above_cost``, and every advance (every panel request, every batch of
# the alert engine) spent half a second compiling it. Reading ``hi`` first is as safe as reading it
# here: every transaction below it had finished then, so the next statement sees all their rows.
_ADVANCE: Final = (
    "WITH new AS (SELECT r.time, r.org_id, r.patient_id, r.metric, r.value, r.device_id FROM readings r "  # noqa: S608
    "  WHERE r.ingest_xid >= {lo} AND r.ingest_xid < {hi}), "
    + _UPSERTS
    + ", moved AS (INSERT INTO summary_watermark (xid) VALUES ({hi}) "
    "  ON CONFLICT (singleton) DO UPDATE SET xid = excluded.xid) "
    "SELECT count(*) FROM new"
)


def _xid8(value: int) -> sql.Composable:
    return sql.SQL("{}::xid8").format(sql.Literal(str(value)))


def advance(conn: psycopg.Connection[Any]) -> int | None:
    """Summarise the readings committed since the last call; how many, or None when another
    process is advancing (its result is then a moment away). Runs in the caller's transaction
    (or its own, on an autocommit connection); the caller commits."""
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()
        if locked is None or not locked[0]:
            return None
        # A missing watermark row (an emptied test database) is watermark 0: everything is summarised.
        bounds = conn.execute(
            "SELECT coalesce((SELECT xid FROM summary_watermark), '0'::xid8)::text, vigil_horizon()::text"
        ).fetchone()
        if bounds is None:  # pragma: no cover - a SELECT without FROM returns its row
            return 0
        lo, hi = int(bounds[0]), int(bounds[1])
        if hi <= lo:
            return 0
        row = conn.execute(sql.SQL(_ADVANCE).format(lo=_xid8(lo), hi=_xid8(hi))).fetchone()
    return int(row[0]) if row is not None else 0


def rebuild(conn: psycopg.Connection[Any]) -> None:
    """Recompute the table from every reading of a finished transaction, and move the
    watermark there, in the caller's transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    conn.execute(
        "INSERT INTO summary_watermark (xid) VALUES (vigil_horizon()) "
        "ON CONFLICT (singleton) DO UPDATE SET xid = excluded.xid"
    )
    conn.execute("DELETE FROM latest_readings")
    conn.execute("DELETE FROM reading_days")
    conn.execute(
        "WITH new AS (SELECT time, org_id, patient_id, metric, value, device_id FROM readings "  # noqa: S608 - constant text
        "  WHERE ingest_xid < (SELECT xid FROM summary_watermark)), " + _UPSERTS + "SELECT 1"
    )


# Every read below is the summaries and, added to them, the readings of the watermark read just
# before (``_mark``) and above it, which no advance had counted then (the readings_ingest_xid index
# finds them). The watermark may move between the two statements; the rows it then passes are in
# both parts, which changes neither a newest value nor a set of days, and none is in neither: the
# answer is exact whenever the summaries last moved, and only its cost depends on how recently.
# The watermark goes into the text as a literal, not a parameter or a subquery: the planner then
# sees that the tail is short (with a subquery it planned a parallel scan of the index, whose two
# workers cost 20 ms of a request; a prepared statement's generic plan could do the same).


def _mark(conn: psycopg.Connection[Any]) -> sql.Composable:
    row = conn.execute("SELECT coalesce((SELECT xid FROM summary_watermark), '0'::xid8)::text").fetchone()
    return _xid8(int(row[0]) if row is not None else 0)


def latest(conn: psycopg.Connection[Any], *, org: str, patients: Sequence[str]) -> list[LatestValue]:
    """The newest value of every metric of each of ``patients``, ordered by patient and metric."""
    query = sql.SQL(
        "WITH c AS ("
        "  SELECT patient_id, metric, time, value, device_id FROM latest_readings "
        "  WHERE org_id = %(org)s AND patient_id = ANY(%(patients)s::text[]) "
        "  UNION ALL SELECT r.patient_id, r.metric, r.time, r.value, r.device_id FROM readings r "
        "  WHERE r.ingest_xid >= {mark} AND r.org_id = %(org)s AND r.patient_id = ANY(%(patients)s::text[])) "
        "SELECT DISTINCT ON (patient_id, metric) patient_id, metric, time, value, device_id FROM c "
        "WHERE metric = ANY(%(metrics)s::text[]) ORDER BY patient_id, metric, time DESC, device_id"
    ).format(mark=_mark(conn))
    rows = conn.execute(query, {"org": org, "patients": list(patients), "metrics": sorted(METRIC_NAMES)})
    return [LatestValue(r[0], r[1], r[2], float(r[3]), r[4]) for r in rows]


def adherence(
    conn: psycopg.Connection[Any], *, org: str, patients: Sequence[str], now: datetime, days: int = 30
) -> dict[str, int]:
    """Patient -> how many UTC days, of the last ``days`` (today and the ``days - 1`` before it),
    hold a reading measured before ``now`` (patients without one are left out)."""
    today = now.astimezone(UTC).date()
    since = today - timedelta(days=days - 1)
    query = sql.SQL(
        "WITH c AS ("
        "  SELECT patient_id, day, first_at FROM reading_days "
        "  WHERE org_id = %(org)s AND patient_id = ANY(%(patients)s::text[]) AND day BETWEEN %(since)s AND %(today)s "
        "  UNION ALL SELECT r.patient_id, (r.time AT TIME ZONE 'UTC')::date, r.time FROM readings r "
        "  WHERE r.ingest_xid >= {mark} AND r.org_id = %(org)s AND r.patient_id = ANY(%(patients)s::text[]) "
        "  AND r.time >= %(start)s) "
        "SELECT patient_id, count(DISTINCT day) FROM c "
        "WHERE first_at < %(now)s AND day BETWEEN %(since)s AND %(today)s GROUP BY 1"
    ).format(mark=_mark(conn))
    rows = conn.execute(
        query,
        {
            "org": org,
            "patients": list(patients),
            "since": since,
            "today": today,
            "start": datetime(since.year, since.month, since.day, tzinfo=UTC),
            "now": now,
        },
    )
    return {str(r[0]): int(r[1]) for r in rows}
