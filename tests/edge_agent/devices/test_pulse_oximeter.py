from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices.datetime_field import DateTime, InvalidDateTime
from edge_agent.devices.errors import DecodeError
from edge_agent.devices.pulse_oximeter import (
    DEVICE_SENSOR_STATUS_BITS,
    MEASUREMENT_STATUS_BITS,
    PlxContinuousMeasurement,
    PlxSpotCheckMeasurement,
    plx_status_flags,
)
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.sfloat import SFloat, Special

from .strategies import plx_continuous, plx_spot_checks


def test_spezi_spot_check_vector() -> None:
    payload = bytes.fromhex("0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3")
    measurement = PlxSpotCheckMeasurement.from_bytes(payload)
    stamp = DateTime(2024, 11, 29, 23, 8, 57)
    assert measurement == PlxSpotCheckMeasurement(
        spo2=SFloat(940, -1),
        pulse_rate=SFloat(1470, -1),
        timestamp=stamp,
        measurement_status=0x4020,
        device_sensor_status=0x000022,
        pulse_amplitude_index=SFloat(870, -2),
        device_clock_not_set=False,
    )
    assert measurement.pulse_amplitude_index is not None
    assert measurement.pulse_amplitude_index.value == 8.7
    flags = frozenset(
        {
            "measurement_ongoing",  # status bit 5
            "questionable_measurement_detected",  # status bit 14
            "equipment_malfunction_detected",  # device/sensor bit 1
            "low_perfusion_detected",  # device/sensor bit 5
        }
    )
    assert measurement.flags == flags

    def reading(metric: str, value: float, unit: str) -> DecodedReading:
        return DecodedReading(
            characteristic=0x2A5E,
            metric=metric,
            value=value,
            unit=unit,
            device_time=datetime(2024, 11, 29, 23, 8, 57),
            device_time_fields=stamp,
            flags=flags,
        )

    assert measurement.readings() == [reading("spo2", 94.0, "%"), reading("heart_rate", 147.0, "/min")]
    assert bytes(measurement) == payload


def test_spezi_continuous_vector() -> None:
    payload = bytes.fromhex("1C 5F 00 5A 00 20 00 00 00 00 57 F0")
    measurement = PlxContinuousMeasurement.from_bytes(payload)
    assert measurement == PlxContinuousMeasurement(
        spo2=SFloat(95, 0),
        pulse_rate=SFloat(90, 0),
        fast=None,
        slow=None,
        measurement_status=0x0020,
        device_sensor_status=0x000000,
        pulse_amplitude_index=SFloat(87, -1),
    )
    flags = frozenset({"measurement_ongoing"})
    assert measurement.readings() == [
        DecodedReading(characteristic=0x2A5F, metric="spo2", value=95.0, unit="%", flags=flags),
        DecodedReading(characteristic=0x2A5F, metric="heart_rate", value=90.0, unit="/min", flags=flags),
    ]
    assert bytes(measurement) == payload


def test_continuous_fast_and_slow_pairs_are_kept_but_not_read() -> None:
    payload = bytes.fromhex("03 61 00 48 00 62 00 49 00 60 00 47 00")
    measurement = PlxContinuousMeasurement.from_bytes(payload)
    assert measurement.fast == (SFloat(98, 0), SFloat(73, 0))
    assert measurement.slow == (SFloat(96, 0), SFloat(71, 0))
    assert [(r.metric, r.value) for r in measurement.readings()] == [("spo2", 97.0), ("heart_rate", 72.0)]
    assert bytes(measurement) == payload


def test_device_clock_not_set_keeps_the_values_but_not_the_time() -> None:
    # The device says its clock is not set: 2000-01-01 00:00:16 is sixteen seconds after a reset,
    # not when the patient measured. No device_time, so the agent times it at receipt.
    payload = bytes.fromhex("11 62 00 48 00 D0 07 01 01 00 00 10")
    measurement = PlxSpotCheckMeasurement.from_bytes(payload)
    assert measurement.device_clock_not_set
    assert measurement.timestamp == DateTime(2000, 1, 1, 0, 0, 16)
    readings = measurement.readings()
    assert [(r.metric, r.value) for r in readings] == [("spo2", 98.0), ("heart_rate", 72.0)]
    assert [r.flags for r in readings] == [frozenset({"device_clock_not_set"})] * 2
    assert [r.device_time for r in readings] == [None, None]
    assert [r.device_time_fields for r in readings] == [DateTime(2000, 1, 1, 0, 0, 16)] * 2  # as sent
    assert bytes(measurement) == payload


def test_device_clock_not_set_without_a_timestamp() -> None:
    readings = PlxSpotCheckMeasurement.from_bytes(bytes.fromhex("10 62 00 48 00")).readings()
    assert [(r.value, r.device_time, r.device_time_fields) for r in readings] == [
        (98.0, None, None),
        (72.0, None, None),
    ]
    assert all(r.flags == {"device_clock_not_set"} for r in readings)


def test_spot_check_with_a_time_that_cannot_exist() -> None:
    payload = bytes.fromhex("01 62 00 48 00 E8 07 0D 01 00 00 00")  # month 13
    measurement = PlxSpotCheckMeasurement.from_bytes(payload)
    assert measurement.timestamp == InvalidDateTime(2024, 13, 1, 0, 0, 0)
    assert bytes(measurement) == payload
    readings = measurement.readings()
    assert [(r.value, r.device_time, r.device_time_fields) for r in readings] == [
        (98.0, None, None),
        (72.0, None, None),
    ]
    assert all(r.flags == {"device_time_invalid"} for r in readings)


def test_unavailable_spo2_is_an_absent_reading() -> None:
    readings = PlxSpotCheckMeasurement.from_bytes(bytes.fromhex("00 FF 07 00 08")).readings()
    assert [(r.metric, r.value, r.absent_reason) for r in readings] == [
        ("spo2", None, "not-a-number"),
        ("heart_rate", None, "error"),
    ]


def test_status_bit_names() -> None:
    assert plx_status_flags(0xFFFF, 0xFFFFFF) == set(MEASUREMENT_STATUS_BITS.values()) | set(
        DEVICE_SENSOR_STATUS_BITS.values()
    )
    assert plx_status_flags(0x001F, 0xFF0000) == frozenset()  # reserved bits are ignored
    assert plx_status_flags(None, None) == frozenset()
    assert plx_status_flags(1 << 10, 1 << 15) == {"data_for_demonstration", "sensor_disconnected"}


@pytest.mark.parametrize(
    ("cls", "payload", "reason"),
    [
        (PlxSpotCheckMeasurement, "", "truncated"),
        (PlxSpotCheckMeasurement, "00 62 00", "truncated"),
        (PlxSpotCheckMeasurement, "04 62 00 48 00 22 00", "truncated"),  # uint24 cut short
        (PlxSpotCheckMeasurement, "00 62 00 48 00 00", "trailing_bytes"),
        (PlxSpotCheckMeasurement, "20 62 00 48 00", "reserved_value"),
        (PlxContinuousMeasurement, "01 62 00 48 00 62 00", "truncated"),
        (PlxContinuousMeasurement, "00 62 00 48 00 01", "trailing_bytes"),
        (PlxContinuousMeasurement, "40 62 00 48 00", "reserved_value"),
    ],
)
def test_bad_payloads(cls: type[PlxSpotCheckMeasurement], payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        cls.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == cls.CHARACTERISTIC


def test_special_pai_round_trips() -> None:
    measurement = PlxSpotCheckMeasurement(
        SFloat(97, 0), SFloat(60, 0), pulse_amplitude_index=SFloat(special=Special.NRES)
    )
    assert PlxSpotCheckMeasurement.from_bytes(bytes(measurement)) == measurement


@given(plx_spot_checks)
def test_spot_check_round_trip(measurement: PlxSpotCheckMeasurement) -> None:
    assert PlxSpotCheckMeasurement.from_bytes(bytes(measurement)) == measurement


@given(plx_continuous)
def test_continuous_round_trip(measurement: PlxContinuousMeasurement) -> None:
    assert PlxContinuousMeasurement.from_bytes(bytes(measurement)) == measurement
