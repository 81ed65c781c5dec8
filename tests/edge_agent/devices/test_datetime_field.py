from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices._codec import Reader
from edge_agent.devices.datetime_field import CurrentTime, DateTime, DayOfWeek, InvalidDateTime, read_timestamp
from edge_agent.devices.errors import InvalidField, InvalidMeasurement, TrailingBytes, TruncatedPayload

from .strategies import current_times, date_times, invalid_date_times


def test_complete_date_time() -> None:
    value = DateTime.from_bytes(bytes.fromhex("DC070C050B321B"))
    assert value == DateTime(2012, 12, 5, 11, 50, 27)
    assert value.is_complete
    assert value.to_datetime() == datetime(2012, 12, 5, 11, 50, 27)
    assert value.to_datetime().tzinfo is None  # type: ignore[union-attr]


def test_unknown_year_keeps_the_other_fields() -> None:
    value = DateTime.from_bytes(bytes.fromhex("0000 04 11 14 29 3B"))
    assert value == DateTime(None, 4, 17, 20, 41, 59)
    assert not value.is_complete
    assert value.to_datetime() is None
    assert bytes(value) == bytes.fromhex("0000041114293B")


@pytest.mark.parametrize(("month", "day"), [(0, 5), (5, 0), (0, 0)])
def test_unknown_month_or_day(month: int, day: int) -> None:
    value = DateTime.from_bytes(bytes((0xE8, 0x07, month, day, 1, 2, 3)))
    assert (value.year, value.month, value.day) == (2024, month or None, day or None)
    assert value.to_datetime() is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("E807 0D 01 00 00 00", "month"),
        ("E807 01 20 00 00 00", "day"),
        ("E807 01 01 18 00 00", "hours"),
        ("E807 01 01 00 3C 00", "minutes"),
        ("E807 01 01 00 00 3C", "seconds"),
        ("2D06 01 01 00 00 00", "year"),  # 1581 is before the Gregorian range
        ("1027 01 01 00 00 00", "year"),  # 10000
    ],
)
def test_reserved_values(payload: str, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        DateTime.from_bytes(bytes.fromhex(payload.replace(" ", "")))
    assert caught.value.reason == "reserved_value"
    assert caught.value.field == field
    assert caught.value.characteristic == 0x2A08
    assert isinstance(caught.value.__cause__, InvalidMeasurement)


@pytest.mark.parametrize(
    ("year", "month", "day"), [(2023, 2, 29), (2024, 2, 30), (0, 2, 30), (0, 4, 31), (1900, 2, 29)]
)
def test_days_that_do_not_exist(year: int, month: int, day: int) -> None:
    with pytest.raises(InvalidField) as caught:
        DateTime.from_bytes(year.to_bytes(2, "little") + bytes((month, day, 0, 0, 0)))
    assert caught.value.reason == "invalid_value"
    assert caught.value.field == "day"


@pytest.mark.parametrize(("year", "month", "day"), [(2024, 2, 29), (0, 2, 29), (2000, 2, 29), (0, 0, 31)])
def test_days_that_may_exist(year: int, month: int, day: int) -> None:
    value = DateTime.from_bytes(year.to_bytes(2, "little") + bytes((month, day, 0, 0, 0)))
    assert value.day == day


def test_length_is_exact() -> None:
    with pytest.raises(TruncatedPayload):
        DateTime.from_bytes(bytes(6))
    with pytest.raises(TrailingBytes):
        DateTime.from_bytes(bytes.fromhex("DC070C050B321B00"))


def test_zero_is_spelled_none() -> None:
    with pytest.raises(InvalidMeasurement) as caught:
        DateTime(0, 1, 1)
    assert caught.value.reserved
    assert caught.value.field == "year"


def test_from_datetime() -> None:
    assert DateTime.from_datetime(datetime(2019, 2, 27, 11, 10, 30, 999)) == DateTime(2019, 2, 27, 11, 10, 30)


def test_current_time() -> None:
    value = CurrentTime.from_bytes(bytes.fromhex("E8070B1D170839058003"))
    assert value == CurrentTime(DateTime(2024, 11, 29, 23, 8, 57), DayOfWeek.FRIDAY, 128, 3)
    assert value.to_datetime() == datetime(2024, 11, 29, 23, 8, 57, 500_000)
    assert value.adjust_reasons == {"manual_time_update", "external_reference_time_update"}
    assert value.readings() == []
    assert bytes(value) == bytes.fromhex("E8070B1D170839058003")


def test_current_time_unknown_day_of_week_and_date() -> None:
    value = CurrentTime.from_bytes(bytes.fromhex("00000000000000000000"))
    assert value.day_of_week is None
    assert value.to_datetime() is None
    assert value.adjust_reasons == frozenset()


def test_current_time_errors_name_its_characteristic() -> None:
    with pytest.raises(InvalidField) as dow:
        CurrentTime.from_bytes(bytes.fromhex("E8070B1D170839080000"))
    assert (dow.value.characteristic, dow.value.field, dow.value.reason) == (0x2A2B, "day_of_week", "reserved_value")
    with pytest.raises(InvalidField) as month:
        CurrentTime.from_bytes(bytes.fromhex("E8070D1D170839050000"))
    assert (month.value.characteristic, month.value.field) == (0x2A2B, "month")
    with pytest.raises(TruncatedPayload) as short:
        CurrentTime.from_bytes(bytes.fromhex("E8070B1D1708390500"))
    assert short.value.characteristic == 0x2A2B


@given(date_times())
def test_date_time_round_trips(value: DateTime) -> None:
    assert DateTime.from_bytes(bytes(value)) == value
    assert (value.to_datetime() is None) != value.is_complete


@given(current_times)
def test_current_time_round_trips(value: CurrentTime) -> None:
    assert CurrentTime.from_bytes(bytes(value)) == value


@pytest.mark.parametrize(
    ("payload", "expected", "field", "reason"),
    [
        ("E707 02 1F 0A 00 00", InvalidDateTime(2023, 2, 31, 10, 0, 0), "day", "invalid_value"),  # 31 February
        ("E807 0D 01 00 00 00", InvalidDateTime(2024, 13, 1, 0, 0, 0), "month", "reserved_value"),
        ("E807 01 01 19 00 00", InvalidDateTime(2024, 1, 1, 25, 0, 0), "hours", "reserved_value"),
        ("E803 01 01 00 00 00", InvalidDateTime(1000, 1, 1, 0, 0, 0), "year", "reserved_value"),
        ("0000 00 20 00 00 00", InvalidDateTime(0, 0, 32, 0, 0, 0), "day", "reserved_value"),
    ],
)
def test_a_measurement_timestamp_that_cannot_exist_is_kept_as_sent(
    payload: str, expected: InvalidDateTime, field: str, reason: str
) -> None:
    raw = bytes.fromhex(payload.replace(" ", ""))
    reader = Reader(0x2A1C, raw)
    value = read_timestamp(reader)
    reader.finish()
    assert value == expected
    assert (value.field, value.reason) == (field, reason)  # type: ignore[union-attr]
    assert value.to_datetime() is None
    assert not value.is_complete
    assert bytes(value) == raw
    with pytest.raises(InvalidField):  # a Current Time is nothing but the time: still refused
        DateTime.from_bytes(raw)


def test_read_timestamp_returns_a_valid_date_time_as_before() -> None:
    reader = Reader(0x2A1C, bytes.fromhex("0000041114293B"))
    assert read_timestamp(reader) == DateTime(None, 4, 17, 20, 41, 59)


@pytest.mark.parametrize(
    "fields",
    [
        (2024, 2, 29, 0, 0, 0),  # valid: a DateTime
        (0, 0, 0, 0, 0, 0),  # all unknown: an incomplete DateTime
        (1 << 16, 1, 1, 0, 0, 0),  # does not fit the field
        (2024, 256, 1, 0, 0, 0),
    ],
)
def test_invalid_date_time_has_one_representation(fields: tuple[int, int, int, int, int, int]) -> None:
    with pytest.raises(InvalidMeasurement):
        InvalidDateTime(*fields)


@given(invalid_date_times())
def test_invalid_date_times_round_trip_through_read_timestamp(value: InvalidDateTime) -> None:
    reader = Reader(0x2A35, bytes(value))
    assert read_timestamp(reader) == value
    assert reader.remaining == 0
