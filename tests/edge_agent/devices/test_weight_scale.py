from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices.datetime_field import DateTime, InvalidDateTime
from edge_agent.devices.errors import DecodeError, InvalidMeasurement
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.weight_scale import WeightMeasurement

from .strategies import weights


def test_si_vector() -> None:
    measurement = WeightMeasurement.from_bytes(bytes.fromhex("00 B0 36"))
    assert measurement == WeightMeasurement(weight=14000, imperial=False)
    assert measurement.weight_kg == 70.0
    assert measurement.readings() == [
        DecodedReading(characteristic=0x2A9D, metric="body_weight", value=70.0, unit="kg")
    ]
    assert bytes(measurement) == bytes.fromhex("00 B0 36")


def test_imperial_vector() -> None:
    measurement = WeightMeasurement.from_bytes(bytes.fromhex("01 54 3D"))
    assert measurement == WeightMeasurement(weight=15700, imperial=True)  # 157.00 lb
    assert measurement.readings() == [
        # 157.00 lb x 0.45359237 = 71.2140020... kg; kept to 5 decimals (0.01 lb = 0.0045 kg)
        DecodedReading(characteristic=0x2A9D, metric="body_weight", value=71.214, unit="kg")
    ]
    assert bytes(measurement) == bytes.fromhex("01 54 3D")


def test_every_field() -> None:
    payload = bytes.fromhex("0E B0 36 E8 07 01 02 07 1E 00 02 E5 00 D6 06")
    measurement = WeightMeasurement.from_bytes(payload)
    stamp = DateTime(2024, 1, 2, 7, 30, 0)
    assert measurement == WeightMeasurement(14000, False, stamp, 2, 229, 1750)

    def reading(metric: str, value: float, unit: str) -> DecodedReading:
        return DecodedReading(
            characteristic=0x2A9D,
            metric=metric,
            value=value,
            unit=unit,
            device_time=datetime(2024, 1, 2, 7, 30),
            device_time_fields=stamp,
            user_id=2,
        )

    assert measurement.readings() == [
        reading("body_weight", 70.0, "kg"),
        reading("bmi", 22.9, "kg/m2"),
        reading("body_height", 1.75, "m"),
    ]
    assert bytes(measurement) == payload


def test_imperial_height() -> None:
    measurement = WeightMeasurement.from_bytes(bytes.fromhex("09 54 3D E5 00 B1 02"))
    assert (measurement.bmi, measurement.height) == (229, 689)  # 22.9 kg/m2, 68.9 in
    assert measurement.height_m == 1.75006  # 68.9 x 0.0254 = 1.75006
    assert [(r.metric, r.value) for r in measurement.readings()] == [
        ("body_weight", 71.214),
        ("bmi", 22.9),
        ("body_height", 1.75006),
    ]


def test_unsuccessful_measurement() -> None:
    measurement = WeightMeasurement.from_bytes(bytes.fromhex("04 FF FF FF"))
    assert measurement == WeightMeasurement(weight=None, user_id=255)
    assert measurement.readings() == [
        DecodedReading(
            characteristic=0x2A9D,
            metric="body_weight",
            value=None,
            unit="kg",
            absent_reason="error",
            flags=frozenset({"measurement_unsuccessful"}),
        )
    ]
    assert bytes(measurement) == bytes.fromhex("04 FF FF FF")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("00 B0", "truncated"),
        ("08 B0 36 E5 00", "truncated"),
        ("00 B0 36 00", "trailing_bytes"),
        ("10 B0 36", "reserved_value"),
    ],
)
def test_bad_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        WeightMeasurement.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == 0x2A9D


def test_hour_24_keeps_the_weight_timed_at_receipt() -> None:
    payload = bytes.fromhex("02 B0 36 E8 07 01 02 18 00 00")  # 2024-01-02 24:00:00 does not exist
    measurement = WeightMeasurement.from_bytes(payload)
    assert measurement.timestamp == InvalidDateTime(2024, 1, 2, 24, 0, 0)
    assert (measurement.timestamp.field, measurement.timestamp.reason) == ("hours", "reserved_value")
    assert bytes(measurement) == payload
    [reading] = measurement.readings()
    assert (reading.metric, reading.value, reading.device_time) == ("body_weight", 70.0, None)
    assert reading.flags == {"device_time_invalid"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": 0xFFFF},
        {"weight": -1},
        {"weight": 1, "bmi": 200},
        {"weight": 1, "height": 200},
        {"weight": 1, "user_id": 256},
        {"weight": 1, "bmi": 1 << 16, "height": 1},
    ],
)
def test_construction_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidMeasurement):
        WeightMeasurement(**kwargs)  # type: ignore[arg-type]


@given(weights())
def test_round_trip(measurement: WeightMeasurement) -> None:
    assert WeightMeasurement.from_bytes(bytes(measurement)) == measurement
