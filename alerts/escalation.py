"""Escalation: per organisation and severity, an ordered list of actions with timers.

A walk starts when an alert opens (and again, from step 0, when its severity is raised). Step ``i``
is due ``after_min`` minutes after the walk started; while the alert stays *open* (not acknowledged,
not resolved, not snoozed) :func:`run_escalations` records each due step in ``alert_actions`` as
``due`` and hands it to an :class:`EscalationSink`, inside one transaction. Acknowledging or
resolving stops the walk; a snooze pauses it. Sinks live in ``consult`` (it implements the
Protocol structurally; alerts never imports consult): ``consult.notify.sink.NotifyingSink``
delivers the steps through the notification outbox, ``consult.sinks.RecordingSink`` records them
as done and turns a ``request_video_consult`` into a consult request row. The composition root
(``vigil_cli.alerts`` for ``vigil alerts run``) builds the sink and hands it to the engine.

An *unconfirmed* alert (one reading where its rule asks for two; see alerts.lifecycle) walks the
policy's ``unconfirmed`` steps instead, whatever its severity: by default ``request_remeasure`` at
once — the patient is asked to repeat the measurements named in the alert's ``detail.remeasure``
(passed to the sink as ``params["metrics"]``), which delivers it like a patient message. When a
repeat confirms the alert, its severity's walk starts from the first step; when the repeat is
normal the alert auto-resolves and the walk ends.

Policies are validated: the ``critical`` list must end with ``request_video_consult`` (a critical
alert left unacknowledged for its timeout always ends in a video consultation request); the
``unconfirmed`` list must ask for the repeat (``request_remeasure``) and may not request a video
consultation (an unconfirmed value books nobody's time); ``request_remeasure`` belongs to the
``unconfirmed`` list only (a confirmed alert has nothing left to confirm: ``message_patient``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Annotated, Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts.errors import AlertsConfigError
from rpm_core.metrics import METRIC_NAMES
from store import alerts as alert_store
from store.alerts import AlertRow
from store.connection import Connection

__all__ = [
    "DEFAULT_POLICY",
    "Action",
    "EscalationAction",
    "EscalationPolicy",
    "EscalationSink",
    "PolicyBook",
    "Step",
    "first_due",
    "run_escalations",
]

log = logging.getLogger(__name__)
_SEVERITIES: Final = ("low", "medium", "high", "critical")


class Action(enum.StrEnum):
    NOTIFY_CARE_TEAM = "notify_care_team"
    MESSAGE_PATIENT = "message_patient"
    PAGE_BACKUP = "page_backup"
    REQUEST_VIDEO_CONSULT = "request_video_consult"
    REQUEST_REMEASURE = "request_remeasure"


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    after_min: Annotated[float, Field(ge=0, le=7 * 24 * 60)] = 0.0
    params: dict[str, str] = Field(default_factory=dict)


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    low: tuple[Step, ...] = ()
    medium: tuple[Step, ...] = ()
    high: tuple[Step, ...] = ()
    critical: tuple[Step, ...]
    # Walked by an unconfirmed alert (any severity) until a repeat measurement confirms or refutes it.
    unconfirmed: tuple[Step, ...] = (
        Step(action=Action.REQUEST_REMEASURE, params={"template": "please_remeasure_now"}),
    )

    @model_validator(mode="after")
    def _check(self) -> EscalationPolicy:
        for name in ("low", "medium", "high", "critical", "unconfirmed"):
            steps: tuple[Step, ...] = getattr(self, name)
            if any(b.after_min < a.after_min for a, b in pairwise(steps)):
                raise AlertsConfigError(f"{name}: steps must be in time order")
            if name != "unconfirmed" and any(s.action is Action.REQUEST_REMEASURE for s in steps):
                raise AlertsConfigError(f"{name}: request_remeasure belongs to the unconfirmed steps")
        if not self.critical or self.critical[-1].action is not Action.REQUEST_VIDEO_CONSULT:
            raise AlertsConfigError("critical: the last step must be request_video_consult")
        if not any(s.action is Action.REQUEST_REMEASURE for s in self.unconfirmed):
            raise AlertsConfigError("unconfirmed: the steps must ask for the repeat (request_remeasure)")
        if any(s.action is Action.REQUEST_VIDEO_CONSULT for s in self.unconfirmed):
            raise AlertsConfigError("unconfirmed: an unconfirmed alert does not request a video consult")
        return self

    def steps(self, severity: str, *, unconfirmed: bool = False) -> tuple[Step, ...]:
        if unconfirmed:
            return self.unconfirmed
        steps: tuple[Step, ...] = getattr(self, severity, ()) if severity in _SEVERITIES else ()
        return steps

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> EscalationPolicy:
        try:
            return cls.model_validate(dict(doc))
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or e["msg"] for e in exc.errors())
            raise AlertsConfigError(f"invalid escalation policy: {fields}") from exc


_REMEASURE: Final = {"template": "please_remeasure"}
DEFAULT_POLICY: Final = EscalationPolicy(
    low=(Step(action=Action.NOTIFY_CARE_TEAM),),
    medium=(
        Step(action=Action.NOTIFY_CARE_TEAM),
        Step(action=Action.MESSAGE_PATIENT, params=_REMEASURE),
        Step(action=Action.PAGE_BACKUP, after_min=8 * 60),
    ),
    high=(
        Step(action=Action.NOTIFY_CARE_TEAM),
        Step(action=Action.MESSAGE_PATIENT, params=_REMEASURE),
        Step(action=Action.PAGE_BACKUP, after_min=60),
        Step(action=Action.REQUEST_VIDEO_CONSULT, after_min=4 * 60),
    ),
    critical=(
        Step(action=Action.NOTIFY_CARE_TEAM),
        Step(action=Action.MESSAGE_PATIENT, params=_REMEASURE),
        Step(action=Action.PAGE_BACKUP, after_min=15),
        Step(action=Action.REQUEST_VIDEO_CONSULT, after_min=30),
    ),
)


def first_due(
    policy: EscalationPolicy, severity: str, started: datetime, *, unconfirmed: bool = False
) -> datetime | None:
    steps = policy.steps(severity, unconfirmed=unconfirmed)
    return started + timedelta(minutes=steps[0].after_min) if steps else None


class PolicyBook:
    """Organisation policies read once per transaction (stored ones, else the default)."""

    def __init__(self, conn: Connection, default: EscalationPolicy = DEFAULT_POLICY) -> None:
        self._conn = conn
        self._default = default
        self._cache: dict[str, EscalationPolicy] = {}

    def __call__(self, org_id: str) -> EscalationPolicy:
        policy = self._cache.get(org_id)
        if policy is None:
            stored = alert_store.get_policy(self._conn, org_id)
            policy = self._default
            if stored is not None:
                try:
                    policy = EscalationPolicy.parse(stored[1])
                except AlertsConfigError:
                    log.warning("org %s: stored escalation policy v%d is invalid; using the default", org_id, stored[0])
            self._cache[org_id] = policy
        return policy


class EscalationAction(BaseModel):
    """One escalation step that has come due, as a sink receives it."""

    model_config = ConfigDict(frozen=True)

    action_id: int
    alert_id: int
    org_id: str
    patient_id: str
    action: Action
    severity: str
    step: int
    due_at: datetime
    params: dict[str, str]


class EscalationSink(Protocol):
    """Delivers a due action inside the transaction that recorded it (an error rolls both back)."""

    def deliver(self, conn: Connection, action: EscalationAction, now: datetime) -> None: ...


def _params(a: AlertRow, s: Step) -> dict[str, str]:
    """The step's parameters; a re-measure request also names the measurements to repeat."""
    if s.action is not Action.REQUEST_REMEASURE:
        return s.params
    wanted = a.detail.get("remeasure") or ([a.metric] if a.metric else [])
    metrics = [m for m in wanted if isinstance(m, str) and m in METRIC_NAMES] if isinstance(wanted, list) else []
    return {**s.params, "metrics": ",".join(metrics)}


def _walk(conn: Connection, a: AlertRow, policy: EscalationPolicy, sink: EscalationSink, now: datetime) -> int:
    steps = policy.steps(a.esc_severity or a.severity, unconfirmed=a.unconfirmed)
    started = a.esc_started_at or a.opened_at
    step, done = a.esc_step, 0
    while step < len(steps) and started + timedelta(minutes=steps[step].after_min) <= now:
        s = steps[step]
        due_at = started + timedelta(minutes=s.after_min)
        params = _params(a, s)
        action_id = alert_store.record_action(conn, a, step=step, action=s.action.value, due_at=due_at, params=params)
        if action_id is not None:
            sink.deliver(
                conn,
                EscalationAction(
                    action_id=action_id,
                    alert_id=a.alert_id,
                    org_id=a.org_id,
                    patient_id=a.patient_id,
                    action=s.action,
                    severity=a.esc_severity or a.severity,
                    step=step,
                    due_at=due_at,
                    params=params,
                ),
                now,
            )
            done += 1
        step += 1
    next_at = started + timedelta(minutes=steps[step].after_min) if step < len(steps) else None
    alert_store.set_escalation(conn, a.alert_id, step=step, next_at=next_at)
    return done


def run_escalations(conn: Connection, now: datetime, sink: EscalationSink, *, limit: int = 100) -> int:
    """Advance every due walk by all the steps that are due at ``now``; return the actions taken.

    One transaction per ``limit`` alerts. Several engines may run this at once: due alerts are
    locked with SKIP LOCKED, and an action is recorded once per (alert, round, step).
    """
    taken = 0
    while True:
        with conn.transaction():
            due = alert_store.due_escalations(conn, now, limit=limit)
            policies = PolicyBook(conn)
            for a in due:
                taken += _walk(conn, a, policies(a.org_id), sink, now)
        if len(due) < limit:
            return taken
