"""Clinician decisions about a patient's monitoring: pause and resume it, accept a baseline as the
patient's own (and take it back). What the CLI calls, and what the clinician API will call.

Each function runs in its own transaction, checks its input (hostile or careless input is refused
with :class:`~alerts.errors.MonitoringRequestError` before anything is written) and records who did
it, when and why.

- **Pause** (:func:`pause_monitoring`): from now (or a later start) until an end at most
  ``MAX_PAUSE`` away, with a reason (hospital admission, travel). While in force the alert engine
  raises no missing-data alert for the patient (device and agent silence included) and an open one
  auto-resolves; readings that do arrive are still judged by every other rule (a dangerous value is
  never ignored). After the pause, silence counts from its end. Charts show the pauses
  (``store.monitoring_pauses.pauses_between``). :func:`resume_monitoring` ends it early.
- **Baseline** (:func:`accept_baseline`): a threshold rule (``threshold:<metric>:<low|high>``) takes
  the patient's usual value as normal — its bands that contain the value are off for this patient
  (never a critical band) — and the open alert of that rule is resolved by the clinician with the
  reason. Without an explicit value the patient's usual extreme is taken from their readings (the
  quantile the engine's suggestions use). Other rules have their own patient settings (NEWS2:
  ``spo2_scale``; BP: ``bp_goal``) and take no baseline.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, ParamSpec, TypeVar

from alerts.config import RulesConfig
from alerts.errors import MonitoringRequestError, PatientNotFound
from rpm_core.clock import ensure_utc
from rpm_core.metrics import METRIC_NAMES, metric
from store import alerts as alert_store
from store import monitoring_pauses, patient_baselines
from store import patients as patient_store
from store.connection import Connection
from store.monitoring_pauses import PauseRow
from store.patient_baselines import BaselineRow

__all__ = [
    "MAX_PAUSE",
    "MAX_TEXT",
    "accept_baseline",
    "baseline_rule",
    "pause_monitoring",
    "resume_monitoring",
    "revoke_baseline",
]

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")

MAX_PAUSE: Final = timedelta(days=90)
MAX_TEXT: Final = 500
_MAX_ACTOR: Final = 200
_RULE: Final = re.compile(r"threshold:(?P<metric>[a-z0-9_]{1,64}):(?P<direction>low|high)")


def _audited(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Log every refusal with its reason code, the patient id and the actor (never the free text)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except MonitoringRequestError as exc:
            patient = args[1] if len(args) > 1 else kwargs.get("patient_id", "")
            actor = kwargs.get("by", "")
            log.warning(
                "%s refused (%s): patient %r by %r",
                fn.__name__,
                exc.reason,
                str(patient)[:64],
                str(actor)[:64],
            )
            raise

    return wrapper


def _text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise MonitoringRequestError(f"{what} is required")
    if len(text) > limit:
        raise MonitoringRequestError(f"{what} is longer than {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text):
        raise MonitoringRequestError(f"{what} holds control or unassigned characters")
    return text


def _org_of(conn: Connection, patient_id: str) -> str:
    if not patient_id or len(patient_id) > 128:
        raise PatientNotFound(patient_id[:128])
    found = patient_store.patients(conn, [patient_id])
    if not found:
        raise PatientNotFound(patient_id)
    return found[0].org_id


@_audited
def pause_monitoring(
    conn: Connection,
    patient_id: str,
    *,
    until: datetime,
    reason: str,
    by: str,
    now: datetime,
    starts_at: datetime | None = None,
) -> PauseRow:
    """Pause the patient's monitoring from ``starts_at`` (default now) until ``until``."""
    now, until = ensure_utc(now), ensure_utc(until)
    start = ensure_utc(starts_at) if starts_at is not None else now
    why, who = _text(reason, "reason", MAX_TEXT), _text(by, "by", _MAX_ACTOR)
    if start < now - timedelta(minutes=5):
        raise MonitoringRequestError("a pause cannot start in the past")
    if until <= start:
        raise MonitoringRequestError("a pause must end after it starts")
    if until - start > MAX_PAUSE:
        raise MonitoringRequestError(f"a pause lasts at most {MAX_PAUSE.days} days")
    with conn.transaction():
        org = _org_of(conn, patient_id)
        return monitoring_pauses.add_pause(
            conn,
            org_id=org,
            patient_id=patient_id,
            starts_at=start,
            ends_at=until,
            reason=why,
            created_by=who,
            created_at=now,
        )


@_audited
def resume_monitoring(conn: Connection, patient_id: str, *, by: str, now: datetime) -> list[PauseRow]:
    """End the patient's pauses now (and cancel the ones not started yet); the pauses ended."""
    now, who = ensure_utc(now), _text(by, "by", _MAX_ACTOR)
    with conn.transaction():
        org = _org_of(conn, patient_id)
        ended = monitoring_pauses.resume_pauses(conn, org, patient_id, now, by=who)
    if not ended:
        raise MonitoringRequestError("the patient's monitoring is not paused")
    return ended


def baseline_rule(rule: str) -> tuple[str, str]:
    """``(metric, direction)`` of a rule key that takes a baseline, or :class:`MonitoringRequestError`."""
    m = _RULE.fullmatch(rule)
    if m is None or m["metric"] not in METRIC_NAMES:
        raise MonitoringRequestError("only threshold rules (threshold:<metric>:<low|high>) take a patient baseline")
    return m["metric"], m["direction"]


@_audited
def accept_baseline(
    conn: Connection,
    patient_id: str,
    rule: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    rules: RulesConfig,
    value: float | None = None,
) -> BaselineRow:
    """Accept ``value`` (default: the patient's usual value from their readings) as the patient's own
    normal for ``rule``; the rule's open alert is resolved with the reason."""
    name, direction = baseline_rule(rule)
    now, why, who = ensure_utc(now), _text(reason, "reason", MAX_TEXT), _text(by, "by", _MAX_ACTOR)
    if value is not None and not metric(name).is_plausible(value):
        raise MonitoringRequestError(f"{value:g} is outside the plausible range of {name}")
    cfg = rules.baseline
    with conn.transaction():
        org = _org_of(conn, patient_id)
        if value is None:
            quantile = cfg.quantile if direction == "low" else 1 - cfg.quantile
            start = now - timedelta(days=cfg.suggest_after_days)
            usual = patient_baselines.usual_value(conn, org, patient_id, name, start, now, quantile)
            if usual is None:
                raise MonitoringRequestError("no recent readings to take the baseline from: give the value")
            value = round(usual[0], 1)
        open_alert = next(
            (a for a in alert_store.unresolved_alerts(conn, [patient_id], for_update=True) if a.rule == rule), None
        )
        row = patient_baselines.accept_baseline(
            conn,
            org_id=org,
            patient_id=patient_id,
            rule=rule,
            value=value,
            reason=why,
            by=who,
            at=now,
            alert_id=None if open_alert is None else open_alert.alert_id,
        )
        if open_alert is not None:
            alert_store.resolve_alert(
                conn,
                open_alert.alert_id,
                org,
                now,
                by=who,
                resolution="clinician",
                note=f"baseline accepted as the patient's own: {why}",
                data={"baseline_id": row.baseline_id, "value": value},
            )
        return row


@_audited
def revoke_baseline(
    conn: Connection, patient_id: str, rule: str, *, by: str, reason: str, now: datetime
) -> BaselineRow:
    """Take an accepted baseline back: the population bands apply to the patient again."""
    baseline_rule(rule)
    now, why, who = ensure_utc(now), _text(reason, "reason", MAX_TEXT), _text(by, "by", _MAX_ACTOR)
    with conn.transaction():
        org = _org_of(conn, patient_id)
        row = patient_baselines.revoke_baseline(conn, org, patient_id, rule, now, by=who, reason=why)
    if row is None:
        raise MonitoringRequestError("no baseline in force for that rule")
    return row
