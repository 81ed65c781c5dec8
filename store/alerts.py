"""The alerts aggregate: alerts, their event history, escalation actions and escalation policies.

Every state change writes an ``alert_events`` row in the same statement batch, so the history is
complete by construction. Functions run inside the caller's transaction; the unique index
``alerts_one_open_per_rule`` enforces one unresolved alert per patient and rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.connection import Connection

__all__ = [
    "ActionRow",
    "AlertEventRow",
    "AlertRow",
    "NewAlert",
    "Trigger",
    "acknowledge_alert",
    "add_event",
    "alert_actions",
    "alert_events",
    "apply_trigger",
    "assign_alert",
    "cancel_due_actions",
    "due_escalations",
    "events_of_type",
    "get_alert",
    "get_policy",
    "insert_alert",
    "list_alerts",
    "mark_action_done",
    "mark_cleared",
    "put_policy",
    "record_action",
    "resolve_alert",
    "set_escalation",
    "snooze_alert",
    "unresolved_alerts",
]

_ALERT_COLUMNS: Final = (
    "alert_id, org_id, patient_id, rule, kind, metric, severity, state, summary, evidence, detail, opened_at, "
    "updated_at, last_triggered_at, cleared_since, assignee, snoozed_until, acknowledged_at, acknowledged_by, "
    "resolved_at, resolved_by, resolution, resolution_note, esc_severity, esc_round, esc_started_at, esc_step, "
    "esc_next_at, unconfirmed"
)
_SELECT: Final = f"SELECT {_ALERT_COLUMNS} FROM alerts "  # noqa: S608 - constant column list


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: int
    org_id: str
    patient_id: str
    rule: str
    kind: str
    metric: str | None
    severity: str
    state: str
    summary: str
    evidence: list[Any]
    detail: dict[str, Any]
    opened_at: datetime
    updated_at: datetime
    last_triggered_at: datetime
    cleared_since: datetime | None
    assignee: str | None
    snoozed_until: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    resolution_note: str | None
    esc_severity: str | None
    esc_round: int
    esc_started_at: datetime | None
    esc_step: int
    esc_next_at: datetime | None
    unconfirmed: bool = False


@dataclass(frozen=True, slots=True)
class AlertEventRow:
    event_id: int
    alert_id: int
    at: datetime
    type: str
    actor: str
    note: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ActionRow:
    action_id: int
    alert_id: int
    org_id: str
    patient_id: str
    round: int
    step: int
    action: str
    severity: str
    due_at: datetime
    status: str
    done_at: datetime | None
    params: dict[str, Any]
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewAlert:
    org_id: str
    patient_id: str
    rule: str
    kind: str
    metric: str | None
    severity: str
    summary: str
    evidence: list[Any]
    detail: dict[str, Any]
    opened_at: datetime
    esc_next_at: datetime | None  # the first escalation step's due time (None: nothing to do)
    unconfirmed: bool = False  # opened on readings awaiting a confirming repeat


@dataclass(frozen=True, slots=True)
class Trigger:
    """A re-trigger of an unresolved alert (see alerts.lifecycle.Retrigger)."""

    alert_id: int
    org_id: str
    at: datetime
    severity: str
    previous_severity: str
    summary: str
    evidence: list[Any]
    detail: dict[str, Any]
    update_evidence: bool
    raised: bool
    reopened: bool
    unsnoozed: bool
    was_cleared: bool
    esc_next_at: datetime | None = None  # when the walk restarts: the new walk's first due time
    data: dict[str, Any] = field(default_factory=dict)
    confirms: bool = False  # an unconfirmed alert confirmed by a repeat: its severity's walk starts

    @property
    def restart_walk(self) -> bool:
        return self.raised or self.confirms


def add_event(
    conn: Connection,
    alert_id: int,
    org_id: str,
    at: datetime,
    type_: str,
    actor: str,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO alert_events (alert_id, org_id, at, type, actor, note, data) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (alert_id, org_id, at, type_, actor, note, Jsonb(data or {})),
    )


def insert_alert(conn: Connection, a: NewAlert, *, actor: str = "engine") -> int:
    row = conn.execute(
        "INSERT INTO alerts (org_id, patient_id, rule, kind, metric, severity, summary, evidence, detail, opened_at, "
        "updated_at, last_triggered_at, esc_severity, esc_round, esc_started_at, esc_step, esc_next_at, unconfirmed) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, 0, %s, %s) RETURNING alert_id",
        (
            a.org_id,
            a.patient_id,
            a.rule,
            a.kind,
            a.metric,
            a.severity,
            a.summary,
            Jsonb(a.evidence),
            Jsonb(a.detail),
            a.opened_at,
            a.opened_at,
            a.opened_at,
            a.severity,
            a.opened_at,
            a.esc_next_at,
            a.unconfirmed,
        ),
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("insert returned nothing")
    alert_id = int(row[0])
    opened: dict[str, Any] = {"severity": a.severity, "rule": a.rule}
    if a.unconfirmed:
        opened["unconfirmed"] = True
    add_event(conn, alert_id, a.org_id, a.opened_at, "opened", actor, data=opened)
    return alert_id


def apply_trigger(conn: Connection, t: Trigger, *, actor: str = "engine") -> None:
    conn.execute(
        "UPDATE alerts SET last_triggered_at = %(at)s, updated_at = %(at)s, cleared_since = NULL, "
        "severity = %(severity)s, "
        "summary = CASE WHEN %(upd)s THEN %(summary)s ELSE summary END, "
        "evidence = CASE WHEN %(upd)s THEN %(evidence)s ELSE evidence END, "
        "detail = CASE WHEN %(upd)s THEN %(detail)s ELSE detail END, "
        "state = CASE WHEN %(reopened)s THEN 'open' ELSE state END, "
        "snoozed_until = CASE WHEN %(unsnoozed)s THEN NULL ELSE snoozed_until END, "
        "unconfirmed = CASE WHEN %(confirms)s THEN false ELSE unconfirmed END, "
        "esc_severity = CASE WHEN %(restart)s THEN %(severity)s ELSE esc_severity END, "
        "esc_round = CASE WHEN %(restart)s THEN esc_round + 1 ELSE esc_round END, "
        "esc_started_at = CASE WHEN %(restart)s THEN %(at)s ELSE esc_started_at END, "
        "esc_step = CASE WHEN %(restart)s THEN 0 ELSE esc_step END, "
        "esc_next_at = CASE WHEN %(restart)s THEN %(next)s ELSE esc_next_at END "
        "WHERE alert_id = %(id)s",
        {
            "at": t.at,
            "severity": t.severity,
            "upd": t.update_evidence,
            "summary": t.summary,
            "evidence": Jsonb(t.evidence),
            "detail": Jsonb(t.detail),
            "reopened": t.reopened,
            "unsnoozed": t.unsnoozed,
            "raised": t.raised,
            "confirms": t.confirms,
            "restart": t.restart_walk,
            "next": t.esc_next_at,
            "id": t.alert_id,
        },
    )
    change = {"from": t.previous_severity, "to": t.severity, **t.data}
    if t.confirms:
        add_event(conn, t.alert_id, t.org_id, t.at, "confirmed", actor, data=change)
    if t.raised:
        add_event(conn, t.alert_id, t.org_id, t.at, "severity_raised", actor, data=change)
    if t.reopened:
        add_event(conn, t.alert_id, t.org_id, t.at, "reopened", actor, data=change)
    if t.unsnoozed:
        add_event(conn, t.alert_id, t.org_id, t.at, "unsnoozed", actor, data=change)
    if t.was_cleared and not t.raised and not t.confirms:
        add_event(conn, t.alert_id, t.org_id, t.at, "retriggered", actor, data=change)


def mark_cleared(conn: Connection, alert_id: int, org_id: str, since: datetime, *, actor: str = "engine") -> None:
    cur = conn.execute(
        "UPDATE alerts SET cleared_since = %s, updated_at = %s WHERE alert_id = %s AND cleared_since IS NULL",
        (since, since, alert_id),
    )
    if cur.rowcount:
        add_event(conn, alert_id, org_id, since, "cleared", actor)


def cancel_due_actions(conn: Connection, alert_id: int, at: datetime) -> int:
    cur = conn.execute(
        "UPDATE alert_actions SET status = 'canceled', done_at = %s WHERE alert_id = %s AND status = 'due'",
        (at, alert_id),
    )
    return cur.rowcount


def get_alert(conn: Connection, alert_id: int, *, for_update: bool = False) -> AlertRow | None:
    query = _SELECT + "WHERE alert_id = %s" + (" FOR UPDATE" if for_update else "")
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query, (alert_id,)).fetchone()


def unresolved_alerts(conn: Connection, patient_ids: Sequence[str], *, for_update: bool = True) -> list[AlertRow]:
    query = _SELECT + "WHERE patient_id = ANY(%s) AND state <> 'resolved' ORDER BY alert_id"
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query + (" FOR UPDATE" if for_update else ""), (list(patient_ids),)).fetchall()


def list_alerts(
    conn: Connection,
    *,
    org_id: str | None = None,
    patient_id: str | None = None,
    states: Sequence[str] | None = None,
    limit: int = 100,
) -> list[AlertRow]:
    query = (
        _SELECT + "WHERE (%(org)s::text IS NULL OR org_id = %(org)s) "
        "AND (%(patient)s::text IS NULL OR patient_id = %(patient)s) "
        "AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s)) "
        "ORDER BY opened_at DESC, alert_id DESC LIMIT %(limit)s"
    )
    params = {"org": org_id, "patient": patient_id, "states": None if states is None else list(states), "limit": limit}
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query, params).fetchall()


def alert_events(conn: Connection, alert_id: int) -> list[AlertEventRow]:
    with conn.cursor(row_factory=class_row(AlertEventRow)) as cur:
        return cur.execute(
            "SELECT event_id, alert_id, at, type, actor, note, data FROM alert_events WHERE alert_id = %s "
            "ORDER BY event_id",
            (alert_id,),
        ).fetchall()


def events_of_type(conn: Connection, alert_ids: Sequence[int], type_: str) -> dict[int, AlertEventRow]:
    """The latest event of ``type_`` of each alert that has one."""
    with conn.cursor(row_factory=class_row(AlertEventRow)) as cur:
        rows = cur.execute(
            "SELECT DISTINCT ON (alert_id) event_id, alert_id, at, type, actor, note, data FROM alert_events "
            "WHERE alert_id = ANY(%s) AND type = %s ORDER BY alert_id, event_id DESC",
            (list(alert_ids), type_),
        ).fetchall()
    return {r.alert_id: r for r in rows}


def resolve_alert(
    conn: Connection,
    alert_id: int,
    org_id: str,
    at: datetime,
    *,
    by: str,
    resolution: str,
    note: str | None,
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = %s, resolved_by = %s, resolution = %s, "
        "resolution_note = %s, updated_at = %s, esc_next_at = NULL WHERE alert_id = %s",
        (at, by, resolution, note, at, alert_id),
    )
    cancel_due_actions(conn, alert_id, at)
    add_event(conn, alert_id, org_id, at, "auto_resolved" if resolution == "auto" else "resolved", by, note, data)


def acknowledge_alert(
    conn: Connection, alert_id: int, org_id: str, at: datetime, *, by: str, note: str | None, via: str | None = None
) -> None:
    conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_at = %s, acknowledged_by = %s, updated_at = %s, "
        "esc_next_at = NULL WHERE alert_id = %s",
        (at, by, at, alert_id),
    )
    canceled = cancel_due_actions(conn, alert_id, at)
    data: dict[str, Any] = {"canceled_actions": canceled}
    if via is not None:
        data["via"] = via
    add_event(conn, alert_id, org_id, at, "acknowledged", by, note, data)


def assign_alert(conn: Connection, a: AlertRow, at: datetime, *, by: str, assignee: str | None) -> None:
    conn.execute("UPDATE alerts SET assignee = %s, updated_at = %s WHERE alert_id = %s", (assignee, at, a.alert_id))
    add_event(conn, a.alert_id, a.org_id, at, "assigned", by, data={"assignee": assignee, "previous": a.assignee})


def snooze_alert(
    conn: Connection, alert_id: int, org_id: str, at: datetime, *, by: str, until: datetime, note: str | None
) -> None:
    conn.execute("UPDATE alerts SET snoozed_until = %s, updated_at = %s WHERE alert_id = %s", (until, at, alert_id))
    add_event(conn, alert_id, org_id, at, "snoozed", by, note, {"until": until.isoformat()})


# -- escalation ------------------------------------------------------------------------------------


def due_escalations(conn: Connection, now: datetime, *, limit: int = 100) -> list[AlertRow]:
    """Open, unsnoozed alerts whose next escalation step is due; locked, skipping rows others hold."""
    query = (
        _SELECT + "WHERE esc_next_at IS NOT NULL AND esc_next_at <= %s AND state = 'open' "
        "AND (snoozed_until IS NULL OR snoozed_until <= %s) ORDER BY esc_next_at LIMIT %s FOR UPDATE SKIP LOCKED"
    )
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(query, (now, now, limit)).fetchall()


def record_action(
    conn: Connection, a: AlertRow, *, step: int, action: str, due_at: datetime, params: dict[str, Any]
) -> int | None:
    """Record an escalation action as due; None when this (alert, round, step) is already recorded."""
    row = conn.execute(
        "INSERT INTO alert_actions (alert_id, org_id, patient_id, round, step, action, severity, due_at, params) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (alert_id, round, step) DO NOTHING "
        "RETURNING action_id",
        (a.alert_id, a.org_id, a.patient_id, a.esc_round, step, action, a.esc_severity, due_at, Jsonb(params)),
    ).fetchone()
    if row is None:
        return None
    add_event(conn, a.alert_id, a.org_id, due_at, "escalation", "engine", data={"action": action, "step": step})
    return int(row[0])


def mark_action_done(conn: Connection, action_id: int, at: datetime, result: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE alert_actions SET status = 'done', done_at = %s, result = %s WHERE action_id = %s AND status = 'due'",
        (at, Jsonb(result), action_id),
    )


def set_escalation(conn: Connection, alert_id: int, *, step: int, next_at: datetime | None) -> None:
    conn.execute("UPDATE alerts SET esc_step = %s, esc_next_at = %s WHERE alert_id = %s", (step, next_at, alert_id))


def alert_actions(conn: Connection, alert_id: int) -> list[ActionRow]:
    with conn.cursor(row_factory=class_row(ActionRow)) as cur:
        return cur.execute(
            "SELECT action_id, alert_id, org_id, patient_id, round, step, action, severity, due_at, status, done_at, "
            "params, result FROM alert_actions WHERE alert_id = %s ORDER BY action_id",
            (alert_id,),
        ).fetchall()


def get_policy(conn: Connection, org_id: str) -> tuple[int, dict[str, Any]] | None:
    row = conn.execute("SELECT version, policy FROM escalation_policies WHERE org_id = %s", (org_id,)).fetchone()
    return None if row is None else (int(row[0]), dict(row[1]))


def put_policy(conn: Connection, org_id: str, policy: dict[str, Any]) -> int:
    """Store an organisation's policy; returns its new version."""
    row = conn.execute(
        "INSERT INTO escalation_policies (org_id, policy) VALUES (%s, %s) ON CONFLICT (org_id) DO UPDATE "
        "SET policy = EXCLUDED.policy, version = escalation_policies.version + 1, updated_at = now() RETURNING version",
        (org_id, Jsonb(policy)),
    ).fetchone()
    if row is None:  # pragma: no cover - upsert returns the row
        raise RuntimeError("upsert returned nothing")
    return int(row[0])
