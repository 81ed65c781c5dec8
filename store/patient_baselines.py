"""Baselines a clinician accepted as a patient's own (migration 0062), and the numbers behind a
suggestion.

"This patient's normal sits beyond the population line" — a stable COPD patient at 92-93 % SpO2 —
recorded with who accepted it, when and why, per patient and rule key. One baseline is in force per
patient and rule; accepting a new one revokes the old (history stays). Functions run inside the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg.rows import class_row

from store.connection import Connection

__all__ = [
    "BaselineRow",
    "SuggestionCandidate",
    "accept_baseline",
    "baseline_history",
    "baselines_in_force",
    "revoke_baseline",
    "stable_alerts",
    "usual_value",
]

_COLUMNS: Final = (
    "baseline_id, org_id, patient_id, rule, value, reason, accepted_by, accepted_at, alert_id, revoked_by, "
    "revoked_at, revoke_reason"
)


@dataclass(frozen=True, slots=True)
class BaselineRow:
    baseline_id: int
    org_id: str
    patient_id: str
    rule: str
    value: float
    reason: str
    accepted_by: str
    accepted_at: datetime
    alert_id: int | None
    revoked_by: str | None
    revoked_at: datetime | None
    revoke_reason: str | None


def accept_baseline(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    rule: str,
    value: float,
    reason: str,
    by: str,
    at: datetime,
    alert_id: int | None = None,
) -> BaselineRow:
    """Record an accepted baseline; the one in force for the same rule (if any) is revoked."""
    revoke_baseline(conn, org_id, patient_id, rule, at, by=by, reason="superseded")
    with conn.cursor(row_factory=class_row(BaselineRow)) as cur:
        row = cur.execute(
            "INSERT INTO patient_baselines (org_id, patient_id, rule, value, reason, accepted_by, accepted_at, "  # noqa: S608 - constant column list
            f"alert_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (org_id, patient_id, rule, value, reason, by, at, alert_id),
        ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("insert returned nothing")
    return row


def revoke_baseline(
    conn: Connection, org_id: str, patient_id: str, rule: str, at: datetime, *, by: str, reason: str
) -> BaselineRow | None:
    """Revoke the baseline in force for the patient and rule; None when there is none."""
    with conn.cursor(row_factory=class_row(BaselineRow)) as cur:
        return cur.execute(
            "UPDATE patient_baselines SET revoked_by = %s, revoked_at = %s, revoke_reason = %s "  # noqa: S608 - constant column list
            "WHERE org_id = %s AND patient_id = %s AND rule = %s AND revoked_at IS NULL "
            f"RETURNING {_COLUMNS}",
            (by, at, reason, org_id, patient_id, rule),
        ).fetchone()


def baselines_in_force(conn: Connection, patient_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """patient -> rule -> accepted value, for the baselines in force (the alert engine, per page)."""
    rows = conn.execute(
        "SELECT patient_id, rule, value FROM patient_baselines WHERE patient_id = ANY(%s) AND revoked_at IS NULL",
        (list(patient_ids),),
    ).fetchall()
    out: dict[str, dict[str, float]] = {}
    for pid, rule, value in rows:
        out.setdefault(str(pid), {})[str(rule)] = float(value)
    return out


def baseline_history(conn: Connection, org_id: str, patient_id: str) -> list[BaselineRow]:
    """Every baseline of the patient, in force and revoked, oldest first."""
    with conn.cursor(row_factory=class_row(BaselineRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM patient_baselines WHERE org_id = %s AND patient_id = %s "  # noqa: S608 - constant column list
            "ORDER BY accepted_at, baseline_id",
            (org_id, patient_id),
        ).fetchall()


def usual_value(
    conn: Connection,
    org_id: str,
    patient_id: str,
    metric: str,
    start: datetime,
    end: datetime,
    quantile: float,
) -> tuple[float, int] | None:
    """The ``quantile`` of the patient's readings of ``metric`` in ``[start, end]`` and how many
    readings that is; None without readings."""
    row = conn.execute(
        "SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY value), count(*) FROM readings "
        "WHERE org_id = %s AND patient_id = %s AND metric = %s AND time >= %s AND time <= %s",
        (quantile, org_id, patient_id, metric, start, end),
    ).fetchone()
    if row is None or not row[1]:
        return None
    return float(row[0]), int(row[1])


@dataclass(frozen=True, slots=True)
class SuggestionCandidate:
    alert_id: int
    org_id: str
    patient_id: str
    rule: str
    metric: str | None
    opened_at: datetime


def stable_alerts(conn: Connection, patient_ids: Sequence[str], stable_since: datetime) -> list[SuggestionCandidate]:
    """Threshold alerts of the patients, unresolved and confirmed, open at one severity since
    ``stable_since`` (no raise restarted their walk since), still firing (not cleared), and not yet
    suggested as a baseline."""
    with conn.cursor(row_factory=class_row(SuggestionCandidate)) as cur:
        return cur.execute(
            "SELECT a.alert_id, a.org_id, a.patient_id, a.rule, a.metric, a.opened_at FROM alerts a "
            "WHERE a.patient_id = ANY(%s) AND a.state <> 'resolved' AND a.kind = 'threshold' AND NOT a.unconfirmed "
            "AND a.cleared_since IS NULL AND a.opened_at <= %s AND coalesce(a.esc_started_at, a.opened_at) <= %s "
            "AND NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.alert_id = a.alert_id "
            "AND e.type = 'baseline_suggested') ORDER BY a.alert_id",
            (list(patient_ids), stable_since, stable_since),
        ).fetchall()
