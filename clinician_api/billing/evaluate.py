"""Evaluate one patient's evidence against :data:`~clinician_api.billing.rules.RULES` (pure).

Periods
    Device supply (99454, 99445): consecutive 30-day periods from the episode's start date
    (practice calendar): period *k* covers ``start + 30k`` to ``start + 30k + 29`` inclusive,
    whatever months they cross; billed once per patient per period however many devices. A day
    counts when at least one device-transmitted reading was measured on it (manual entries never
    count). Days after the episode's end do not count.
    Set-up (99453): once per episode, evaluated with the episode's first 30-day period.
    Management (99470, 99457, 99458): the calendar month in the practice's time zone; a time entry
    counts in the month in which it started.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from clinician_api.billing.errors import InvalidBillingInput
from clinician_api.billing.model import CodeEvaluation, Evaluation, PatientBilling, TimeKind, local_date
from clinician_api.billing.rules import RULES, Basis, Rule

__all__ = ["PERIOD_DAYS", "evaluate_episode_setup", "evaluate_for_month", "evaluate_month", "evaluate_period"]

PERIOD_DAYS: Final = 30


def _period(patient: PatientBilling, index: int) -> tuple[date, date, date]:
    """Start, nominal end and effective end (the episode may end earlier) of period ``index``."""
    if index < 0:
        raise InvalidBillingInput("period", "index", "must be non-negative")
    start = patient.episode.start + timedelta(days=PERIOD_DAYS * index)
    end = start + timedelta(days=PERIOD_DAYS - 1)
    last = end if patient.episode.end is None else min(end, patient.episode.end)
    if last < start:
        raise InvalidBillingInput("period", "index", "after the episode's end")
    return start, end, last


def _days(patient: PatientBilling, start: date, last: date) -> tuple[int, int]:
    device = {d.day for d in patient.days if start <= d.day <= last and d.device_readings > 0}
    manual_only = {d.day for d in patient.days if start <= d.day <= last and d.manual_readings > 0} - device
    return len(device), len(manual_only)


def _day_evidence(n: int, manual_only: int, start: date, end: date, final: bool) -> str:
    text = f"{n} day{'s' if n != 1 else ''} with device-transmitted readings, {start} to {end}"
    if manual_only:
        text += f" ({manual_only} more day{'s' if manual_only != 1 else ''} with manual entries only, not counted)"
    if not final:
        text += f"; so far, the period ends {end}"
    return text


def _by_days(rule: Rule, n: int, evidence: str, extra_missing: list[str]) -> CodeEvaluation:
    low = rule.min_days or 0
    if rule.max_days is not None and n > rule.max_days:
        return CodeEvaluation(
            rule.code, False, 0, f"{evidence}; above {low}-{rule.max_days} days: {rule.instead} applies"
        )
    missing = ([f"{n} of {low} days"] if n < low else []) + extra_missing
    if missing:
        return CodeEvaluation(rule.code, False, 0, evidence, "; ".join(missing))
    return CodeEvaluation(rule.code, True, 1, evidence)


def evaluate_period(patient: PatientBilling, index: int, *, as_of: date) -> Evaluation:
    """The device-supply codes of 30-day period ``index`` (0 = the episode's first)."""
    start, end, last = _period(patient, index)
    n, manual_only = _days(patient, start, last)
    final = as_of > last
    evidence = _day_evidence(n, manual_only, start, end, final)
    codes = tuple(_by_days(rule, n, evidence, []) for rule in RULES if rule.basis is Basis.PERIOD)
    return Evaluation(patient.patient_id, patient.org_id, Basis.PERIOD, start, end, final, codes)


def evaluate_episode_setup(patient: PatientBilling, *, zone: ZoneInfo, as_of: date) -> Evaluation:
    """99453 (once per episode), on the evidence of the episode's first 30-day period."""
    start, end, last = _period(patient, 0)
    n, manual_only = _days(patient, start, last)
    final = as_of > last
    codes = []
    for rule in RULES:
        if rule.basis is not Basis.EPISODE:
            continue
        evidence = _day_evidence(n, manual_only, start, end, final)
        missing: list[str] = []
        setup = patient.episode.setup
        if rule.setup_event:
            if setup is None:
                missing.append("no set-up and education recorded")
            else:
                day = local_date(setup.at, zone)
                evidence = f"set-up and education on {day}; {evidence}"
                if day > last:
                    missing.append(f"set-up recorded on {day}, after the first period")
        codes.append(_by_days(rule, n, evidence, missing))
    return Evaluation(patient.patient_id, patient.org_id, Basis.EPISODE, start, end, final, tuple(codes))


def _month_bounds(year: int, month: int) -> tuple[date, date]:
    if not 1 <= month <= 12 or not 1 <= year <= 9998:
        raise InvalidBillingInput("month", "month", "not a calendar month")
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


_KIND_TEXT: Final = {
    TimeKind.REVIEW: "review",
    TimeKind.INTERACTIVE_COMMUNICATION: "interactive communication",
    TimeKind.CARE_PLANNING: "care planning",
}


def _by_minutes(rule: Rule, total: int, interactive: int, evidence: str, eligible: dict[str, bool]) -> CodeEvaluation:
    low = rule.min_minutes or 0
    if rule.max_minutes is not None and total > rule.max_minutes:
        return CodeEvaluation(
            rule.code, False, 0, f"{evidence}; above {rule.max_minutes} minutes: {rule.instead} applies"
        )
    missing = [f"{total} of {low} minutes"] if total < low else []
    if rule.interactive and not interactive:
        missing.append("no interactive communication recorded")
    if rule.requires is not None and not eligible.get(rule.requires, False) and not missing:
        missing.append(f"{rule.requires} not eligible")
    if missing:
        return CodeEvaluation(rule.code, False, 0, evidence, "; ".join(missing))
    units = 1 if rule.step_minutes is None else 1 + (total - low) // rule.step_minutes
    if rule.max_units is not None:
        units = min(units, rule.max_units)
    text = evidence
    if rule.step_minutes is not None and (rule.max_units is None or units < rule.max_units):
        text += f"; the next unit at {low + units * rule.step_minutes} minutes"
    return CodeEvaluation(rule.code, True, units, text)


def evaluate_month(patient: PatientBilling, year: int, month: int, *, zone: ZoneInfo, as_of: date) -> Evaluation:
    """The management codes of one calendar month (practice time zone)."""
    first, last = _month_bounds(year, month)
    entries = [e for e in patient.time if first <= local_date(e.started_at, zone) <= last]
    total = sum(e.minutes for e in entries)
    interactive = sum(1 for e in entries if e.kind is TimeKind.INTERACTIVE_COMMUNICATION and e.minutes > 0)
    by_kind = {k: sum(e.minutes for e in entries if e.kind is k) for k in TimeKind}
    parts = ", ".join(f"{_KIND_TEXT[k]} {m}" for k, m in by_kind.items() if m)
    clinicians = len({e.clinician_id for e in entries})
    manual = sum(e.minutes for e in entries if e.capture == "manual")
    evidence = f"{total} minute{'s' if total != 1 else ''} in {first:%B %Y}"
    if parts:
        evidence += f" ({parts}) by {clinicians} clinician{'s' if clinicians != 1 else ''}"
    if manual:
        evidence += f", {manual} of them entered manually"
    evidence += f"; {interactive} interactive communication{'s' if interactive != 1 else ''}"
    final = as_of > last
    if not final:
        evidence += f"; so far, the month ends {last}"
    eligible: dict[str, bool] = {}
    codes = []
    for rule in RULES:
        if rule.basis is Basis.MONTH:
            result = _by_minutes(rule, total, interactive, evidence, eligible)
            eligible[rule.code] = result.eligible
            codes.append(result)
    return Evaluation(patient.patient_id, patient.org_id, Basis.MONTH, first, last, final, tuple(codes))


def _period_indices(patient: PatientBilling, first: date, last: date, as_of: date) -> Iterable[int]:
    """Periods whose (effective) end falls in the month, and the one in progress on ``as_of``."""
    index = 0
    while True:
        try:
            start, _, end = _period(patient, index)
        except InvalidBillingInput:
            return
        if start > last:
            return
        if first <= end <= last or (first <= as_of <= last and start <= as_of <= end):
            yield index
        index += 1


def evaluate_for_month(
    patient: PatientBilling, year: int, month: int, *, zone: ZoneInfo, as_of: date
) -> list[Evaluation]:
    """What a monthly report shows for one patient: set-up (when the first period belongs to this
    month), each device-supply period that ends in the month or is in progress on ``as_of``, and
    the month's management time."""
    first, last = _month_bounds(year, month)
    out: list[Evaluation] = []
    indices = list(_period_indices(patient, first, last, as_of))
    if 0 in indices:
        out.append(evaluate_episode_setup(patient, zone=zone, as_of=as_of))
    out.extend(evaluate_period(patient, i, as_of=as_of) for i in indices)
    out.append(evaluate_month(patient, year, month, zone=zone, as_of=as_of))
    return out
