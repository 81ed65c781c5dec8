"""A patient's alert history for the clinician API: alerts newest first (keyset pages on
(opened_at, alert_id)), their events and escalation actions fetched for one page at a time, and
the alerts of a time window (the marks on a chart). Read-only; scoped by organisation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.rows import class_row

from store.alerts import _SELECT, ActionRow, AlertEventRow, AlertRow
from store.connection import Connection

__all__ = ["actions_of", "alerts_between", "events_of", "lock_policy", "patient_alerts"]


def patient_alerts(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    states: Sequence[str] | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[AlertRow]:
    query = (
        _SELECT + "WHERE org_id = %(org)s AND patient_id = %(patient)s "
        "AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s)) "
        "AND (%(t)s::timestamptz IS NULL OR (opened_at, alert_id) < (%(t)s, %(id)s)) "
        "ORDER BY opened_at DESC, alert_id DESC LIMIT %(limit)s"
    )
    params = {
        "org": org_id,
        "patient": patient_id,
        "states": None if states is None else list(states),
        "t": None if after is None else after[0],
        "id": None if after is None else after[1],
        "limit": limit,
    }
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query, params).fetchall()


def alerts_between(
    conn: Connection, *, org_id: str, patient_id: str, start: datetime, end: datetime, limit: int = 500
) -> list[AlertRow]:
    """Alerts that were open at some time in ``[start, end)``, oldest first."""
    query = (
        _SELECT + "WHERE org_id = %s AND patient_id = %s AND opened_at < %s "
        "AND (resolved_at IS NULL OR resolved_at >= %s) ORDER BY opened_at, alert_id LIMIT %s"
    )
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query, (org_id, patient_id, end, start, limit)).fetchall()


def events_of(conn: Connection, alert_ids: Sequence[int]) -> dict[int, list[AlertEventRow]]:
    out: dict[int, list[AlertEventRow]] = {a: [] for a in alert_ids}
    if not alert_ids:
        return out
    with conn.cursor(row_factory=class_row(AlertEventRow)) as cur:
        for e in cur.execute(
            "SELECT event_id, alert_id, at, type, actor, note, data FROM alert_events WHERE alert_id = ANY(%s) "
            "ORDER BY alert_id, event_id",
            (list(alert_ids),),
        ):
            out[e.alert_id].append(e)
    return out


def actions_of(conn: Connection, alert_ids: Sequence[int]) -> dict[int, list[ActionRow]]:
    out: dict[int, list[ActionRow]] = {a: [] for a in alert_ids}
    if not alert_ids:
        return out
    with conn.cursor(row_factory=class_row(ActionRow)) as cur:
        for x in cur.execute(
            "SELECT action_id, alert_id, org_id, patient_id, round, step, action, severity, due_at, status, done_at, "
            "params, result FROM alert_actions WHERE alert_id = ANY(%s) ORDER BY alert_id, action_id",
            (list(alert_ids),),
        ):
            out[x.alert_id].append(x)
    return out


def lock_policy(conn: Connection, org_id: str) -> None:
    """Serialise policy changes of one organisation until the transaction ends (read, check, write)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('vigil.policy:' || %s))", (org_id,))
