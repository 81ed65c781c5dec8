"""A patient's alert history (every state, newest first, with events and escalation steps), and the
organisation's escalation policy (admins; validated with ``alerts.escalation.EscalationPolicy``,
read by the engine once per transaction, so a change applies to the next escalation round)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from alerts.errors import AlertsConfigError
from alerts.escalation import DEFAULT_POLICY, EscalationPolicy
from clinician_api.access import Resolved, guard
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Conflict, Invalid
from clinician_api.pagination import Page
from clinician_api.routes.alerts import ActionOut, AlertOut, EventOut, State, alert_fields
from clinician_api.security import Principal, require
from store import alert_history
from store import alerts as alert_store

__all__ = ["router"]

router = APIRouter(tags=["alerts"])

HistoryReader = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.ALERTS_READ))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]


class HistoryItem(AlertOut):
    resolved_at: datetime | None
    resolution: str | None
    resolution_note: str | None
    events: list[EventOut]
    actions: list[ActionOut] = Field(description="Escalation steps the walk reached.")


class PolicyOut(BaseModel):
    version: int | None = Field(description="None while the built-in default applies.")
    policy: dict[str, Any]
    default: bool


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(description="The version this change is based on (None: replacing the default).")
    policy: dict[str, Any]


@router.get(
    "/patients/{patient_id}/alerts",
    response_model=Page[HistoryItem],
    summary="The patient's alert history with events and escalation steps",
)
def patient_alert_history(
    target: HistoryReader,
    conn: Db,
    svc: Svc,
    info: Info,
    state: Annotated[list[State] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[HistoryItem]:
    who = target.caller
    after = None
    if cursor is not None:
        t, alert_id = svc.cursors.decode(f"history:{target.object_id}", who.user_id, cursor)
        after = (datetime.fromisoformat(str(t)), int(alert_id))
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="alerts.history",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        rows = alert_history.patient_alerts(
            conn, org_id=target.org_id, patient_id=target.object_id, states=state, after=after, limit=limit + 1
        )
        page = rows[:limit]
        ids = [a.alert_id for a in page]
        events = alert_history.events_of(conn, ids)
        actions = alert_history.actions_of(conn, ids)
    items = [
        HistoryItem(
            **alert_fields(a),
            resolved_at=a.resolved_at,
            resolution=a.resolution,
            resolution_note=a.resolution_note,
            events=[
                EventOut(event_id=e.event_id, at=e.at, type=e.type, actor=e.actor, note=e.note, data=e.data)
                for e in events[a.alert_id]
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
                for x in actions[a.alert_id]
            ],
        )
        for a in page
    ]
    last = page[-1] if page else None
    nxt = (
        svc.cursors.encode(f"history:{target.object_id}", who.user_id, [last.opened_at.isoformat(), last.alert_id])
        if last is not None and len(rows) > limit
        else None
    )
    return Page[HistoryItem](items=items, next_cursor=nxt)


@router.get("/admin/escalation-policy", response_model=PolicyOut, tags=["admin"])
def get_policy(who: Admin, conn: Db) -> PolicyOut:
    stored = alert_store.get_policy(conn, who.org_id)
    if stored is None:
        return PolicyOut(version=None, policy=DEFAULT_POLICY.model_dump(mode="json"), default=True)
    return PolicyOut(version=stored[0], policy=stored[1], default=False)


@router.put("/admin/escalation-policy", response_model=PolicyOut, tags=["admin"], summary="Replace the policy")
def put_policy(body: PolicyIn, who: Admin, conn: Db, svc: Svc, info: Info) -> PolicyOut:
    with recorded(
        conn, who, info, svc.clock, action="policy.update", object_type="escalation_policy", object_id=who.org_id
    ):
        try:
            parsed = EscalationPolicy.parse(body.policy)
        except AlertsConfigError as exc:
            raise Invalid(exc.why, field="policy", code="invalid_policy") from exc
        alert_history.lock_policy(conn, who.org_id)
        current = alert_store.get_policy(conn, who.org_id)
        if (current[0] if current else None) != body.version:
            raise Conflict("the policy changed since it was read: reload and try again", code="stale_version")
        doc = parsed.model_dump(mode="json")
        version = alert_store.put_policy(conn, who.org_id, doc)
    return PolicyOut(version=version, policy=doc, default=False)
