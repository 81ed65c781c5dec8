"""The alert lifecycle as pure decisions: what an evaluation's outcome does to the unresolved alerts.

States: ``open -> acknowledged -> resolved`` (a clinician may resolve an open alert directly). One
alert that is not resolved per patient and rule:

- a candidate for a rule with no unresolved alert **opens** one;
- a candidate for a rule with one **re-triggers** it: its evidence and trigger time are updated, its
  severity is raised when the new one is worse (never lowered). A worse severity also re-opens an
  acknowledged alert and ends a snooze, and restarts the escalation walk at the new severity: an
  acknowledged or snoozed warning never hides a new critical;
- a rule found clear marks its alert *cleared since* now; a later trigger unmarks it; an alert
  cleared for ``auto_resolve_after`` is **auto-resolved**.

Unconfirmed alerts (a candidate with ``unconfirmed``: one reading where the rule asks for two):

- an unconfirmed candidate with no unresolved alert **opens** one marked unconfirmed (its
  escalation walk is the policy's ``unconfirmed`` steps: ask the patient to repeat the measurement);
- a confirmed candidate **confirms** it: the alert takes the confirmed severity (which may be lower
  than the provisional one: the repeat is the truth), stops being unconfirmed and starts the
  escalation walk of that severity;
- another unconfirmed candidate re-triggers it (severity only rises; a worse one asks again);
- found clear — the repeat is normal — it is **refuted** and auto-resolved at once;
- an unconfirmed candidate for a rule whose alert is already confirmed changes nothing (as before:
  a single reading waits for its confirmation).

The engine turns these decisions into rows (store.alerts) inside the transaction that consumed the
readings; the replay applies them to memory. Clinician actions (acknowledge, resolve, assign,
snooze) live in :mod:`alerts.service`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from alerts.config import LifecycleConfig
from alerts.model import Candidate, Outcome, Severity

__all__ = [
    "AlertView",
    "AutoResolve",
    "Decision",
    "MarkCleared",
    "Open",
    "Retrigger",
    "State",
    "due_auto_resolves",
    "reconcile",
]


class State(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertView:
    """What the lifecycle needs to know about an unresolved alert."""

    alert_id: int
    rule: str
    kind: str
    severity: Severity
    state: State
    opened_at: datetime
    cleared_since: datetime | None = None
    snoozed_until: datetime | None = None
    unconfirmed: bool = False


@dataclass(frozen=True, slots=True)
class Open:
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class Retrigger:
    alert_id: int
    candidate: Candidate
    severity: Severity  # the alert's severity after this trigger (never lower than before)
    raised: bool  # worse than before: restart the escalation walk at the new severity
    reopened: bool  # an acknowledged alert goes back to open
    unsnoozed: bool  # a snooze ends
    was_cleared: bool  # the condition had cleared and came back
    confirms: bool = False  # an unconfirmed alert is confirmed: its severity is the candidate's

    @property
    def restart_walk(self) -> bool:
        """Start the escalation walk again (at ``severity``): worse, or confirmed."""
        return self.raised or self.confirms


@dataclass(frozen=True, slots=True)
class MarkCleared:
    alert_id: int
    since: datetime


@dataclass(frozen=True, slots=True)
class AutoResolve:
    alert_id: int
    cleared_since: datetime
    refuted: bool = False  # an unconfirmed alert whose repeat measurement was normal


Decision = Open | Retrigger | MarkCleared | AutoResolve


def reconcile(unresolved: Mapping[str, AlertView], outcome: Outcome, now: datetime) -> list[Decision]:
    """Decisions for one evaluation of one patient; ``unresolved`` is keyed by rule."""
    decisions: list[Decision] = []
    for c in sorted(outcome.candidates, key=lambda c: c.rule):
        a = unresolved.get(c.rule)
        if a is None:
            decisions.append(Open(c))
            continue
        if c.unconfirmed and not a.unconfirmed:
            continue  # a confirmed alert: a single new reading waits for its confirmation
        confirms = a.unconfirmed and not c.unconfirmed
        severity = c.severity if confirms else max(c.severity, a.severity)
        raised = severity > a.severity
        decisions.append(
            Retrigger(
                alert_id=a.alert_id,
                candidate=c,
                severity=severity,
                raised=raised,
                reopened=raised and a.state is State.ACKNOWLEDGED,
                unsnoozed=raised and a.snoozed_until is not None and a.snoozed_until > now,
                was_cleared=a.cleared_since is not None,
                confirms=confirms,
            )
        )
    for rule in sorted(outcome.clear - outcome.triggered):
        a = unresolved.get(rule)
        if a is not None and a.cleared_since is None:
            decisions.append(MarkCleared(a.alert_id, now))
    return decisions


def due_auto_resolves(unresolved: Iterable[AlertView], now: datetime, config: LifecycleConfig) -> list[AutoResolve]:
    """Alerts whose condition has stayed clear for their kind's auto-resolution time; an unconfirmed
    alert found clear (refuted by the repeat measurement) at once."""
    return [
        AutoResolve(a.alert_id, a.cleared_since, refuted=a.unconfirmed)
        for a in unresolved
        if a.cleared_since is not None and (a.unconfirmed or now - a.cleared_since >= config.auto_resolve_after(a.rule))
    ]
