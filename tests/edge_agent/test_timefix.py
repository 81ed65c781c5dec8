"""Device local time to UTC, and correction of skewed device clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from edge_agent.devices.datetime_field import CurrentTime, DateTime
from edge_agent.timefix import DeviceClock, local_to_utc, measured_at

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
THRESHOLD = timedelta(minutes=2)


def current_time(local: datetime) -> CurrentTime:
    return CurrentTime(DateTime.from_datetime(local))


def test_local_time_in_the_agent_zone() -> None:
    assert local_to_utc(datetime(2026, 3, 1, 9, 0), BERLIN) == NOW
    assert local_to_utc(datetime(2026, 7, 1, 10, 0), BERLIN) == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def test_a_correct_clock_is_trusted_as_is() -> None:
    clock = DeviceClock.measure(
        current_time(datetime(2026, 3, 1, 9, 0, 30)), agent_now=NOW, zone=BERLIN, threshold=THRESHOLD
    )
    assert clock is not None
    assert (clock.skew, clock.skewed) == (timedelta(seconds=30), False)
    when, corrected = measured_at(datetime(2026, 3, 1, 8, 50), received_at=NOW, zone=BERLIN, clock=clock)
    assert (when, corrected) == (NOW - timedelta(minutes=10), False)


def test_a_skewed_clock_is_corrected_and_flagged() -> None:
    # The device thinks it is 10:00 local (09:00 UTC) while it is 08:00 UTC: one hour fast.
    clock = DeviceClock.measure(
        current_time(datetime(2026, 3, 1, 10, 0)), agent_now=NOW, zone=BERLIN, threshold=THRESHOLD
    )
    assert clock is not None
    assert clock.skewed
    when, corrected = measured_at(datetime(2026, 3, 1, 9, 55), received_at=NOW, zone=BERLIN, clock=clock)
    assert (when, corrected) == (NOW - timedelta(minutes=5), True)


def test_no_device_time_means_time_of_receipt() -> None:
    assert measured_at(None, received_at=NOW, zone=BERLIN, clock=None) == (NOW, False)
    unknown_date = CurrentTime(DateTime(None, 3, 1, 9, 0, 0))
    assert DeviceClock.measure(unknown_date, agent_now=NOW, zone=BERLIN, threshold=THRESHOLD) is None
    west = ZoneInfo("Etc/GMT+12")  # UTC-12: the last minute of 9999 there is in year 10000 UTC
    assert measured_at(datetime(9999, 12, 31, 23, 59), received_at=NOW, zone=west, clock=None) == (NOW, False)
