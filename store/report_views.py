"""Read models for the reports the clinician API builds: CMS billing evidence (monitoring episodes,
reading days in the practice's time zone) and FHIR export (an agent's patient, readings in the
order that keeps one blood-pressure measurement's readings adjacent; devices are
``store.devices``'). Read-only; scoped by organisation.

Every row of ``readings`` was transmitted by a device through an edge agent (ingest stores only
agents' signed envelopes), so every reading counts as device-transmitted; Vigil has no manual
entry of readings today.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg.rows import class_row

from store.connection import Connection

__all__ = [
    "BillingEpisode",
    "ReadingFacts",
    "agent_patient",
    "billing_episodes",
    "reading_day_counts",
    "readings_page",
    "stream_readings",
]


@dataclass(frozen=True, slots=True)
class BillingEpisode:
    patient_id: str
    start_date: date
    end_date: date | None
    setup_at: datetime | None
    setup_by: str | None


@dataclass(frozen=True, slots=True)
class ReadingFacts:
    patient_id: str
    org_id: str
    agent_id: str
    device_id: str
    seq: int
    metric: str
    value: float
    measured_at: datetime
    received_at: datetime | None
    device_time: str | None
    flags: list[str]


def billing_episodes(conn: Connection, org_id: str, *, first: date, last: date) -> list[BillingEpisode]:
    """Episodes of the organisation that overlap ``[first, last]``, by patient (the newest per patient)."""
    with conn.cursor(row_factory=class_row(BillingEpisode)) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (patient_id) patient_id, start_date, end_date, setup_at, setup_by::text "
            "FROM monitoring_episodes WHERE org_id = %s AND start_date <= %s AND (end_date IS NULL OR end_date >= %s) "
            "ORDER BY patient_id, start_date DESC",
            (org_id, last, first),
        ).fetchall()


def reading_day_counts(
    conn: Connection, org_id: str, patient_ids: Sequence[str], *, zone: str, start: datetime, end: datetime
) -> dict[str, list[tuple[date, int]]]:
    """Per patient, (practice-calendar day, readings that day) for readings in ``[start, end)``."""
    out: dict[str, list[tuple[date, int]]] = {p: [] for p in patient_ids}
    if not patient_ids:
        return out
    for pid, day, n in conn.execute(
        "SELECT patient_id, (time AT TIME ZONE %s)::date AS day, count(*) FROM readings "
        "WHERE org_id = %s AND patient_id = ANY(%s) AND time >= %s AND time < %s GROUP BY 1, 2 ORDER BY 1, 2",
        (zone, org_id, list(patient_ids), start, end),
    ):
        out[pid].append((day, int(n)))
    return out


def agent_patient(conn: Connection, agent_id: str) -> tuple[str, str | None] | None:
    """(organisation, patient assigned now) of an agent, or None when there is no such agent."""
    row = conn.execute(
        "SELECT g.org_id, a.patient_id FROM agents g LEFT JOIN agent_assignments a "
        "ON a.agent_id = g.agent_id AND a.valid_to IS NULL WHERE g.agent_id = %s",
        (agent_id,),
    ).fetchone()
    return None if row is None else (str(row[0]), None if row[1] is None else str(row[1]))


_READING = (
    "SELECT patient_id, org_id, agent_id, device_id, seq, metric, value, time AS measured_at, received_at, "
    "device_time, flags FROM readings "
)


def readings_page(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    metrics: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, str, int] | None,
    limit: int,
) -> list[ReadingFacts]:
    """Readings in (measured time, agent, sequence) order from ``after`` (inclusive), at most ``limit``."""
    params: dict[str, Any] = {
        "org": org_id,
        "patient": patient_id,
        "metrics": None if metrics is None else list(metrics),
        "start": start,
        "end": end,
        "t": None if after is None else after[0],
        "a": None if after is None else after[1],
        "s": None if after is None else after[2],
        "limit": limit,
    }
    with conn.cursor(row_factory=class_row(ReadingFacts)) as cur:
        return cur.execute(
            _READING + "WHERE org_id = %(org)s AND patient_id = %(patient)s "
            "AND (%(metrics)s::text[] IS NULL OR metric = ANY(%(metrics)s)) "
            "AND (%(start)s::timestamptz IS NULL OR time >= %(start)s) "
            "AND (%(end)s::timestamptz IS NULL OR time < %(end)s) "
            "AND (%(t)s::timestamptz IS NULL OR (time, agent_id, seq) >= (%(t)s, %(a)s, %(s)s)) "
            "ORDER BY time, agent_id, seq LIMIT %(limit)s",
            params,
        ).fetchall()


def stream_readings(conn: Connection, *, org_id: str, patient_id: str, batch: int = 2000) -> Iterator[ReadingFacts]:
    """Every reading of the patient in (time, agent, sequence) order, from a server-side cursor
    (memory bounded by ``batch``). Runs inside the caller's transaction."""
    with conn.cursor(name="vigil_export", row_factory=class_row(ReadingFacts)) as cur:
        cur.itersize = batch
        cur.execute(
            _READING + "WHERE org_id = %s AND patient_id = %s ORDER BY time, agent_id, seq", (org_id, patient_id)
        )
        yield from cur
