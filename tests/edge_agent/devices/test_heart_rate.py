from __future__ import annotations

import pytest
from hypothesis import given

from edge_agent.devices.errors import DecodeError, InvalidMeasurement
from edge_agent.devices.heart_rate import HeartRateMeasurement, SensorContact
from edge_agent.devices.reading import DecodedReading

from .strategies import heart_rates


def test_nordic_vector() -> None:
    payload = bytes.fromhex("1E 55 32 00 21 00")
    measurement = HeartRateMeasurement.from_bytes(payload)
    assert measurement == HeartRateMeasurement(
        heart_rate=85, sensor_contact=SensorContact.DETECTED, energy_expended=50, rr_intervals=(33,)
    )
    assert measurement.rr_intervals_ms == (32.227,)  # 33/1024 s = 32.2265625 ms
    flags = frozenset({"sensor_contact:detected"})
    assert measurement.readings() == [
        DecodedReading(characteristic=0x2A37, metric="heart_rate", value=85.0, unit="/min", flags=flags),
        DecodedReading(characteristic=0x2A37, metric="rr_interval", value=32.227, unit="ms", flags=flags),
    ]
    assert bytes(measurement) == payload


def test_uint16_heart_rate() -> None:
    measurement = HeartRateMeasurement.from_bytes(b"\x01\x2c\x01")
    assert measurement == HeartRateMeasurement(300)
    assert measurement.readings() == [
        DecodedReading(
            characteristic=0x2A37,
            metric="heart_rate",
            value=300.0,
            unit="/min",
            flags=frozenset({"sensor_contact:unsupported"}),
        )
    ]
    assert bytes(measurement) == b"\x01\x2c\x01"


def test_non_canonical_forms_decode_and_reencode_canonically() -> None:
    # A small heart rate sent as uint16, and contact code 1 (also "not supported").
    measurement = HeartRateMeasurement.from_bytes(b"\x03\x50\x00")
    assert measurement == HeartRateMeasurement(80, SensorContact.NOT_SUPPORTED)
    assert bytes(measurement) == b"\x00\x50"


def test_no_sensor_contact_is_not_a_patient_reading() -> None:
    measurement = HeartRateMeasurement.from_bytes(b"\x04\x50")
    assert measurement == HeartRateMeasurement(80, SensorContact.NOT_DETECTED)
    assert measurement.readings() == []
    assert bytes(measurement) == b"\x04\x50"


def test_several_rr_intervals_each_become_a_reading() -> None:
    measurement = HeartRateMeasurement.from_bytes(bytes.fromhex("16 3C 00 04 00 02 01 00"))
    assert measurement == HeartRateMeasurement(60, SensorContact.DETECTED, None, (1024, 512, 1))
    readings = measurement.readings()
    assert [(r.metric, r.value) for r in readings] == [
        ("heart_rate", 60.0),
        ("rr_interval", 1000.0),
        ("rr_interval", 500.0),
        ("rr_interval", 0.977),
    ]
    assert all(r.device_time is None and r.device_time_fields is None for r in readings)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("00", "truncated"),
        ("01 50", "truncated"),  # uint16 heart rate with one byte
        ("08 50 32", "truncated"),  # energy expended cut short
        ("10 50", "truncated"),  # RR flag but no RR value
        ("10 50 00 04 01", "truncated"),  # odd-length RR tail
        ("00 50 00", "trailing_bytes"),
        ("20 50", "reserved_value"),
        ("80 50", "reserved_value"),
    ],
)
def test_bad_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        HeartRateMeasurement.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == 0x2A37


@pytest.mark.parametrize(
    "kwargs",
    [{"heart_rate": 70000}, {"heart_rate": -1}, {"heart_rate": 60, "energy_expended": 1 << 16}],
)
def test_construction_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidMeasurement):
        HeartRateMeasurement(**kwargs)  # type: ignore[arg-type]


def test_rr_values_are_validated() -> None:
    with pytest.raises(InvalidMeasurement) as caught:
        HeartRateMeasurement(60, rr_intervals=(1 << 16,))
    assert caught.value.field == "rr_intervals"


@given(heart_rates)
def test_round_trip(measurement: HeartRateMeasurement) -> None:
    assert HeartRateMeasurement.from_bytes(bytes(measurement)) == measurement
