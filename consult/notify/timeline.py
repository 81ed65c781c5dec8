"""An alert's escalation and delivery as one timeline: each step due, each notification sent,
delivered, failed, held back or canceled, and the acknowledgement (by whom and how).

Ids and codes only: what the dashboard shows beside the alert (the API joins user names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from store import alerts as alert_store
from store import notification_outbox as outbox
from store.connection import Connection
from store.notification_outbox import NotificationRow

__all__ = ["TimelineStep", "alert_timeline"]


@dataclass(frozen=True, slots=True)
class TimelineStep:
    at: datetime
    step: str  # 'due' | 'sent' | 'delivered' | 'failed' | 'canceled' | 'retrying' | 'deferred' | 'acknowledged'
    action: str | None = None  # the escalation action (notify_care_team, ...)
    outbox_id: int | None = None
    channel: str | None = None
    recipient_user_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _notification_steps(n: NotificationRow, action: str | None) -> list[TimelineStep]:
    def step(at: datetime, name: str, **detail: Any) -> TimelineStep:
        return TimelineStep(at, name, action, n.outbox_id, n.channel, n.recipient_user_id, detail)

    steps: list[TimelineStep] = []
    if n.sent_at is not None:
        steps.append(step(n.sent_at, "sent", attempts=n.attempts))
    if n.delivered_at is not None:
        steps.append(step(n.delivered_at, "delivered"))
    if n.failed_at is not None:
        steps.append(step(n.failed_at, "failed", error=n.last_error, attempts=n.attempts))
    if n.canceled_at is not None:
        steps.append(step(n.canceled_at, "canceled", reason=n.last_error))
    if n.state == "pending" and n.deferred is not None:
        steps.append(step(n.created_at, "deferred", reason=n.deferred, until=n.next_attempt_at.isoformat()))
    elif n.state == "pending" and n.attempts > 0:
        steps.append(step(n.next_attempt_at, "retrying", error=n.last_error, attempts=n.attempts))
    return steps


def alert_timeline(conn: Connection, alert_id: int) -> list[TimelineStep]:
    """Every step of the alert's escalation and delivery, oldest first."""
    actions = alert_store.alert_actions(conn, alert_id)
    names = {a.action_id: a.action for a in actions}
    steps = [
        TimelineStep(a.due_at, "due", a.action, detail={"step": a.step, "round": a.round, "status": a.status})
        for a in actions
    ]
    for n in outbox.alert_notifications(conn, alert_id):
        steps.extend(_notification_steps(n, names.get(n.action_id) if n.action_id is not None else None))
    for e in alert_store.alert_events(conn, alert_id):
        if e.type == "acknowledged":
            steps.append(
                TimelineStep(
                    e.at,
                    "acknowledged",
                    recipient_user_id=e.actor,
                    detail={"by": e.actor, "via": e.data.get("via", "app")},
                )
            )
    order = {"due": 0, "deferred": 1, "sent": 2, "delivered": 3, "retrying": 4, "failed": 5, "canceled": 6}
    steps.sort(key=lambda s: (s.at, order.get(s.step, 9), s.outbox_id or 0))
    return steps
