"""The registry and ``decode()``: dispatch, every public vector end to end, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.devices import REGISTRY, DecodedReading, DecodeError, Measurement, decode, parse
from edge_agent.devices.battery import BatteryLevel
from edge_agent.devices.blood_pressure import BloodPressureMeasurement, IntermediateCuffPressure
from edge_agent.devices.errors import UnknownCharacteristic
from edge_agent.devices.racp import RacpResponse
from edge_agent.devices.sfloat import ABSENT_REASONS
from rpm_core.metrics import CATALOGUE

from . import strategies

# docs/reference/ble-gatt.md "Public test vectors": (characteristic, bytes, [(metric, value)]). Every field of each
# is checked in the profile's own test module; here the public entry point must agree.
VECTORS = [
    (0x2A37, "1E 55 32 00 21 00", [("heart_rate", 85.0), ("rr_interval", 32.227)]),
    (
        0x2A35,
        "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00",
        [("bp_systolic", 138.0), ("bp_diastolic", 88.0), ("bp_mean", 120.0), ("heart_rate", 60.0)],
    ),
    (
        0x2A35,
        "15 BD F0 0B 00 9F F0 3C 00 12 00",
        [("bp_systolic", 141.762), ("bp_diastolic", 82.51), ("bp_mean", 119.26), ("heart_rate", 60.0)],
    ),
    (0x2A1C, "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04", [("body_temperature", 37.6)]),
    (0x2A18, "1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01", [("glucose", 3_000_000.0)]),
    (0x2A5E, "0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3", [("spo2", 94.0), ("heart_rate", 147.0)]),
    (0x2A5F, "1C 5F 00 5A 00 20 00 00 00 00 57 F0", [("spo2", 95.0), ("heart_rate", 90.0)]),
    (0x2A9D, "00 B0 36", [("body_weight", 70.0)]),
    (0x2A9D, "01 54 3D", [("body_weight", 71.214)]),
    # Nordic Android BLE Common Library, GlucoseMeasurementContextDataCallbackTest (every field).
    (0x2A34, "FF 00 00 B3 03 64 00 04 12 3C 00 32 04 D2 F4 59 F1", [("hba1c", 34.5)]),
]


@pytest.mark.parametrize(("characteristic", "payload", "expected"), VECTORS)
def test_public_vectors_through_decode(characteristic: int, payload: str, expected: list[tuple[str, float]]) -> None:
    raw = bytes.fromhex(payload)
    readings = decode(characteristic, raw)
    assert [(r.metric, r.value) for r in readings] == expected
    assert all(r.characteristic == characteristic for r in readings)
    assert all(r.unit == CATALOGUE[r.metric].unit for r in readings)
    assert bytes(parse(characteristic, raw)) == raw  # canonical payloads round-trip


def test_parse_returns_the_typed_measurement() -> None:
    measurement = parse(0x2A35, bytes.fromhex("15 BD F0 0B 00 9F F0 3C 00 12 00"))
    assert isinstance(measurement, BloodPressureMeasurement)
    assert isinstance(parse(0x2A36, bytes.fromhex("00 96 00 FF 07 FF 07")), IntermediateCuffPressure)
    assert isinstance(parse(0x2A52, bytes.fromhex("06 00 01 01")), RacpResponse)


@pytest.mark.parametrize(
    ("characteristic", "payload"),
    [
        (0x2A36, "00 96 00 FF 07 FF 07"),  # intermediate cuff pressure
        (0x2A37, "04 50"),  # sensor contact not detected
        (0x2A18, "02 03 00 E8 07 05 06 07 08 09 64 B0 1A"),  # control solution
        (0x2A19, "64"),  # battery
        (0x2A2B, "E8 07 0B 1D 17 08 39 05 80 03"),  # current time
        (0x2A52, "05 00 2A 00"),  # RACP number of records
        (0x2A34, "00 01 00"),  # glucose context without HbA1c
    ],
)
def test_valid_values_without_patient_readings(characteristic: int, payload: str) -> None:
    assert decode(characteristic, bytes.fromhex(payload)) == []


def test_registry_covers_the_profiles() -> None:
    assert set(REGISTRY) == {
        0x2A37, 0x2A35, 0x2A36, 0x2A1C, 0x2A5E, 0x2A5F, 0x2A9D, 0x2A18, 0x2A34, 0x2A52, 0x2A19, 0x2A2B,
    }  # fmt: skip
    assert REGISTRY[0x2A34].name == "glucose_measurement_context"
    assert all(p.characteristic == c for c, p in REGISTRY.items())
    assert REGISTRY[0x2A35].name == "blood_pressure_measurement"


@pytest.mark.parametrize("characteristic", [0x2A00, 0x2A51, 0, 0x1_0000])
def test_unknown_characteristic(characteristic: int) -> None:
    with pytest.raises(UnknownCharacteristic) as caught:
        decode(characteristic, b"\x00")
    assert caught.value.reason == "unknown_characteristic"
    assert caught.value.characteristic == characteristic


@pytest.mark.parametrize("characteristic", sorted(REGISTRY))
def test_empty_payload_is_truncated(characteristic: int) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(characteristic, b"")
    assert caught.value.reason == "truncated"
    assert caught.value.characteristic == characteristic


def _decode_or_error(characteristic: int, payload: bytes) -> list[DecodedReading] | DecodeError:
    """Anything but a DecodeError propagates and fails the test."""
    try:
        return decode(characteristic, payload)
    except DecodeError as exc:
        return exc


def _check_readings(characteristic: int, readings: list[DecodedReading]) -> None:
    for reading in readings:
        assert reading.characteristic == characteristic
        assert reading.unit == CATALOGUE[reading.metric].unit
        assert (reading.value is None) == (reading.absent_reason in ABSENT_REASONS)
        assert reading.device_time is None or reading.device_time.tzinfo is None
        assert all(flag == flag.lower() and " " not in flag for flag in reading.flags)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(REGISTRY)), st.binary(max_size=48))
def test_random_bytes_only_ever_give_readings_or_decode_error(characteristic: int, payload: bytes) -> None:
    outcome = _decode_or_error(characteristic, payload)
    if isinstance(outcome, DecodeError):
        assert outcome.characteristic == characteristic
        assert outcome.reason in {"truncated", "trailing_bytes", "reserved_value", "invalid_value"}
    else:
        _check_readings(characteristic, outcome)


_VALID: dict[int, st.SearchStrategy[Measurement]] = {
    0x2A37: strategies.heart_rates(),
    0x2A35: strategies.blood_pressures,
    0x2A36: strategies.cuff_pressures,
    0x2A1C: strategies.temperatures,
    0x2A5E: strategies.plx_spot_checks,
    0x2A5F: strategies.plx_continuous,
    0x2A9D: strategies.weights(),
    0x2A18: strategies.glucoses(),
    0x2A34: strategies.glucose_contexts(),
    0x2A52: strategies.racp_responses,
    0x2A19: st.builds(BatteryLevel, st.integers(0, 100)),
    0x2A2B: strategies.current_times,
}


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[int, bytes]:
    """A valid payload, then truncated, extended or with one byte replaced: reaches deep fields."""
    characteristic = draw(st.sampled_from(sorted(_VALID)))
    payload = bytearray(bytes(draw(_VALID[characteristic])))
    how = draw(st.sampled_from(["truncate", "extend", "replace"]))
    if how == "truncate":
        del payload[draw(st.integers(0, len(payload) - 1)) :]
    elif how == "extend":
        payload += draw(st.binary(min_size=1, max_size=4))
    else:
        payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
    return characteristic, bytes(payload)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_payloads_only_ever_give_readings_or_decode_error(case: tuple[int, bytes]) -> None:
    characteristic, payload = case
    outcome = _decode_or_error(characteristic, payload)
    if isinstance(outcome, DecodeError):
        assert outcome.characteristic == characteristic
    else:
        _check_readings(characteristic, outcome)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_VALID)).flatmap(lambda c: st.tuples(st.just(c), _VALID[c])))
def test_generated_measurements_round_trip_through_parse(case: tuple[int, Measurement]) -> None:
    characteristic, measurement = case
    payload = bytes(measurement)
    assert parse(characteristic, payload) == measurement
    assert bytes(parse(characteristic, payload)) == payload
    _check_readings(characteristic, decode(characteristic, payload))
