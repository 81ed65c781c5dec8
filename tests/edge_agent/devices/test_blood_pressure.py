from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices.blood_pressure import (
    BloodPressureMeasurement,
    IntermediateCuffPressure,
    PressureUnit,
    status_flags,
)
from edge_agent.devices.datetime_field import DateTime, InvalidDateTime
from edge_agent.devices.errors import DecodeError, InvalidField, InvalidMeasurement
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.sfloat import SFloat, Special

from .strategies import blood_pressures, cuff_pressures


def test_nordic_vector_mmhg_with_year_unknown() -> None:
    payload = bytes.fromhex("1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00")
    measurement = BloodPressureMeasurement.from_bytes(payload)
    stamp = DateTime(year=None, month=4, day=17, hours=20, minutes=41, seconds=59)
    assert measurement == BloodPressureMeasurement(
        systolic=SFloat(138, 0),
        diastolic=SFloat(88, 0),
        mean_arterial_pressure=SFloat(120, 0),
        unit=PressureUnit.MMHG,
        timestamp=stamp,
        pulse_rate=SFloat(60, 0),
        user_id=1,
        status=0x0027,
    )
    status = {"body_movement", "cuff_too_loose", "irregular_pulse", "improper_position"}
    assert measurement.status_flags == status
    flags = frozenset(status | {"device_time_incomplete"})

    def reading(metric: str, value: float, unit: str) -> DecodedReading:
        return DecodedReading(
            characteristic=0x2A35,
            metric=metric,
            value=value,
            unit=unit,
            device_time=None,  # the year is unknown: no datetime is invented
            device_time_fields=stamp,
            user_id=1,
            flags=flags,
        )

    assert measurement.readings() == [
        reading("bp_systolic", 138.0, "mm[Hg]"),
        reading("bp_diastolic", 88.0, "mm[Hg]"),
        reading("bp_mean", 120.0, "mm[Hg]"),
        reading("heart_rate", 60.0, "/min"),
    ]
    assert bytes(measurement) == payload


def test_nordic_vector_kpa() -> None:
    payload = bytes.fromhex("15 BD F0 0B 00 9F F0 3C 00 12 00")
    measurement = BloodPressureMeasurement.from_bytes(payload)
    assert measurement == BloodPressureMeasurement(
        systolic=SFloat(189, -1),
        diastolic=SFloat(11, 0),
        mean_arterial_pressure=SFloat(159, -1),
        unit=PressureUnit.KPA,
        pulse_rate=SFloat(60, 0),
        status=0x0012,
    )
    flags = frozenset({"cuff_too_loose", "pulse_rate_below_range"})

    def reading(metric: str, value: float, unit: str = "mm[Hg]") -> DecodedReading:
        return DecodedReading(characteristic=0x2A35, metric=metric, value=value, unit=unit, flags=flags)

    assert measurement.readings() == [
        reading("bp_systolic", 141.762),  # 18.9 kPa x 7.50061683 = 141.76165...
        reading("bp_diastolic", 82.51),  # 11 kPa = 82.50678...
        reading("bp_mean", 119.26),  # 15.9 kPa = 119.25980...
        reading("heart_rate", 60.0, "/min"),  # pulse rate is always /min
    ]
    assert bytes(measurement) == payload


def test_complete_timestamp_becomes_device_time() -> None:
    measurement = BloodPressureMeasurement(
        SFloat(120, 0), SFloat(80, 0), SFloat(93, 0), timestamp=DateTime(2025, 3, 1, 8, 0, 5), user_id=255
    )
    readings = BloodPressureMeasurement.from_bytes(bytes(measurement)).readings()
    assert [r.device_time for r in readings] == [datetime(2025, 3, 1, 8, 0, 5)] * 3
    assert [r.user_id for r in readings] == [None] * 3  # 255 = unknown user
    assert all(r.flags == frozenset() for r in readings)


def test_special_values_become_absent_readings() -> None:
    payload = bytes.fromhex("00 FF 07 FE 07 02 08")
    readings = BloodPressureMeasurement.from_bytes(payload).readings()
    assert [(r.metric, r.value, r.absent_reason) for r in readings] == [
        ("bp_systolic", None, "not-a-number"),
        ("bp_diastolic", None, "positive-infinity"),
        ("bp_mean", None, "negative-infinity"),
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, set()),
        (0x0008, {"pulse_rate_above_range"}),
        (0x0010, {"pulse_rate_below_range"}),
        (0x0020, {"improper_position"}),
        (0xFFC0, set()),  # reserved bits are ignored
    ],
)
def test_status_flags(status: int, expected: set[str]) -> None:
    assert status_flags(status) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("00 8A 00 58 00", "truncated"),
        ("02 8A 00 58 00 78 00 E8 07 01", "truncated"),  # timestamp cut short
        ("10 8A 00 58 00 78 00 27", "truncated"),
        ("00 8A 00 58 00 78 00 00", "trailing_bytes"),
        ("20 8A 00 58 00 78 00", "reserved_value"),
        ("10 8A 00 58 00 78 00 18 00", "reserved_value"),  # pulse-rate range 3
    ],
)
def test_bad_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        BloodPressureMeasurement.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == 0x2A35


def test_reserved_status_names_the_field() -> None:
    with pytest.raises(InvalidField) as caught:
        BloodPressureMeasurement.from_bytes(bytes.fromhex("10 8A 00 58 00 78 00 18 00"))
    assert caught.value.field == "status"


@pytest.mark.parametrize(
    ("stamp", "field", "reason"),
    [
        ("E8 07 02 1E 00 00 00", "day", "invalid_value"),  # 30 February 2024
        ("E8 07 0D 01 00 00 00", "month", "reserved_value"),  # month 13
        ("E8 07 01 01 19 00 00", "hours", "reserved_value"),  # hour 25
    ],
)
def test_a_timestamp_that_cannot_exist_keeps_the_values(stamp: str, field: str, reason: str) -> None:
    payload = bytes.fromhex("02 8A 00 58 00 78 00" + stamp)
    measurement = BloodPressureMeasurement.from_bytes(payload)
    assert isinstance(measurement.timestamp, InvalidDateTime)
    assert (measurement.timestamp.field, measurement.timestamp.reason) == (field, reason)
    assert bytes(measurement) == payload  # kept exactly as sent
    readings = measurement.readings()
    assert [(r.metric, r.value) for r in readings] == [
        ("bp_systolic", 138.0),
        ("bp_diastolic", 88.0),
        ("bp_mean", 120.0),
    ]
    for reading in readings:
        assert (reading.device_time, reading.device_time_fields) == (None, None)
        assert reading.flags == {"device_time_invalid"}


@pytest.mark.parametrize("kwargs", [{"user_id": 256}, {"status": 0x10000}, {"status": 0x0018}])
def test_construction_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidMeasurement):
        BloodPressureMeasurement(SFloat(120, 0), SFloat(80, 0), SFloat(93, 0), **kwargs)  # type: ignore[arg-type]


def test_intermediate_cuff_pressure_is_not_a_patient_reading() -> None:
    payload = bytes.fromhex("00 96 00 FF 07 FF 07")
    measurement = IntermediateCuffPressure.from_bytes(payload)
    assert measurement == IntermediateCuffPressure(cuff_pressure=SFloat(150, 0))
    assert measurement.diastolic_unused == SFloat(special=Special.NAN)
    assert measurement.readings() == []
    assert bytes(measurement) == payload


def test_intermediate_cuff_pressure_keeps_every_field() -> None:
    payload = bytes.fromhex("1F 14 F0 FF 07 FF 07 E9 07 01 02 03 04 05 48 00 02 01 00")
    assert IntermediateCuffPressure.from_bytes(payload) == IntermediateCuffPressure(
        cuff_pressure=SFloat(20, -1),
        unit=PressureUnit.KPA,
        timestamp=DateTime(2025, 1, 2, 3, 4, 5),
        pulse_rate=SFloat(72, 0),
        user_id=2,
        status=0x0001,
    )
    with pytest.raises(DecodeError) as caught:
        IntermediateCuffPressure.from_bytes(payload[:-1])
    assert caught.value.characteristic == 0x2A36


@given(blood_pressures)
def test_round_trip(measurement: BloodPressureMeasurement) -> None:
    assert BloodPressureMeasurement.from_bytes(bytes(measurement)) == measurement


@given(cuff_pressures)
def test_cuff_round_trip(measurement: IntermediateCuffPressure) -> None:
    assert IntermediateCuffPressure.from_bytes(bytes(measurement)) == measurement
