"""The lifecycle decisions, pure: one unresolved alert per rule, severity only rises, snooze and
acknowledgement never hide a worse state, auto-resolution after the condition stays clear."""

from __future__ import annotations

from datetime import timedelta

from alerts.config import LifecycleConfig
from alerts.lifecycle import AlertView, AutoResolve, MarkCleared, Open, Retrigger, State, due_auto_resolves, reconcile
from alerts.model import Candidate, Kind, Outcome, Severity
from tests.alerts.helpers import T0


def cand(
    rule: str = "threshold:spo2:low", severity: Severity = Severity.MEDIUM, kind: Kind = Kind.THRESHOLD
) -> Candidate:
    return Candidate(rule, kind, "spo2", severity, "s", ())


def view(severity: Severity = Severity.MEDIUM, state: State = State.OPEN, **kw) -> AlertView:
    return AlertView(7, "threshold:spo2:low", "threshold", severity, state, T0, **kw)


def test_a_new_rule_opens_and_a_known_one_retriggers() -> None:
    assert reconcile({}, Outcome((cand(),)), T0) == [Open(cand())]
    (d,) = reconcile({"threshold:spo2:low": view()}, Outcome((cand(),)), T0)
    assert isinstance(d, Retrigger)
    assert (d.alert_id, d.severity, d.raised, d.reopened, d.unsnoozed) == (7, Severity.MEDIUM, False, False, False)


def test_severity_rises_and_never_falls() -> None:
    (up,) = reconcile({"threshold:spo2:low": view()}, Outcome((cand(severity=Severity.HIGH),)), T0)
    assert (up.severity, up.raised) == (Severity.HIGH, True)
    (down,) = reconcile({"threshold:spo2:low": view(Severity.HIGH)}, Outcome((cand(),)), T0)
    assert (down.severity, down.raised) == (Severity.HIGH, False)


def test_acknowledged_alert_reopens_only_when_worse() -> None:
    acked = {"threshold:spo2:low": view(state=State.ACKNOWLEDGED)}
    (same,) = reconcile(acked, Outcome((cand(),)), T0)
    assert not same.reopened
    (worse,) = reconcile(acked, Outcome((cand(severity=Severity.CRITICAL),)), T0)
    assert worse.reopened


def test_a_snoozed_warning_does_not_silence_a_new_critical() -> None:
    snoozed = {"threshold:spo2:low": view(snoozed_until=T0 + timedelta(hours=4))}
    (same,) = reconcile(snoozed, Outcome((cand(),)), T0)
    assert not same.unsnoozed
    (worse,) = reconcile(snoozed, Outcome((cand(severity=Severity.CRITICAL),)), T0)
    assert (worse.unsnoozed, worse.raised) == (True, True)


def test_clear_marks_once_and_auto_resolves_after_the_configured_time() -> None:
    open_ = {"threshold:spo2:low": view()}
    assert reconcile(open_, Outcome(clear=frozenset({"threshold:spo2:low"})), T0) == [MarkCleared(7, T0)]
    cleared = view(cleared_since=T0)
    assert reconcile({"threshold:spo2:low": cleared}, Outcome(clear=frozenset({"threshold:spo2:low"})), T0) == []
    cfg = LifecycleConfig()
    assert due_auto_resolves([cleared], T0 + timedelta(hours=23), cfg) == []
    assert due_auto_resolves([cleared], T0 + timedelta(hours=24), cfg) == [AutoResolve(7, T0)]


def test_a_trigger_after_clearing_is_a_retrigger_of_the_same_alert() -> None:
    (d,) = reconcile({"threshold:spo2:low": view(cleared_since=T0)}, Outcome((cand(),)), T0 + timedelta(hours=1))
    assert isinstance(d, Retrigger)
    assert d.was_cleared


def test_auto_resolution_times_per_rule() -> None:
    cfg = LifecycleConfig()
    assert cfg.auto_resolve_after("missing_data") == timedelta(0)
    assert cfg.auto_resolve_after("missing_data:device:x") == timedelta(0)
    assert cfg.auto_resolve_after("trend:bp_goal") == timedelta(hours=72)
    assert cfg.auto_resolve_after("threshold:spo2:low") == timedelta(hours=24)


# -- issue 14: unconfirmed alerts ---------------------------------------------------------------------


def unconfirmed(severity: Severity = Severity.HIGH) -> Candidate:
    return Candidate("threshold:spo2:low", Kind.THRESHOLD, "spo2", severity, "s", (), unconfirmed=True)


def test_an_unconfirmed_candidate_opens_unconfirmed_and_a_confirmed_one_confirms_it() -> None:
    assert reconcile({}, Outcome((unconfirmed(),)), T0) == [Open(unconfirmed())]
    pending = {"threshold:spo2:low": view(Severity.HIGH, unconfirmed=True)}
    (d,) = reconcile(pending, Outcome((cand(severity=Severity.HIGH),)), T0)
    assert (d.confirms, d.severity, d.raised, d.restart_walk) == (True, Severity.HIGH, False, True)
    (lower,) = reconcile(pending, Outcome((cand(severity=Severity.MEDIUM),)), T0)  # the repeat is the truth
    assert (lower.confirms, lower.severity, lower.raised) == (True, Severity.MEDIUM, False)
    (worse,) = reconcile(pending, Outcome((cand(severity=Severity.CRITICAL),)), T0)
    assert (worse.confirms, worse.severity, worse.raised) == (True, Severity.CRITICAL, True)


def test_unconfirmed_retriggers_only_rise_and_never_touch_a_confirmed_alert() -> None:
    pending = {"threshold:spo2:low": view(Severity.HIGH, unconfirmed=True)}
    (d,) = reconcile(pending, Outcome((unconfirmed(Severity.MEDIUM),)), T0)
    assert (d.confirms, d.severity, d.raised) == (False, Severity.HIGH, False)
    confirmed = {"threshold:spo2:low": view(Severity.MEDIUM, cleared_since=T0)}
    assert reconcile(confirmed, Outcome((unconfirmed(Severity.HIGH),)), T0) == []  # waits, as before


def test_a_normal_repeat_refutes_an_unconfirmed_alert_at_once() -> None:
    cleared = view(Severity.HIGH, unconfirmed=True, cleared_since=T0)
    assert due_auto_resolves([cleared], T0, LifecycleConfig()) == [AutoResolve(7, T0, refuted=True)]
    confirmed = view(Severity.HIGH, cleared_since=T0)
    assert due_auto_resolves([confirmed], T0, LifecycleConfig()) == []
