"""Lifecycle in PostgreSQL: the engine's triggers and the clinicians' actions, with the full history."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from alerts import service
from alerts.book import AlertBook
from alerts.config import LifecycleConfig
from alerts.errors import AlertNotFound, InvalidTransition, LifecycleError
from alerts.lifecycle import reconcile
from alerts.model import Candidate, Kind, Obs, Outcome, Severity
from store import alerts as alert_store
from tests.alerts.conftest import add_patients
from tests.alerts.helpers import T0


def trigger(conn, severity: Severity, now, rule: str = "threshold:spo2:low", clear: bool = False) -> int:
    """One engine evaluation of patient p1 producing ``severity`` (or clear) for ``rule``."""
    with conn.transaction():
        book = AlertBook(conn, ["p1"], LifecycleConfig())
        c = Candidate(rule, Kind.THRESHOLD, "spo2", severity, f"{severity.label}", (Obs(now, "spo2", 90.0),))
        outcome = Outcome(clear=frozenset({rule})) if clear else Outcome((c,))
        book.apply("o1", "p1", reconcile(book.unresolved("p1"), outcome, now), now)
    (row,) = alert_store.list_alerts(conn, patient_id="p1", states=["open", "acknowledged"]) or [None]
    return row.alert_id if row else 0


@pytest.fixture
def p1(conn: psycopg.Connection) -> psycopg.Connection:
    add_patients(conn, ["p1"])
    return conn


def events(conn, alert_id: int) -> list[str]:
    return [e.type for e in alert_store.alert_events(conn, alert_id)]


def test_one_unresolved_alert_per_patient_and_rule_retrigger_raises(p1) -> None:
    a = trigger(p1, Severity.MEDIUM, T0)
    assert trigger(p1, Severity.HIGH, T0 + timedelta(minutes=5)) == a
    assert trigger(p1, Severity.MEDIUM, T0 + timedelta(minutes=10)) == a
    row = alert_store.get_alert(p1, a)
    assert (row.severity, row.esc_round, row.esc_severity) == ("high", 2, "high")
    assert events(p1, a) == ["opened", "severity_raised"]
    with pytest.raises(psycopg.errors.UniqueViolation), p1.transaction():
        p1.execute(
            "INSERT INTO alerts (org_id, patient_id, rule, kind, severity, summary, evidence, opened_at, updated_at, "
            "last_triggered_at) "
            "VALUES ('o1', 'p1', 'threshold:spo2:low', 'threshold', 'low', '', '[]', now(), now(), now())"
        )


def test_acknowledge_stops_the_walk_and_a_worse_state_reopens(p1) -> None:
    a = trigger(p1, Severity.HIGH, T0)
    row = service.acknowledge(p1, a, by="dr-a", now=T0 + timedelta(minutes=1), note="calling")
    assert (row.state, row.acknowledged_by, row.esc_next_at) == ("acknowledged", "dr-a", None)
    trigger(p1, Severity.HIGH, T0 + timedelta(minutes=2))
    assert alert_store.get_alert(p1, a).state == "acknowledged"
    trigger(p1, Severity.CRITICAL, T0 + timedelta(minutes=3))
    row = alert_store.get_alert(p1, a)
    assert (row.state, row.severity) == ("open", "critical")
    assert row.esc_next_at == T0 + timedelta(minutes=3)
    assert events(p1, a) == ["opened", "acknowledged", "severity_raised", "reopened"]


def test_snooze_holds_same_severity_but_not_worse(p1) -> None:
    a = trigger(p1, Severity.MEDIUM, T0)
    service.snooze(p1, a, by="dr-a", now=T0, until=T0 + timedelta(hours=2), note="reviewed")
    trigger(p1, Severity.MEDIUM, T0 + timedelta(minutes=30))
    assert alert_store.get_alert(p1, a).snoozed_until == T0 + timedelta(hours=2)
    trigger(p1, Severity.CRITICAL, T0 + timedelta(minutes=40))
    row = alert_store.get_alert(p1, a)
    assert (row.snoozed_until, row.severity) == (None, "critical")
    assert "unsnoozed" in events(p1, a)


def test_clinician_resolution_needs_a_note_and_is_final(p1) -> None:
    a = trigger(p1, Severity.MEDIUM, T0)
    with pytest.raises(LifecycleError):
        service.resolve(p1, a, by="dr-a", now=T0, note=" ")
    row = service.resolve(p1, a, by="dr-a", now=T0 + timedelta(hours=1), note="re-measured 97 %")
    assert (row.state, row.resolution, row.resolution_note) == ("resolved", "clinician", "re-measured 97 %")
    with pytest.raises(InvalidTransition) as err:
        service.acknowledge(p1, a, by="dr-a", now=T0)
    assert (err.value.state, err.value.action) == ("resolved", "acknowledge")
    with pytest.raises(AlertNotFound):
        service.assign(p1, 999, by="dr-a", now=T0, assignee="dr-b")
    b = trigger(p1, Severity.MEDIUM, T0 + timedelta(hours=2))  # the rule fires again: a new alert
    assert b != a


def test_assignment_and_full_history(p1) -> None:
    a = trigger(p1, Severity.MEDIUM, T0)
    service.assign(p1, a, by="nurse-1", now=T0, assignee="dr-b")
    trigger(p1, Severity.MEDIUM, T0 + timedelta(hours=1), clear=True)
    trigger(p1, Severity.MEDIUM, T0 + timedelta(hours=2))  # came back before auto-resolution
    trigger(p1, Severity.MEDIUM, T0 + timedelta(hours=3), clear=True)
    trigger(p1, Severity.MEDIUM, T0 + timedelta(hours=28), clear=True)  # clear for 25 h: auto-resolved
    row = alert_store.get_alert(p1, a)
    assert (row.state, row.resolution, row.assignee) == ("resolved", "auto", "dr-b")
    assert events(p1, a) == ["opened", "assigned", "cleared", "retriggered", "cleared", "auto_resolved"]
    history = alert_store.alert_events(p1, a)
    assert history[1].actor == "nurse-1"
    assert history[1].data == {"assignee": "dr-b", "previous": None}
