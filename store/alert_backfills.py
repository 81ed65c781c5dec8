"""Stored device history arriving: which patients' devices are uploading old readings (migration 0063).

The alert engine notes a patient here, in the transaction that consumed the readings, whenever
readings measured long before they arrived (a meter uploading weeks of memory) come through the
feed. The scheduled missing-data evaluation holds off for such a patient until the upload has
settled — the history it would judge is still arriving — but never longer than a bound counted from
the start of the upload; and it never judges a patient whose readings are stored but not consumed
yet (:func:`unconsumed_patients`: the note is written when they are). Times are the engine's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from store.connection import Connection

__all__ = ["Backfill", "backfills_of", "note_backfills", "unconsumed_patients"]


@dataclass(frozen=True, slots=True)
class Backfill:
    patient_id: str
    started_at: datetime  # when the current upload began
    seen_at: datetime  # when an old reading last arrived
    readings: int  # old readings seen in the current upload


def note_backfills(conn: Connection, seen: Mapping[str, tuple[str, int]], at: datetime, *, gap: timedelta) -> None:
    """Record old readings arriving at ``at``: ``seen`` maps patient -> (org, count). An upload whose
    last old reading is older than ``gap`` is over: a new one starts at ``at``."""
    if not seen:
        return
    pids = sorted(seen)
    conn.execute(
        "INSERT INTO alert_backfills AS b (patient_id, org_id, started_at, seen_at, readings) "
        "SELECT p, o, %(at)s, %(at)s, n FROM unnest(%(pids)s::text[], %(orgs)s::text[], %(counts)s::bigint[]) "
        "AS v(p, o, n) "
        "ON CONFLICT (patient_id) DO UPDATE SET "
        "started_at = CASE WHEN b.seen_at < %(over)s THEN EXCLUDED.started_at ELSE least(b.started_at, %(at)s) END, "
        "readings = CASE WHEN b.seen_at < %(over)s THEN EXCLUDED.readings ELSE b.readings + EXCLUDED.readings END, "
        "seen_at = greatest(b.seen_at, EXCLUDED.seen_at)",
        {
            "at": at,
            "pids": pids,
            "orgs": [seen[p][0] for p in pids],
            "counts": [seen[p][1] for p in pids],
            "over": at - gap,
        },
    )


def backfills_of(conn: Connection, patient_ids: Sequence[str]) -> dict[str, Backfill]:
    rows = conn.execute(
        "SELECT patient_id, started_at, seen_at, readings FROM alert_backfills WHERE patient_id = ANY(%s)",
        (list(patient_ids),),
    ).fetchall()
    return {str(r[0]): Backfill(str(r[0]), r[1], r[2], int(r[3])) for r in rows}


def unconsumed_patients(conn: Connection, patient_ids: Sequence[str], watermark: int) -> set[str]:
    """The patients with readings stored at or after the feed ``watermark``: committed (or still
    committing) but not yet consumed by the engine, so not yet noted as history arriving."""
    rows = conn.execute(
        "SELECT DISTINCT patient_id FROM readings WHERE ingest_xid >= %s::text::xid8 AND patient_id = ANY(%s)",
        (str(watermark), list(patient_ids)),
    ).fetchall()
    return {str(r[0]) for r in rows}
