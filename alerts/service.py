"""Clinician actions on an alert: acknowledge, resolve (with a note), assign, snooze.

Each runs in its own transaction, locks the alert row, checks the transition and writes the
change and its ``alert_events`` row together. ``now`` comes from the caller's clock.

=============  =====================================  ======================================
action         allowed from                           effect
=============  =====================================  ======================================
acknowledge    open                                   stops the escalation walk
resolve        open, acknowledged                     closes it; a note is required
assign         open, acknowledged                     sets (or clears) the assignee
snooze         open, acknowledged                     no escalation until ``until``; a worse
                                                      severity ends the snooze at once
=============  =====================================  ======================================
"""

from __future__ import annotations

from datetime import datetime

from alerts.errors import AlertNotFound, InvalidTransition, LifecycleError
from rpm_core.clock import ensure_utc
from store import alerts as alert_store
from store.alerts import AlertRow
from store.connection import Connection

__all__ = ["acknowledge", "assign", "resolve", "snooze"]


def _locked(conn: Connection, alert_id: int, action: str, allowed: tuple[str, ...]) -> AlertRow:
    row = alert_store.get_alert(conn, alert_id, for_update=True)
    if row is None:
        raise AlertNotFound(alert_id)
    if row.state not in allowed:
        raise InvalidTransition(alert_id, row.state, action)
    return row


def _reload(conn: Connection, alert_id: int) -> AlertRow:
    row = alert_store.get_alert(conn, alert_id)
    if row is None:  # pragma: no cover - locked in this transaction
        raise AlertNotFound(alert_id)
    return row


def acknowledge(
    conn: Connection, alert_id: int, *, by: str, now: datetime, note: str | None = None, via: str | None = None
) -> AlertRow:
    """``via`` says how, for the timeline (e.g. 'link': an emailed acknowledgement link)."""
    with conn.transaction():
        row = _locked(conn, alert_id, "acknowledge", ("open",))
        alert_store.acknowledge_alert(conn, row.alert_id, row.org_id, ensure_utc(now), by=by, note=note, via=via)
        return _reload(conn, alert_id)


def resolve(conn: Connection, alert_id: int, *, by: str, now: datetime, note: str) -> AlertRow:
    if not note.strip():
        raise LifecycleError("a clinician resolves an alert with a note")
    with conn.transaction():
        row = _locked(conn, alert_id, "resolve", ("open", "acknowledged"))
        alert_store.resolve_alert(
            conn, row.alert_id, row.org_id, ensure_utc(now), by=by, resolution="clinician", note=note
        )
        return _reload(conn, alert_id)


def assign(conn: Connection, alert_id: int, *, by: str, now: datetime, assignee: str | None) -> AlertRow:
    with conn.transaction():
        row = _locked(conn, alert_id, "assign", ("open", "acknowledged"))
        alert_store.assign_alert(conn, row, ensure_utc(now), by=by, assignee=assignee)
        return _reload(conn, alert_id)


def snooze(
    conn: Connection, alert_id: int, *, by: str, now: datetime, until: datetime, note: str | None = None
) -> AlertRow:
    now, until = ensure_utc(now), ensure_utc(until)
    if until <= now:
        raise LifecycleError("a snooze must end in the future")
    with conn.transaction():
        row = _locked(conn, alert_id, "snooze", ("open", "acknowledged"))
        alert_store.snooze_alert(conn, row.alert_id, row.org_id, now, by=by, until=until, note=note)
        return _reload(conn, alert_id)
