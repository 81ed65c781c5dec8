"""Read models of the clinician API: the panel sorted by risk, the alert queue, a patient's page.

Lists are keyset-paginated on their sort key (never OFFSET, never a whole table): the panel on
(open alert severity, oldest unacknowledged alert, NEWS2, patient id), the queue on (severity, age,
alert id). Sparklines are computed for the patients asked for only, one index range scan per
(patient, metric) of ``readings_patient_metric_time`` (adherence and latest values come from
``store.summaries``). ``now`` is the
caller's clock. Every query is scoped by organisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from psycopg.rows import class_row

from store import summaries
from store.connection import Connection
from store.readings import BUCKET_ORIGIN

__all__ = [
    "MAX_KEY",
    "PanelRow",
    "PatientRow",
    "QueueFilter",
    "QueueRow",
    "RawPoint",
    "alert_queue",
    "database_flavor",
    "panel",
    "patient",
    "patient_teams",
    "raw_series",
    "roster",
    "sparklines",
]

# Sort-key stand-in for "none" (no unacknowledged alert, no NEWS2): after every real value.
MAX_KEY: Final = 9_223_372_036_854_775_807
_SEV_RANK: Final = (
    "CASE {col} WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
)


@dataclass(frozen=True, slots=True)
class PanelRow:
    patient_id: str
    display_name: str
    open_alerts: int
    max_severity: str | None
    oldest_unacknowledged_at: datetime | None
    news2: int | None
    key: tuple[int, int, int, str]  # the sort key, ascending (for the next page's cursor)


@dataclass(frozen=True, slots=True)
class PatientRow:
    patient_id: str
    org_id: str
    display_name: str
    mrn: str | None
    birth_date: date | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueueRow:
    alert_id: int
    patient_id: str
    display_name: str
    rule: str
    kind: str
    metric: str | None
    severity: str
    state: str
    summary: str
    opened_at: datetime
    updated_at: datetime
    assignee: str | None
    snoozed_until: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    esc_step: int
    sev_key: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFilter:
    states: tuple[str, ...] = ("open", "acknowledged")
    severities: tuple[str, ...] | None = None
    patient_id: str | None = None
    assignee: str | None = None
    include_snoozed: bool = True


@dataclass(frozen=True, slots=True)
class RawPoint:
    time: datetime
    value: float
    device_id: str
    flags: tuple[str, ...]


def database_flavor(conn: Connection) -> str:
    row = conn.execute("SELECT flavor FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return "postgres" if row is None else str(row[0])


def _panel_ids_sql(patient_only: bool) -> str:
    if patient_only:
        return "SELECT %(patient)s::text AS patient_id"
    return (
        "SELECT DISTINCT p.patient_id FROM care_team_members m JOIN care_team_patients p USING (team_id) "
        "WHERE m.user_id = %(user)s::uuid AND p.org_id = %(org)s"
    )


def panel(
    conn: Connection,
    *,
    org_id: str,
    user_id: str | None,
    patient_id: str | None = None,
    after: tuple[int, int, int, str] | None,
    limit: int,
) -> list[PanelRow]:
    """One page of the caller's panel (their care teams' patients, or only ``patient_id``), riskiest first."""
    sev = _SEV_RANK.format(col="a.severity")
    query = (
        f"WITH ids AS ({_panel_ids_sql(patient_id is not None)}), "  # noqa: S608 - constant fragments
        "risk AS (SELECT pt.patient_id, pt.display_name, count(a.alert_id) AS open_alerts, "
        f"  coalesce(max({sev}), 0) AS sev, min(a.opened_at) FILTER (WHERE a.state = 'open') AS oldest, "
        "  max((a.detail->>'score')::int) FILTER (WHERE a.kind = 'news2') AS news2 "
        "  FROM ids JOIN patients pt ON pt.patient_id = ids.patient_id AND pt.org_id = %(org)s "
        "  LEFT JOIN alerts a ON a.patient_id = pt.patient_id AND a.org_id = %(org)s AND a.state <> 'resolved' "
        "  GROUP BY 1, 2), "
        "keyed AS (SELECT *, -sev AS k1, "
        "  coalesce((extract(epoch FROM oldest) * 1000000)::bigint, %(max)s) AS k2, "
        "  coalesce(-news2, %(max)s) AS k3 FROM risk) "
        "SELECT patient_id, display_name, open_alerts, sev, oldest, news2, k1, k2, k3 FROM keyed "
        "WHERE %(a1)s::int IS NULL OR (k1, k2, k3, patient_id) > (%(a1)s, %(a2)s, %(a3)s, %(a4)s) "
        "ORDER BY k1, k2, k3, patient_id LIMIT %(limit)s"
    )
    params: dict[str, Any] = {
        "org": org_id,
        "user": user_id,
        "patient": patient_id,
        "max": MAX_KEY,
        "a1": None if after is None else after[0],
        "a2": None if after is None else after[1],
        "a3": None if after is None else after[2],
        "a4": None if after is None else after[3],
        "limit": limit,
    }
    names = {4: "critical", 3: "high", 2: "medium", 1: "low"}
    return [
        PanelRow(r[0], r[1], int(r[2]), names.get(int(r[3])), r[4], r[5], (int(r[6]), int(r[7]), int(r[8]), r[0]))
        for r in conn.execute(query, params)
    ]


def sparklines(
    conn: Connection, *, org_id: str, patient_ids: Sequence[str], now: datetime, days: int = 7, bucket_h: int = 6
) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
    """(patient, metric) -> [(bucket start, mean)] over the last ``days``, oldest first.

    Only the (patient, metric) pairs whose newest reading (``store.summaries.latest``, exact) is
    in the window are scanned: a patient measures a handful of the catalogue's metrics."""
    since = now - timedelta(days=days)
    pairs = [
        (v.patient_id, v.metric) for v in summaries.latest(conn, org=org_id, patients=patient_ids) if v.time >= since
    ]
    if not pairs:
        return {}
    rows = conn.execute(
        "SELECT pm.patient_id, pm.metric, s.b, s.v FROM unnest(%(patients)s::text[], %(metrics)s::text[]) "
        "AS pm(patient_id, metric) "
        "CROSS JOIN LATERAL (SELECT date_bin(%(bucket)s, time, %(origin)s) AS b, avg(value) AS v FROM readings "
        "  WHERE patient_id = pm.patient_id AND metric = pm.metric AND org_id = %(org)s "
        "  AND time >= %(since)s AND time < %(now)s GROUP BY 1) AS s ORDER BY 1, 2, 3",
        {
            "patients": [p for p, _ in pairs],
            "metrics": [m for _, m in pairs],
            "bucket": timedelta(hours=bucket_h),
            "origin": BUCKET_ORIGIN,
            "org": org_id,
            "since": since,
            "now": now,
        },
    ).fetchall()
    out: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    for pid, metric, b, v in rows:
        out.setdefault((pid, metric), []).append((b, float(v)))
    return out


def patient(conn: Connection, patient_id: str, org_id: str) -> PatientRow | None:
    with conn.cursor(row_factory=class_row(PatientRow)) as cur:
        return cur.execute(
            "SELECT patient_id, org_id, display_name, mrn, birth_date, created_at FROM patients "
            "WHERE patient_id = %s AND org_id = %s",
            (patient_id, org_id),
        ).fetchone()


def patient_teams(conn: Connection, patient_id: str, org_id: str) -> list[tuple[str, str]]:
    """(team id, name) of the care teams holding the patient."""
    rows = conn.execute(
        "SELECT t.team_id::text, t.name FROM care_team_patients p JOIN care_teams t USING (team_id) "
        "WHERE p.patient_id = %s AND p.org_id = %s ORDER BY t.name",
        (patient_id, org_id),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def roster(conn: Connection, org_id: str, *, after: str | None, limit: int) -> list[tuple[str, str]]:
    """(patient id, display name) of an organisation's patients, by id (admins' roster)."""
    rows = conn.execute(
        "SELECT patient_id, display_name FROM patients WHERE org_id = %s AND (%s::text IS NULL OR patient_id > %s) "
        "ORDER BY patient_id LIMIT %s",
        (org_id, after, after, limit),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def raw_series(
    conn: Connection, *, org_id: str, patient_id: str, metric: str, start: datetime, end: datetime, limit: int
) -> list[RawPoint]:
    """The readings of ``[start, end)`` in time order, at most ``limit``."""
    rows = conn.execute(
        "SELECT time, value, device_id, flags FROM readings WHERE org_id = %s AND patient_id = %s AND metric = %s "
        "AND time >= %s AND time < %s ORDER BY time LIMIT %s",
        (org_id, patient_id, metric, start, end, limit),
    ).fetchall()
    return [RawPoint(r[0], float(r[1]), r[2], tuple(r[3])) for r in rows]


def alert_queue(
    conn: Connection,
    *,
    org_id: str,
    user_id: str,
    now: datetime,
    where: QueueFilter,
    after: tuple[int, datetime, int] | None,
    limit: int,
) -> list[QueueRow]:
    """One page of the unresolved alerts of the caller's panel: worst severity first, then oldest."""
    sev = _SEV_RANK.format(col="a.severity")
    query = (
        "SELECT a.alert_id, a.patient_id, pt.display_name, a.rule, a.kind, a.metric, a.severity, a.state, a.summary, "  # noqa: S608
        "a.opened_at, a.updated_at, a.assignee, a.snoozed_until, a.acknowledged_at, a.acknowledged_by, a.esc_step, "
        f"-({sev}) AS sev_key FROM alerts a JOIN patients pt ON pt.patient_id = a.patient_id AND pt.org_id = a.org_id "
        f"WHERE a.org_id = %(org)s AND a.patient_id IN ({_panel_ids_sql(False)}) "
        "AND a.state = ANY(%(states)s) "
        "AND (%(sevs)s::text[] IS NULL OR a.severity = ANY(%(sevs)s)) "
        "AND (%(patient)s::text IS NULL OR a.patient_id = %(patient)s) "
        "AND (%(assignee)s::text IS NULL OR a.assignee = %(assignee)s) "
        "AND (%(snoozed)s OR a.snoozed_until IS NULL OR a.snoozed_until <= %(now)s) "
        f"AND (%(a1)s::int IS NULL OR (-({sev}), a.opened_at, a.alert_id) > (%(a1)s, %(a2)s, %(a3)s)) "
        f"ORDER BY -({sev}), a.opened_at, a.alert_id LIMIT %(limit)s"
    )
    params: dict[str, Any] = {
        "org": org_id,
        "user": user_id,
        "states": list(where.states),
        "sevs": None if where.severities is None else list(where.severities),
        "patient": where.patient_id,
        "assignee": where.assignee,
        "snoozed": where.include_snoozed,
        "now": now,
        "a1": None if after is None else after[0],
        "a2": None if after is None else after[1],
        "a3": None if after is None else after[2],
        "limit": limit,
    }
    with conn.cursor(row_factory=class_row(QueueRow)) as cur:
        return cur.execute(query, params).fetchall()
