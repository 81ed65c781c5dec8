"""Every code boundary of the CMS RPM rules, interactive communication, and the rule table."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinician_api.billing import (
    RULES,
    RULES_BY_CODE,
    SOURCES,
    Capture,
    Episode,
    InvalidBillingInput,
    PatientBilling,
    ReadingDay,
    SetupEvent,
    TimeEntry,
    TimeKind,
    evaluate_episode_setup,
    evaluate_month,
    evaluate_period,
)
from clinician_api.billing import evaluate as evaluate_module

UTC_ZONE = ZoneInfo("UTC")
START = date(2026, 3, 1)
AFTER = date(2026, 12, 31)  # every period and month below is over


def patient(days: int = 0, *, manual_days: int = 0, time=(), setup=True, start=START, end=None) -> PatientBilling:
    reading_days = [ReadingDay(start + timedelta(days=i), 3) for i in range(days)]
    reading_days += [ReadingDay(start + timedelta(days=29 - i), 0, 2) for i in range(manual_days)]
    event = SetupEvent(datetime(2026, 3, 1, 10, tzinfo=UTC), "nurse-1") if setup else None
    return PatientBilling("pat-1", "org1", Episode(start, end, event), reading_days, time)


def codes(evaluation):
    return {c.code: c for c in evaluation.codes}


# -- device supply: 99454 (16-30 days), 99445 (2-15 days) -------------------------------------


@pytest.mark.parametrize(
    ("days", "c99454", "c99445"),
    [(0, False, False), (1, False, False), (2, False, True), (15, False, True), (16, True, False), (30, True, False)],
)
def test_device_supply_day_boundaries(days, c99454, c99445) -> None:
    ev = codes(evaluate_period(patient(days), 0, as_of=AFTER))
    assert ev["99454"].eligible is c99454
    assert ev["99445"].eligible is c99445
    assert ev["99454"].units == int(c99454)
    assert ev["99445"].units == int(c99445)


def test_device_supply_says_what_is_missing() -> None:
    ev = codes(evaluate_period(patient(12), 0, as_of=AFTER))
    assert ev["99454"].missing == "12 of 16 days"
    assert ev["99445"].missing is None
    one = codes(evaluate_period(patient(1), 0, as_of=AFTER))
    assert one["99445"].missing == "1 of 2 days"
    above = codes(evaluate_period(patient(16), 0, as_of=AFTER))["99445"]
    assert above.missing is None
    assert "above 2-15 days: 99454 applies" in above.evidence


def test_manual_entries_never_count_toward_days() -> None:
    ev = codes(evaluate_period(patient(14, manual_days=5), 0, as_of=AFTER))
    assert ev["99454"].missing == "14 of 16 days"
    assert "5 more days with manual entries only, not counted" in ev["99454"].evidence
    only_manual = codes(evaluate_period(patient(0, manual_days=20), 0, as_of=AFTER))
    assert not only_manual["99445"].eligible


def test_many_readings_on_one_day_are_one_day() -> None:
    p = PatientBilling("p", "o", Episode(START), [ReadingDay(START, 500)])
    assert codes(evaluate_period(p, 0, as_of=AFTER))["99445"].missing == "1 of 2 days"


def test_periods_are_consecutive_30_day_blocks_and_count_only_their_own_days() -> None:
    p = patient(45)  # days 0..44 of the episode
    first, second = evaluate_period(p, 0, as_of=AFTER), evaluate_period(p, 1, as_of=AFTER)
    assert (first.start, first.end) == (date(2026, 3, 1), date(2026, 3, 30))
    assert (second.start, second.end) == (date(2026, 3, 31), date(2026, 4, 29))
    assert codes(first)["99454"].eligible
    assert codes(second)["99445"].eligible  # 15 days: 31 Mar .. 14 Apr
    assert codes(second)["99454"].missing == "15 of 16 days"


def test_days_after_the_episode_end_do_not_count() -> None:
    p = patient(20, end=START + timedelta(days=9))
    ev = evaluate_period(p, 0, as_of=AFTER)
    assert codes(ev)["99445"].eligible  # 10 days counted
    assert codes(ev)["99454"].missing == "10 of 16 days"
    with pytest.raises(InvalidBillingInput):
        evaluate_period(p, 1, as_of=AFTER)


def test_a_period_in_progress_is_not_final() -> None:
    ev = evaluate_period(patient(16), 0, as_of=date(2026, 3, 20))
    assert ev.final is False
    assert "so far, the period ends 2026-03-30" in codes(ev)["99454"].evidence
    assert evaluate_period(patient(16), 0, as_of=date(2026, 3, 31)).final is True


# -- set-up: 99453 -------------------------------------------------------------------------


def test_setup_needs_the_event_and_two_days() -> None:
    ok = codes(evaluate_episode_setup(patient(2), zone=UTC_ZONE, as_of=AFTER))["99453"]
    assert ok.eligible
    assert ok.evidence.startswith("set-up and education on 2026-03-01")
    no_event = codes(evaluate_episode_setup(patient(20, setup=False), zone=UTC_ZONE, as_of=AFTER))["99453"]
    assert no_event.missing == "no set-up and education recorded"
    one_day = codes(evaluate_episode_setup(patient(1), zone=UTC_ZONE, as_of=AFTER))["99453"]
    assert one_day.missing == "1 of 2 days"
    both = codes(evaluate_episode_setup(patient(0, setup=False), zone=UTC_ZONE, as_of=AFTER))["99453"]
    assert both.missing == "0 of 2 days; no set-up and education recorded"


def test_setup_after_the_first_period_is_refused() -> None:
    late = SetupEvent(datetime(2026, 4, 15, tzinfo=UTC), "nurse-1")
    p = dataclasses.replace(patient(20), episode=Episode(START, None, late))
    assert codes(evaluate_episode_setup(p, zone=UTC_ZONE, as_of=AFTER))["99453"].missing == (
        "set-up recorded on 2026-04-15, after the first period"
    )


# -- management: 99470 (10 min), 99457 (20 min), 99458 (+20 min) ----------------------------


def month(minutes: int, *, interactive: bool = True, zone=UTC_ZONE, as_of=AFTER):
    """``minutes`` of management in March 2026; with ``interactive``, one of them a phone call."""
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    entries = []
    if interactive and minutes:
        entries.append(TimeEntry("dr-2", at, 1, TimeKind.INTERACTIVE_COMMUNICATION))
        minutes -= 1
    if minutes:
        entries.append(TimeEntry("nurse-1", at + timedelta(hours=1), minutes, TimeKind.REVIEW))
    p = PatientBilling("pat-1", "org1", Episode(START), (), entries)
    return codes(evaluate_month(p, 2026, 3, zone=zone, as_of=as_of))


@pytest.mark.parametrize(
    ("minutes", "c99470", "c99457", "units_99458"),
    [
        (9, False, False, 0),
        (10, True, False, 0),
        (19, True, False, 0),
        (20, False, True, 0),
        (39, False, True, 0),
        (40, False, True, 1),
        (59, False, True, 1),
        (60, False, True, 2),
        (100, False, True, 4),
    ],
)
def test_management_minute_boundaries(minutes, c99470, c99457, units_99458) -> None:
    ev = month(minutes)
    assert ev["99470"].eligible is c99470
    assert ev["99457"].eligible is c99457
    assert ev["99458"].eligible is (units_99458 > 0)
    assert ev["99458"].units == units_99458
    assert not (ev["99470"].eligible and ev["99457"].eligible)


def test_management_says_what_is_missing() -> None:
    assert month(9)["99470"].missing == "9 of 10 minutes"
    assert month(18)["99457"].missing == "18 of 20 minutes"
    assert month(39)["99458"].missing == "39 of 40 minutes"
    assert "above 19 minutes: 99457 applies" in month(20)["99470"].evidence
    assert "the next unit at 80 minutes" in month(60)["99458"].evidence


@pytest.mark.parametrize("minutes", [10, 20, 45])
def test_no_interactive_communication_no_management_code(minutes) -> None:
    ev = month(minutes, interactive=False)
    for code in ("99470", "99457", "99458"):
        assert not ev[code].eligible
    assert "no interactive communication recorded" in (ev["99457"].missing or "")
    assert ev["99470" if minutes < 20 else "99457"].missing == "no interactive communication recorded"


def test_a_zero_minute_interactive_entry_is_not_an_interactive_communication() -> None:
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    time = [TimeEntry("n", at, 25, TimeKind.REVIEW), TimeEntry("n", at, 0, TimeKind.INTERACTIVE_COMMUNICATION)]
    p = PatientBilling("p", "o", Episode(START), (), time)
    assert codes(evaluate_month(p, 2026, 3, zone=UTC_ZONE, as_of=AFTER))["99457"].missing == (
        "no interactive communication recorded"
    )


def test_minutes_add_up_across_clinicians_kinds_and_capture() -> None:
    at = datetime(2026, 3, 3, 9, tzinfo=UTC)
    time = [
        TimeEntry("nurse-1", at, 8, TimeKind.REVIEW, Capture.TIMER),
        TimeEntry("dr-2", at + timedelta(days=2), 7, TimeKind.INTERACTIVE_COMMUNICATION, Capture.TIMER),
        TimeEntry("nurse-1", at + timedelta(days=9), 5, TimeKind.CARE_PLANNING, Capture.MANUAL),
    ]
    p = PatientBilling("p", "o", Episode(START), (), time)
    ev = codes(evaluate_month(p, 2026, 3, zone=UTC_ZONE, as_of=AFTER))
    assert ev["99457"].eligible
    assert ev["99457"].evidence.startswith(
        "20 minutes in March 2026 (review 8, interactive communication 7, care planning 5) by 2 clinicians, "
        "5 of them entered manually; 1 interactive communication"
    )


# -- the table -------------------------------------------------------------------------------


def test_the_table_has_every_code_once_with_sources() -> None:
    assert [r.code for r in RULES] == ["99453", "99454", "99445", "99470", "99457", "99458"]
    assert len(RULES_BY_CODE) == len(RULES)
    for rule in RULES:
        assert rule.sources
        assert all(s in SOURCES for s in rule.sources)
        assert rule.instead is None or rule.instead in RULES_BY_CODE
        assert rule.requires is None or rule.requires in RULES_BY_CODE


def test_a_rule_change_is_a_one_row_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tuple(dataclasses.replace(r, min_days=14) if r.code == "99454" else r for r in RULES)
    changed = tuple(dataclasses.replace(r, max_days=13) if r.code == "99445" else r for r in changed)
    monkeypatch.setattr(evaluate_module, "RULES", changed)
    ev = codes(evaluate_period(patient(14), 0, as_of=AFTER))
    assert ev["99454"].eligible
    assert not ev["99445"].eligible
    capped = tuple(dataclasses.replace(r, max_units=2) if r.code == "99458" else r for r in RULES)
    monkeypatch.setattr(evaluate_module, "RULES", capped)
    assert month(100)["99458"].units == 2


@given(st.integers(0, 30), st.integers(0, 300), st.booleans())
def test_exclusive_pairs_never_both_eligible(days, minutes, interactive) -> None:
    dev = codes(evaluate_period(patient(days), 0, as_of=AFTER))
    assert not (dev["99454"].eligible and dev["99445"].eligible)
    assert dev["99454"].eligible or dev["99445"].eligible or days < 2
    man = month(minutes, interactive=interactive)
    assert not (man["99470"].eligible and man["99457"].eligible)
    assert not man["99458"].eligible or man["99457"].eligible
    for c in (*dev.values(), *man.values()):
        assert c.eligible == (c.missing is None and c.units > 0)
