"""Days and months in the practice's time zone: day boundaries, DST change days, month edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinician_api.billing import (
    Episode,
    InvalidBillingInput,
    PatientBilling,
    ReadingSource,
    SetupEvent,
    TimeEntry,
    TimeKind,
    evaluate_for_month,
    evaluate_month,
    evaluate_period,
    reading_days,
)

NY = ZoneInfo("America/New_York")
DEVICE = ReadingSource.DEVICE


def days_of(*instants: datetime, zone: ZoneInfo = NY) -> list[date]:
    return [d.day for d in reading_days([(t, DEVICE) for t in instants], zone)]


def test_a_day_is_the_practice_calendar_day_not_utc() -> None:
    # 03:30Z on 15 March is 23:30 on 14 March in New York (EDT, UTC-4); 04:30Z is 00:30 on the 15th
    assert days_of(datetime(2026, 3, 15, 3, 30, tzinfo=UTC)) == [date(2026, 3, 14)]
    assert days_of(datetime(2026, 3, 15, 4, 30, tzinfo=UTC)) == [date(2026, 3, 15)]
    assert days_of(datetime(2026, 3, 15, 3, 30, tzinfo=UTC), zone=ZoneInfo("UTC")) == [date(2026, 3, 15)]


def test_spring_forward_day_boundaries() -> None:
    # 8 March 2026: New York goes from EST (UTC-5) to EDT at 07:00Z; the day has 23 hours
    assert days_of(datetime(2026, 3, 8, 4, 59, tzinfo=UTC)) == [date(2026, 3, 7)]
    assert days_of(datetime(2026, 3, 8, 5, 0, tzinfo=UTC)) == [date(2026, 3, 8)]
    assert days_of(datetime(2026, 3, 9, 3, 59, tzinfo=UTC)) == [date(2026, 3, 8)]  # 23:59 EDT
    assert days_of(datetime(2026, 3, 9, 4, 0, tzinfo=UTC)) == [date(2026, 3, 9)]


def test_fall_back_day_has_25_hours_and_is_one_day() -> None:
    # 1 November 2026: EDT -> EST at 06:00Z; 01:30 local happens twice and both are 1 November
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    last = datetime(2026, 11, 2, 4, 59, tzinfo=UTC)  # 23:59 EST
    counted = reading_days([(first, DEVICE), (second, DEVICE), (last, DEVICE)], NY)
    assert [(d.day, d.device_readings) for d in counted] == [(date(2026, 11, 1), 3)]
    assert days_of(datetime(2026, 11, 2, 5, 0, tzinfo=UTC)) == [date(2026, 11, 2)]


def test_a_period_spanning_a_dst_change_still_has_30_days() -> None:
    start = date(2026, 2, 25)  # the period runs to 26 March, across 8 March
    instants = [datetime(2026, 2, 25, 17, tzinfo=UTC) + timedelta(days=i) for i in range(30)]
    p = PatientBilling("p", "o", Episode(start), reading_days([(t, DEVICE) for t in instants], NY))
    ev = evaluate_period(p, 0, as_of=date(2026, 4, 30))
    assert (ev.start, ev.end) == (date(2026, 2, 25), date(2026, 3, 26))
    assert {c.code: c.evidence for c in ev.codes}["99454"].startswith("30 days with device-transmitted readings")


def test_manual_and_device_counts_per_day() -> None:
    t = datetime(2026, 3, 2, 15, tzinfo=UTC)
    counted = reading_days([(t, DEVICE), (t, ReadingSource.MANUAL), (t + timedelta(days=1), ReadingSource.MANUAL)], NY)
    assert [(d.day, d.device_readings, d.manual_readings) for d in counted] == [
        (date(2026, 3, 2), 1, 1),
        (date(2026, 3, 3), 0, 1),
    ]


def test_time_counts_in_the_month_it_started_in_the_practice_zone() -> None:
    # 04:30Z on 1 February is 23:30 on 31 January in New York
    late = TimeEntry("n", datetime(2026, 2, 1, 4, 30, tzinfo=UTC), 25, TimeKind.INTERACTIVE_COMMUNICATION)
    p = PatientBilling("p", "o", Episode(date(2026, 1, 1)), (), (late,))
    jan = {c.code: c for c in evaluate_month(p, 2026, 1, zone=NY, as_of=date(2026, 3, 1)).codes}
    feb = {c.code: c for c in evaluate_month(p, 2026, 2, zone=NY, as_of=date(2026, 3, 1)).codes}
    assert jan["99457"].eligible
    assert feb["99457"].missing == "0 of 20 minutes; no interactive communication recorded"
    utc_feb = {c.code: c for c in evaluate_month(p, 2026, 2, zone=ZoneInfo("UTC"), as_of=date(2026, 3, 1)).codes}
    assert utc_feb["99457"].eligible


def test_a_30_day_period_crossing_a_month_boundary_is_reported_in_the_month_it_ends() -> None:
    start = date(2026, 1, 20)  # period 0: 20 Jan .. 18 Feb; period 1: 19 Feb .. 20 Mar
    setup = SetupEvent(datetime(2026, 1, 20, 15, tzinfo=UTC), "n")
    instants = [datetime(2026, 1, 20, 15, tzinfo=UTC) + timedelta(days=i) for i in range(0, 30, 1)]
    p = PatientBilling("p", "o", Episode(start, None, setup), reading_days([(t, DEVICE) for t in instants], NY))
    feb = evaluate_for_month(p, 2026, 2, zone=NY, as_of=date(2026, 3, 31))
    assert [(e.basis.value, e.start, e.end) for e in feb] == [
        ("episode", date(2026, 1, 20), date(2026, 2, 18)),
        ("30-day period", date(2026, 1, 20), date(2026, 2, 18)),
        ("calendar month", date(2026, 2, 1), date(2026, 2, 28)),
    ]
    assert all(e.final for e in feb)
    jan = evaluate_for_month(p, 2026, 1, zone=NY, as_of=date(2026, 3, 31))
    assert [e.basis.value for e in jan] == ["calendar month"]  # nothing ends in January
    mar = evaluate_for_month(p, 2026, 3, zone=NY, as_of=date(2026, 3, 31))
    # period 1 ends on 20 March; period 2 (21 March .. 19 April) is in progress on the 31st
    assert [(e.basis.value, e.start, e.final) for e in mar] == [
        ("30-day period", date(2026, 2, 19), True),
        ("30-day period", date(2026, 3, 21), False),
        ("calendar month", date(2026, 3, 1), False),  # 31 March is still March
    ]


def test_the_period_in_progress_shows_in_the_current_month() -> None:
    p = PatientBilling("p", "o", Episode(date(2026, 1, 20)))
    jan = evaluate_for_month(p, 2026, 1, zone=NY, as_of=date(2026, 1, 25))
    assert [(e.basis.value, e.final) for e in jan] == [
        ("episode", False),
        ("30-day period", False),
        ("calendar month", False),
    ]


@pytest.mark.parametrize(("year", "month"), [(2026, 0), (2026, 13), (0, 1)])
def test_bad_months_are_refused(year, month) -> None:
    p = PatientBilling("p", "o", Episode(date(2026, 1, 1)))
    with pytest.raises(InvalidBillingInput):
        evaluate_month(p, year, month, zone=NY, as_of=date(2026, 1, 1))


def test_hostile_inputs_are_refused_with_our_error() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(InvalidBillingInput):
        TimeEntry("n", naive, 5, TimeKind.REVIEW)
    with pytest.raises(InvalidBillingInput):
        TimeEntry("n", datetime(2026, 1, 1, tzinfo=UTC), -5, TimeKind.REVIEW)
    with pytest.raises(InvalidBillingInput):
        TimeEntry("n", datetime(2026, 1, 1, tzinfo=UTC), 10**9, TimeKind.REVIEW)
    with pytest.raises(ValueError, match="not_a_kind"):
        TimeEntry("n", datetime(2026, 1, 1, tzinfo=UTC), 5, "not_a_kind")  # type: ignore[arg-type]
    with pytest.raises(InvalidBillingInput):
        reading_days([(naive, DEVICE)], NY)
    with pytest.raises(InvalidBillingInput):
        Episode(date(2026, 2, 1), date(2026, 1, 1))
