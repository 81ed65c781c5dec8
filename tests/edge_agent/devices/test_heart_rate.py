from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.devices.errors import DecodeError, InvalidMeasurement
from edge_agent.devices.heart_rate import RR_TRUNCATED, HeartRateMeasurement, SensorContact
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
        ("18 50 32", "truncated"),  # energy cut short before an RR field: the prefix is incomplete
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


@pytest.mark.parametrize(
    ("payload", "heart_rate", "malformed"),
    [
        ("10 50", 80, b""),  # the RR flag, but no RR value
        ("10 50 04", 80, b"\x04"),  # one odd trailing byte
        ("10 50 00 04 01", 80, b"\x00\x04\x01"),  # a whole interval and a stray byte: which is which?
        ("1E 55 32 00 21 00 21", 85, b"\x21\x00\x21"),  # Nordic's vector with one byte too many
        ("11 2C 01 00", 300, b"\x00"),  # uint16 heart rate
    ],
)
def test_malformed_rr_field_keeps_the_heart_rate(payload: str, heart_rate: int, malformed: bytes) -> None:
    raw = bytes.fromhex(payload)
    measurement = HeartRateMeasurement.from_bytes(raw)
    assert (measurement.heart_rate, measurement.rr_intervals, measurement.rr_malformed) == (heart_rate, (), malformed)
    assert measurement.rr_truncated
    [reading] = measurement.readings()  # no RR interval reading from a field that lost a byte
    assert (reading.metric, reading.value) == ("heart_rate", float(heart_rate))
    assert RR_TRUNCATED in reading.flags
    assert bytes(measurement) == raw  # kept as sent


def test_no_contact_with_a_malformed_rr_field_is_still_no_reading() -> None:
    assert HeartRateMeasurement.from_bytes(bytes.fromhex("14 50 04")).readings() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rr_intervals": (1,), "rr_malformed": b"\x01"},  # intervals come only from a whole field
        {"rr_malformed": b"\x01\x02"},  # an even field is well formed
    ],
)
def test_malformed_rr_field_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidMeasurement) as caught:
        HeartRateMeasurement(60, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == "rr_malformed"


@st.composite
def _valid_prefix_then_anything(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """Flags with the RR bit set, a whole heart rate (and energy), then any bytes at all."""
    flags = draw(st.integers(0, 0x0F)) | 0x10
    wide = bool(flags & 0x01)
    heart_rate = draw(st.integers(0, 0xFFFF if wide else 0xFF))
    prefix = bytes((flags,)) + heart_rate.to_bytes(2 if wide else 1, "little")
    if flags & 0x08:
        prefix += draw(st.binary(min_size=2, max_size=2))
    return prefix, draw(st.binary(max_size=40)), heart_rate


@given(_valid_prefix_then_anything())
def test_any_packet_with_a_valid_prefix_yields_its_heart_rate(case: tuple[bytes, bytes, int]) -> None:
    prefix, tail, heart_rate = case
    measurement = HeartRateMeasurement.from_bytes(prefix + tail)
    assert measurement.heart_rate == heart_rate
    whole = bool(tail) and len(tail) % 2 == 0
    assert measurement.rr_malformed == (None if whole else tail)
    assert len(measurement.rr_intervals) == (len(tail) // 2 if whole else 0)
    assert HeartRateMeasurement.from_bytes(bytes(measurement)) == measurement
    readings = measurement.readings()
    if measurement.sensor_contact is SensorContact.NOT_DETECTED:
        assert readings == []
        return
    assert (readings[0].metric, readings[0].value) == ("heart_rate", float(heart_rate))
    assert all((RR_TRUNCATED in r.flags) != whole for r in readings)


def test_rr_values_are_validated() -> None:
    with pytest.raises(InvalidMeasurement) as caught:
        HeartRateMeasurement(60, rr_intervals=(1 << 16,))
    assert caught.value.field == "rr_intervals"


@given(heart_rates())
def test_round_trip(measurement: HeartRateMeasurement) -> None:
    assert HeartRateMeasurement.from_bytes(bytes(measurement)) == measurement
