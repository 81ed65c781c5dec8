"""``/api/v1/alerts``: the alert queue of the caller's panel, one alert with its history, the
clinician actions (acknowledge, assign, snooze, resolve; the lifecycle rules are alerts.service's),
and the live stream. Every call writes one audit row in the transaction of its work."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from alerts import service
from clinician_api.access import Resolved, guard
from clinician_api.audit import recorded
from clinician_api.auth.roles import STAFF_ROLES, Permission, Role
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Invalid
from clinician_api.pagination import Page
from clinician_api.security import Principal, require
from rpm_core.clock import ensure_utc
from store import alerts as alert_store
from store import clinician_views as views
from store import users
from store.alerts import AlertRow

__all__ = ["router"]

router = APIRouter(prefix="/alerts", tags=["alerts"])

Severity = Literal["low", "medium", "high", "critical"]
State = Literal["open", "acknowledged", "resolved"]
AlertReader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]
ReadAlert = Annotated[Resolved, Depends(guard("alert", "alert_id", Permission.ALERTS_READ))]
ActAlert = Annotated[Resolved, Depends(guard("alert", "alert_id", Permission.ALERTS_ACT))]
AssignAlert = Annotated[Resolved, Depends(guard("alert", "alert_id", Permission.ALERTS_ASSIGN))]


class AlertOut(BaseModel):
    alert_id: int
    patient_id: str
    rule: str
    kind: str
    metric: str | None
    severity: Severity
    state: State
    summary: str
    opened_at: datetime
    updated_at: datetime
    assignee: str | None
    snoozed_until: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    esc_step: int


class QueueItem(AlertOut):
    display_name: str


class EventOut(BaseModel):
    event_id: int
    at: datetime
    type: str
    actor: str
    note: str | None
    data: dict[str, Any]


class ActionOut(BaseModel):
    action_id: int
    round: int
    step: int
    action: str
    severity: str
    due_at: datetime
    status: str
    done_at: datetime | None


class AlertDetail(AlertOut):
    evidence: list[Any]
    detail: dict[str, Any]
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    resolution_note: str | None
    events: list[EventOut]
    actions: list[ActionOut]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AckIn(Strict):
    note: str | None = Field(default=None, max_length=2000)


class AssignIn(Strict):
    assignee: str | None = Field(description="A staff user's id, or null to unassign.", max_length=36)


class SnoozeIn(Strict):
    minutes: int = Field(ge=1, le=7 * 24 * 60)
    note: str | None = Field(default=None, max_length=2000)


class ResolveIn(Strict):
    note: str = Field(min_length=1, max_length=2000)


def alert_fields(a: AlertRow) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "patient_id": a.patient_id,
        "rule": a.rule,
        "kind": a.kind,
        "metric": a.metric,
        "severity": a.severity,
        "state": a.state,
        "summary": a.summary,
        "opened_at": a.opened_at,
        "updated_at": a.updated_at,
        "assignee": a.assignee,
        "snoozed_until": a.snoozed_until,
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by,
        "esc_step": a.esc_step,
    }


@router.get("", response_model=Page[QueueItem], summary="The alert queue of my panel: worst first, then oldest")
def queue(
    who: AlertReader,
    conn: Db,
    svc: Svc,
    info: Info,
    state: Annotated[list[State] | None, Query()] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    patient_id: Annotated[str | None, Query(max_length=128)] = None,
    assigned_to_me: bool = False,
    include_snoozed: bool = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[QueueItem]:
    limit = min(limit, svc.settings.api_page_max)
    after = None
    if cursor is not None:
        k1, opened, alert_id = svc.cursors.decode("alerts", who.user_id, cursor)
        after = (int(k1), datetime.fromisoformat(str(opened)), int(alert_id))
    where = views.QueueFilter(
        states=tuple(state or ("open", "acknowledged")),
        severities=None if not severity else tuple(severity),
        patient_id=patient_id,
        assignee=who.user_id if assigned_to_me else None,
        include_snoozed=include_snoozed,
    )
    with recorded(conn, who, info, svc.clock, action="alerts.read", object_type="alert_queue") as rec:
        rows = views.alert_queue(
            conn, org_id=who.org_id, user_id=who.user_id, now=svc.clock.now(), where=where, after=after, limit=limit + 1
        )
        page, more = rows[:limit], len(rows) > limit
        rec.subjects = sorted({r.patient_id for r in page})
    items = [QueueItem.model_validate(asdict(r)) for r in page]
    last = page[-1] if page else None
    next_cursor = (
        svc.cursors.encode("alerts", who.user_id, [last.sev_key, last.opened_at.isoformat(), last.alert_id])
        if more and last
        else None
    )
    return Page[QueueItem](items=items, next_cursor=next_cursor)


@router.get("/{alert_id}", response_model=AlertDetail)
def alert_detail(target: ReadAlert, conn: Db, svc: Svc, info: Info) -> AlertDetail:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="alert.read",
        object_type="alert",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        a: AlertRow = target.row
        events = alert_store.alert_events(conn, a.alert_id)
        actions = alert_store.alert_actions(conn, a.alert_id)
    return AlertDetail(
        **alert_fields(a),
        evidence=a.evidence,
        detail=a.detail,
        resolved_at=a.resolved_at,
        resolved_by=a.resolved_by,
        resolution=a.resolution,
        resolution_note=a.resolution_note,
        events=[
            EventOut(event_id=e.event_id, at=e.at, type=e.type, actor=e.actor, note=e.note, data=e.data) for e in events
        ],
        actions=[
            ActionOut(
                action_id=x.action_id,
                round=x.round,
                step=x.step,
                action=x.action,
                severity=x.severity,
                due_at=x.due_at,
                status=x.status,
                done_at=x.done_at,
            )
            for x in actions
        ],
    )


def _act(target: Resolved, conn: Db, svc: Svc, info: Info, action: str, work: Any) -> AlertOut:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=f"alert.{action}",
        object_type="alert",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        row: AlertRow = work()
    return AlertOut(**alert_fields(row))


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, summary="Acknowledge (stops the escalation)")
def acknowledge(body: AckIn, target: ActAlert, conn: Db, svc: Svc, info: Info) -> AlertOut:
    who, alert_id = target.caller, int(target.object_id)
    return _act(
        target,
        conn,
        svc,
        info,
        "acknowledge",
        lambda: service.acknowledge(conn, alert_id, by=who.user_id, now=svc.clock.now(), note=body.note),
    )


@router.post("/{alert_id}/assign", response_model=AlertOut)
def assign(body: AssignIn, target: AssignAlert, conn: Db, svc: Svc, info: Info) -> AlertOut:
    who, alert_id = target.caller, int(target.object_id)
    if body.assignee is not None:
        user = users.get_user(conn, body.assignee, org_id=who.org_id)
        if user is None or user.status != "active" or Role(user.role) not in STAFF_ROLES:
            raise Invalid(
                "the assignee must be an active staff user of the organisation", field="assignee", code="bad_assignee"
            )
    return _act(
        target,
        conn,
        svc,
        info,
        "assign",
        lambda: service.assign(conn, alert_id, by=who.user_id, now=svc.clock.now(), assignee=body.assignee),
    )


@router.post("/{alert_id}/snooze", response_model=AlertOut, summary="Snooze (a worse severity ends it at once)")
def snooze(body: SnoozeIn, target: ActAlert, conn: Db, svc: Svc, info: Info) -> AlertOut:
    who, alert_id = target.caller, int(target.object_id)
    now = svc.clock.now()
    until = ensure_utc(now + timedelta(minutes=body.minutes))
    return _act(
        target,
        conn,
        svc,
        info,
        "snooze",
        lambda: service.snooze(conn, alert_id, by=who.user_id, now=now, until=until, note=body.note),
    )


@router.post("/{alert_id}/resolve", response_model=AlertOut, summary="Resolve with a note")
def resolve(body: ResolveIn, target: ActAlert, conn: Db, svc: Svc, info: Info) -> AlertOut:
    who, alert_id = target.caller, int(target.object_id)
    return _act(
        target,
        conn,
        svc,
        info,
        "resolve",
        lambda: service.resolve(conn, alert_id, by=who.user_id, now=svc.clock.now(), note=body.note),
    )
