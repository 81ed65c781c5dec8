"""Escalation sinks: what consult does with an alert's escalation step when it comes due.

The alert engine owns the walk and the ``EscalationSink`` Protocol (``alerts.escalation``); consult
implements sinks structurally and never imports alerts (nor alerts consult: an import-linter
contract). The composition root (``vigil_cli``) builds the sink and hands it to the engine.

- :class:`RecordingSink` (here) records every step as done and turns ``request_video_consult``
  into a consult request row; tests, benchmarks and anything that must not notify anyone use it.
- :class:`consult.notify.sink.NotifyingSink` queues the step's notifications through the outbox
  (``vigil alerts run`` wires it).

A sink reads a due step through :class:`DueStep`: any object with these attributes, such as
alerts' ``EscalationAction``. Both sinks run inside the transaction that recorded the step, so what
they write commits with it or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from consult.requests import request_video_consult
from store import alerts as alert_store
from store.connection import Connection

__all__ = ["DueStep", "RecordingSink"]


class DueStep(Protocol):
    """What a sink reads of a due escalation step (alerts' ``EscalationAction`` has all of it)."""

    @property
    def action_id(self) -> int: ...
    @property
    def alert_id(self) -> int: ...
    @property
    def org_id(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def params(self) -> Mapping[str, str]: ...


class RecordingSink:
    """Records every action as done; a video consult action creates a consult request row; a
    re-measure request is recorded with the measurements it asks for (nobody is notified)."""

    def deliver(self, conn: Connection, action: DueStep, now: datetime) -> None:
        kind = str(action.action)
        result: dict[str, Any] = {"delivery": "recorded"}
        if kind == "request_remeasure":
            result["remeasure"] = [m for m in action.params.get("metrics", "").split(",") if m]
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
        alert_store.mark_action_done(conn, action.action_id, now, result)
