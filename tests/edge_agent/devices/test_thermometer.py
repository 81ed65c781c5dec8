from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices.datetime_field import DateTime, InvalidDateTime
from edge_agent.devices.errors import DecodeError, InvalidField
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.sfloat import Float, Special
from edge_agent.devices.thermometer import TemperatureMeasurement, TemperatureType

from .strategies import temperatures


def test_nordic_vector() -> None:
    payload = bytes.fromhex("06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04")
    measurement = TemperatureMeasurement.from_bytes(payload)
    assert measurement == TemperatureMeasurement(
        temperature=Float(3760, -2),
        fahrenheit=False,
        timestamp=DateTime(2012, 12, 5, 11, 50, 27),
        temperature_type=TemperatureType.FINGER,
    )
    assert measurement.readings() == [
        DecodedReading(
            characteristic=0x2A1C,
            metric="body_temperature",
            value=37.6,
            unit="Cel",
            device_time=datetime(2012, 12, 5, 11, 50, 27),
            device_time_fields=DateTime(2012, 12, 5, 11, 50, 27),
            flags=frozenset({"site:finger"}),
        )
    ]
    assert bytes(measurement) == payload


def test_fahrenheit_is_converted_to_celsius() -> None:
    payload = bytes.fromhex("01 DA 03 00 FF")  # 98.6 F, no timestamp, no type
    measurement = TemperatureMeasurement.from_bytes(payload)
    assert measurement == TemperatureMeasurement(Float(986, -1), fahrenheit=True)
    assert measurement.celsius == 37.0
    assert measurement.readings() == [
        DecodedReading(characteristic=0x2A1C, metric="body_temperature", value=37.0, unit="Cel")
    ]
    assert bytes(measurement) == payload


def test_fahrenheit_keeps_two_more_decimals_than_the_device() -> None:
    assert TemperatureMeasurement(Float(1004, -1), fahrenheit=True).celsius == 38.0  # 100.4 F
    assert TemperatureMeasurement(Float(995, -1), fahrenheit=True).celsius == 37.5
    assert TemperatureMeasurement(Float(993, -1), fahrenheit=True).celsius == 37.3889  # 37.38888...


def test_special_value() -> None:
    measurement = TemperatureMeasurement.from_bytes(bytes.fromhex("00 FE FF 7F 00"))
    assert measurement.temperature == Float(special=Special.POSITIVE_INFINITY)
    [reading] = measurement.readings()
    assert (reading.value, reading.absent_reason) == (None, "positive-infinity")


@pytest.mark.parametrize(
    ("code", "site"),
    [
        (1, "armpit"),
        (2, "body"),
        (3, "ear"),
        (4, "finger"),
        (5, "gastrointestinal_tract"),
        (6, "mouth"),
        (7, "rectum"),
        (8, "toe"),
        (9, "tympanum"),
    ],
)
def test_sites(code: int, site: str) -> None:
    measurement = TemperatureMeasurement.from_bytes(bytes((0x04, 0x72, 0x01, 0x00, 0xFF, code)))
    [reading] = measurement.readings()
    assert reading.flags == {f"site:{site}"}
    assert reading.value == 37.0


@pytest.mark.parametrize(
    ("payload", "reason"), [("04 72 01 00 FF 00", "reserved_value"), ("04 72 01 00 FF 0A", "reserved_value")]
)
def test_reserved_type(payload: str, reason: str) -> None:
    with pytest.raises(InvalidField) as caught:
        TemperatureMeasurement.from_bytes(bytes.fromhex(payload))
    assert (caught.value.reason, caught.value.field) == (reason, "temperature_type")


def test_31_february_keeps_the_temperature_timed_at_receipt() -> None:
    # The Nordic thermometer vector with its day changed to 31 February 2012.
    payload = bytes.fromhex("06 B0 0E 00 FE DC 07 02 1F 0B 32 1B 04")
    measurement = TemperatureMeasurement.from_bytes(payload)
    assert measurement.timestamp == InvalidDateTime(2012, 2, 31, 11, 50, 27)
    assert bytes(measurement) == payload
    [reading] = measurement.readings()
    assert (reading.value, reading.device_time, reading.device_time_fields) == (37.6, None, None)
    assert reading.flags == {"site:finger", "device_time_invalid"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("00 72 01 00", "truncated"),
        ("02 72 01 00 FF DC 07 0C", "truncated"),
        ("04 72 01 00 FF", "truncated"),
        ("00 72 01 00 FF 04", "trailing_bytes"),
        ("08 72 01 00 FF", "reserved_value"),
    ],
)
def test_bad_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        TemperatureMeasurement.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == 0x2A1C


@given(temperatures)
def test_round_trip(measurement: TemperatureMeasurement) -> None:
    assert TemperatureMeasurement.from_bytes(bytes(measurement)) == measurement
