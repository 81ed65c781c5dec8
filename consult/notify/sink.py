"""The escalation sink that delivers an alert's escalation steps for real, through the outbox.

It implements the alert engine's ``EscalationSink`` Protocol structurally (consult and alerts never
import each other; see :mod:`consult.sinks`): :meth:`NotifyingSink.deliver` takes the due step — a
:class:`consult.sinks.DueStep`, such as alerts' ``EscalationAction`` — and runs inside the
transaction that recorded the step, so the notifications commit with it or not at all.
``vigil alerts run`` wires it (the composition root, ``vigil_cli.alerts``).

==========================  =====================================  ==========================
step                        to whom (``params["roles"]`` overrides)  what
==========================  =====================================  ==========================
``notify_care_team``        nurses of the patient's care teams      ``alert_care_team`` with an
                            (clinicians when the teams have none)   acknowledgement link
``page_backup``             clinicians of the care teams (nurses    ``alert_page`` with a link,
                            when none), on every reachable channel  on every reachable channel
``request_video_consult``   clinicians and nurses                   a consult request row (as
                                                                    before) + ``video_consult_requested``
``message_patient``,        the patient's own account(s)            ``patient_message``: the
``request_remeasure``                                               text in-app, a pointer elsewhere
==========================  =====================================  ==========================

Channels per recipient: their preferences (default email and in-app; in-app always), or every
channel they can be reached on (email, in-app, SMS with a number, push with a token) for a page
and for any step of a critical alert, which also ignores quiet hours (``urgent``). The step is
marked done with what was queued; a step with nobody to tell is done with ``no_recipients``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from consult.notify.templates import ALERT_CARE_TEAM, ALERT_PAGE, PATIENT_MESSAGE, VIDEO_CONSULT
from consult.requests import request_video_consult
from consult.sinks import DueStep
from store import alerts as alert_store
from store.connection import Connection
from store.notification_outbox import NewNotification, enqueue
from store.notification_prefs import CHANNELS, Recipient, care_team_recipients, patient_recipients

__all__ = ["NotifyingSink", "channels_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: str
    roles: tuple[str, ...]  # staff roles, tried in order until one has members; () = the patient
    fallback: tuple[str, ...] = ()
    all_channels: bool = False


_PLANS: Final = {
    "notify_care_team": _Plan(ALERT_CARE_TEAM, ("nurse",), ("clinician",)),
    "page_backup": _Plan(ALERT_PAGE, ("clinician",), ("nurse",), all_channels=True),
    "request_video_consult": _Plan(VIDEO_CONSULT, ("clinician", "nurse")),
    "message_patient": _Plan(PATIENT_MESSAGE, ()),
    "request_remeasure": _Plan(PATIENT_MESSAGE, ()),
}
_STAFF_ROLES: Final = frozenset({"clinician", "nurse", "care_coordinator", "admin"})


def channels_for(r: Recipient, *, every_reachable: bool) -> list[str]:
    """The channels to use for ``r``: preferences, or everything reachable; in-app always."""
    reachable = {"email", "in_app"}
    if r.prefs.sms_number:
        reachable.add("sms")
    if r.prefs.push_token:
        reachable.add("push")
    wanted = set(CHANNELS) if every_reachable else {*r.prefs.channels, "in_app"}
    return [c for c in CHANNELS if c in wanted & reachable]


def _roles(plan: _Plan, params: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    override = params.get("roles")
    if override:
        roles = tuple(r for r in override.split(",") if r in _STAFF_ROLES)
        if roles:
            return roles, ()
    return plan.roles, plan.fallback


class NotifyingSink:
    """Queues the notifications of each due escalation step (satisfies alerts' ``EscalationSink``)."""

    def deliver(self, conn: Connection, action: DueStep, now: datetime) -> None:
        kind = str(action.action)
        result: dict[str, Any] = {"delivery": "queued"}
        if kind == "request_video_consult":
            request = request_video_consult(
                conn,
                org_id=action.org_id,
                patient_id=action.patient_id,
                alert_id=action.alert_id,
                at=now,
                requested_by="escalation",
                reason=f"{action.severity} alert {action.alert_id} unacknowledged",
            )
            result["consult_request_id"] = request.request_id
        plan = _PLANS.get(kind)
        if plan is None:
            log.warning("alert %d: no delivery for escalation action %s", action.alert_id, kind)
            result["delivery"] = "unsupported"
            alert_store.mark_action_done(conn, action.action_id, now, result)
            return
        recipients = self._recipients(conn, plan, action)
        queued = self._enqueue(conn, plan, action, recipients, now)
        result.update(recipients=len(recipients), notifications=queued)
        if not recipients:
            result["delivery"] = "no_recipients"
            log.warning("alert %d: nobody to tell for %s", action.alert_id, kind)
        if kind == "request_remeasure":
            result["remeasure"] = [m for m in action.params.get("metrics", "").split(",") if m]
        alert_store.mark_action_done(conn, action.action_id, now, result)

    def _recipients(self, conn: Connection, plan: _Plan, action: DueStep) -> list[Recipient]:
        if not plan.roles:
            return patient_recipients(conn, action.org_id, action.patient_id)
        roles, fallback = _roles(plan, action.params)
        found = care_team_recipients(conn, action.org_id, action.patient_id, roles)
        if not found and fallback:
            found = care_team_recipients(conn, action.org_id, action.patient_id, fallback)
        return found

    def _enqueue(
        self, conn: Connection, plan: _Plan, action: DueStep, recipients: Sequence[Recipient], now: datetime
    ) -> int:
        urgent = action.severity == "critical"
        params: dict[str, Any] = {"alert_id": action.alert_id, "step": action.step}
        if plan.kind == PATIENT_MESSAGE:
            params.update({k: v for k, v in action.params.items() if k in ("template", "metrics")})
        queued = 0
        for r in recipients:
            ack = plan.kind in (ALERT_CARE_TEAM, ALERT_PAGE, VIDEO_CONSULT)
            for channel in channels_for(r, every_reachable=plan.all_channels or urgent):
                outbox_id = enqueue(
                    conn,
                    NewNotification(
                        org_id=action.org_id,
                        channel=channel,
                        recipient_user_id=r.user_id,
                        kind=plan.kind,
                        idempotency_key=f"escalation:{action.action_id}:{r.user_id}:{channel}",
                        params={**params, "ack": ack and channel != "in_app"},
                        alert_id=action.alert_id,
                        action_id=action.action_id,
                        urgent=urgent,
                    ),
                    now,
                )
                queued += outbox_id is not None
        return queued
