from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.reading import DEVICE_TIME_INCOMPLETE, DecodedReading, ReadingContext
from edge_agent.devices.sfloat import SFloat, Special


def test_context_builds_readings_in_the_catalogue_unit() -> None:
    ctx = ReadingContext.create(0x2A35, DateTime(2024, 1, 2, 3, 4, 5), flags=["x"], user_id=3)
    reading = ctx.number("bp_systolic", SFloat(189, -1), 7.50061683)
    assert reading == DecodedReading(
        characteristic=0x2A35,
        metric="bp_systolic",
        value=141.762,
        unit="mm[Hg]",
        device_time=datetime(2024, 1, 2, 3, 4, 5),
        device_time_fields=DateTime(2024, 1, 2, 3, 4, 5),
        user_id=3,
        flags=frozenset({"x"}),
    )


def test_special_values_become_absent_reasons() -> None:
    reading = ReadingContext.create(0x2A5E).number("spo2", SFloat(special=Special.POSITIVE_INFINITY))
    assert reading.value is None
    assert reading.absent_reason == "positive-infinity"
    assert reading.unit == "%"


def test_incomplete_time_is_flagged_and_kept() -> None:
    ctx = ReadingContext.create(0x2A18, DateTime(None, 4, 17, 20, 41, 59), offset_minutes=-5)
    assert ctx.device_time is None
    assert ctx.device_time_fields == DateTime(None, 4, 17, 20, 41, 59)
    assert ctx.time_offset_minutes == -5
    assert ctx.flags == {DEVICE_TIME_INCOMPLETE}


def test_offset_is_added_to_the_base_time() -> None:
    ctx = ReadingContext.create(0x2A18, DateTime(2019, 2, 27, 0, 2, 0), offset_minutes=-5)
    assert ctx.device_time == datetime(2019, 2, 26, 23, 57, 0)
    assert ctx.flags == frozenset()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metric": "battery"}, "metric"),
        ({"unit": "kPa"}, "unit"),
        ({"value": None}, "absent_reason"),
        ({"absent_reason": "error"}, "absent_reason"),
        ({"value": float("nan")}, "value"),
        ({"value": None, "absent_reason": "unknown"}, "absent_reason"),
        ({"device_time": datetime(2024, 1, 1, tzinfo=UTC)}, "device_time"),
    ],
)
def test_readings_are_validated(changes: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {"characteristic": 0x2A35, "metric": "bp_systolic", "value": 120.0, "unit": "mm[Hg]"}
    fields.update(changes)
    with pytest.raises(InvalidMeasurement) as caught:
        DecodedReading(**fields)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.characteristic == 0x2A35
