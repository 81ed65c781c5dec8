"""The alert book: a transaction's view of some patients' unresolved alerts, and the lifecycle
decisions (alerts.lifecycle) written as rows (store.alerts).

The engine opens one per batch: the unresolved alerts of the batch's patients are locked
(``FOR UPDATE``) for the transaction that also moves the watermark, so concurrent clinician
actions serialise with it and a crash leaves either all of a batch's changes or none.

The rows are written through ``store.alert_writes`` (a few ``unnest`` statements instead of one
statement per change): after each :meth:`AlertBook.apply`, or, for a book made with ``defer=True``
(the engine's), only at :meth:`AlertBook.flush` — which must then run before the transaction
commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from alerts.config import LifecycleConfig
from alerts.escalation import PolicyBook, first_due
from alerts.lifecycle import (
    AlertView,
    AutoResolve,
    Decision,
    MarkCleared,
    Open,
    Retrigger,
    State,
    due_auto_resolves,
)
from alerts.model import Severity, evidence_json
from store import alerts as alert_store
from store.alert_writes import AlertWrites
from store.alerts import AlertRow, NewAlert, Trigger
from store.connection import Connection

__all__ = ["ENGINE_ACTOR", "AlertBook", "view_of"]

ENGINE_ACTOR: Final = "engine"


def view_of(row: AlertRow) -> AlertView:
    return AlertView(
        alert_id=row.alert_id,
        rule=row.rule,
        kind=row.kind,
        severity=Severity.parse(row.severity),
        state=State(row.state),
        opened_at=row.opened_at,
        cleared_since=row.cleared_since,
        snoozed_until=row.snoozed_until,
        unconfirmed=row.unconfirmed,
    )


class AlertBook:
    def __init__(
        self, conn: Connection, patient_ids: Sequence[str], lifecycle: LifecycleConfig, *, defer: bool = False
    ) -> None:
        self._conn = conn
        self._writes = AlertWrites(conn, actor=ENGINE_ACTOR)
        self._defer = defer
        self._lifecycle = lifecycle
        self._policies = PolicyBook(conn)
        self._views: dict[str, dict[str, AlertView]] = {pid: {} for pid in patient_ids}
        for row in alert_store.unresolved_alerts(conn, list(patient_ids), for_update=True):
            self._views.setdefault(row.patient_id, {})[row.rule] = view_of(row)
        self.opened: list[int] = []

    def unresolved(self, patient_id: str) -> dict[str, AlertView]:
        return self._views.setdefault(patient_id, {})

    def apply(self, org_id: str, patient_id: str, decisions: Sequence[Decision], now: datetime) -> None:
        views = self.unresolved(patient_id)
        for d in decisions:
            if isinstance(d, Open):
                self._open(org_id, patient_id, d, now, views)
            elif isinstance(d, Retrigger):
                self._retrigger(org_id, d, now, views)
            elif isinstance(d, MarkCleared):
                self._writes.mark_cleared(d.alert_id, org_id, d.since)
                for rule, v in views.items():
                    if v.alert_id == d.alert_id:
                        views[rule] = replace(v, cleared_since=d.since)
        self.auto_resolve(org_id, patient_id, now)
        if not self._defer:
            self.flush()

    def flush(self) -> None:
        """Write the changes made so far (in the caller's transaction)."""
        self._writes.flush()

    @property
    def statements(self) -> int:
        return self._writes.statements

    def auto_resolve(self, org_id: str, patient_id: str, now: datetime) -> list[AutoResolve]:
        views = self.unresolved(patient_id)
        due = due_auto_resolves(views.values(), now, self._lifecycle)
        for r in due:
            data: dict[str, object] = {"cleared_since": r.cleared_since.isoformat()}
            if r.refuted:
                data["refuted"] = True  # the repeat measurement was normal
            self._writes.resolve(
                r.alert_id,
                org_id,
                now,
                by=ENGINE_ACTOR,
                resolution="auto",
                note=None,
                data=data,
            )
        gone = {r.alert_id for r in due}
        for rule in [rule for rule, v in views.items() if v.alert_id in gone]:
            del views[rule]
        return due

    def _open(self, org_id: str, patient_id: str, d: Open, now: datetime, views: dict[str, AlertView]) -> None:
        c = d.candidate
        policy = self._policies(org_id)
        alert_id = self._writes.new_alert_id()
        self._writes.insert(
            alert_id,
            NewAlert(
                org_id=org_id,
                patient_id=patient_id,
                rule=c.rule,
                kind=c.kind.value,
                metric=c.metric,
                severity=c.severity.label,
                summary=c.summary,
                evidence=evidence_json(c.evidence),
                detail=dict(c.detail),
                opened_at=now,
                esc_next_at=first_due(policy, c.severity.label, now, unconfirmed=c.unconfirmed),
                unconfirmed=c.unconfirmed,
            ),
        )
        views[c.rule] = AlertView(
            alert_id, c.rule, c.kind.value, c.severity, State.OPEN, now, unconfirmed=c.unconfirmed
        )
        self.opened.append(alert_id)

    def _retrigger(self, org_id: str, d: Retrigger, now: datetime, views: dict[str, AlertView]) -> None:
        c = d.candidate
        v = views[c.rule]
        self._writes.trigger(
            Trigger(
                alert_id=d.alert_id,
                org_id=org_id,
                at=now,
                severity=d.severity.label,
                previous_severity=v.severity.label,
                summary=c.summary,
                evidence=evidence_json(c.evidence),
                detail=dict(c.detail),
                update_evidence=d.confirms or c.severity >= v.severity,
                raised=d.raised,
                reopened=d.reopened,
                unsnoozed=d.unsnoozed,
                was_cleared=d.was_cleared,
                esc_next_at=(
                    first_due(
                        self._policies(org_id), d.severity.label, now, unconfirmed=v.unconfirmed and not d.confirms
                    )
                    if d.restart_walk
                    else None
                ),
                confirms=d.confirms,
            ),
        )
        views[c.rule] = replace(
            v,
            severity=d.severity,
            state=State.OPEN if d.reopened else v.state,
            cleared_since=None,
            snoozed_until=None if d.unsnoozed else v.snoozed_until,
            unconfirmed=v.unconfirmed and not d.confirms,
        )
