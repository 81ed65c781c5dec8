from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices.datetime_field import DateTime, InvalidDateTime
from edge_agent.devices.errors import DecodeError, InvalidField, InvalidMeasurement
from edge_agent.devices.glucose import ConcentrationUnit, GlucoseMeasurement, SampleLocation, SampleType
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.sfloat import SFloat

from .strategies import glucoses


def test_nordic_vector() -> None:
    payload = bytes.fromhex("1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01")
    measurement = GlucoseMeasurement.from_bytes(payload)
    base = DateTime(2019, 2, 27, 11, 10, 30)
    assert measurement == GlucoseMeasurement(
        sequence=1,
        base_time=base,
        time_offset=-5,
        concentration=SFloat(30, 0),  # "30 kg/L (dummy)": decoded as the bytes say
        unit=ConcentrationUnit.KG_PER_L,
        sample_type=SampleType.CAPILLARY_PLASMA,
        sample_location=SampleLocation.FINGER,
        sensor_status=0x0105,
        context_follows=True,
    )
    assert measurement.readings() == [
        DecodedReading(
            characteristic=0x2A18,
            metric="glucose",
            value=3_000_000.0,  # 30 kg/L x 100000
            unit="mg/dL",
            device_time=datetime(2019, 2, 27, 11, 5, 30),  # base time + (-5 min)
            device_time_fields=base,
            time_offset_minutes=-5,
            sequence=1,
            flags=frozenset(
                {
                    "sample:capillary_plasma",
                    "location:finger",
                    "device_battery_low",  # status bit 0
                    "sample_size_insufficient",  # bit 2
                    "sensor_temperature_too_low",  # bit 8
                    "context_follows",
                }
            ),
        )
    ]
    assert bytes(measurement) == payload


def test_kg_per_l_reference_conversion() -> None:
    # docs/reference/ble-gatt.md: 0xB064 = 100 x 10^-5 kg/L = 100 mg/dL
    payload = bytes.fromhex("02 07 00 E8 07 05 06 07 08 09 64 B0 11")
    [reading] = GlucoseMeasurement.from_bytes(payload).readings()
    assert (reading.value, reading.unit, reading.sequence) == (100.0, "mg/dL", 7)
    assert reading.device_time == datetime(2024, 5, 6, 7, 8, 9)
    assert reading.time_offset_minutes is None
    assert reading.flags == {"sample:capillary_whole_blood", "location:finger"}


def test_mol_per_l_conversion() -> None:
    payload = bytes.fromhex("06 02 00 E8 07 05 06 07 08 09 37 C0 F9")  # 55e-4 mol/L = 5.5 mmol/L
    measurement = GlucoseMeasurement.from_bytes(payload)
    assert measurement.unit is ConcentrationUnit.MOL_PER_L
    assert measurement.sample_type is SampleType.INTERSTITIAL_FLUID
    assert measurement.sample_location is SampleLocation.NOT_AVAILABLE
    [reading] = measurement.readings()
    assert reading.value == 99.09  # 5.5 x 18.0156 = 99.0858
    assert reading.flags == {"sample:interstitial_fluid", "location:not_available"}
    assert bytes(measurement) == payload


@pytest.mark.parametrize("type_location", [0x1A, 0x41, 0x4A])
def test_control_solution_is_not_patient_data(type_location: int) -> None:
    payload = bytes.fromhex("02 03 00 E8 07 05 06 07 08 09 64 B0") + bytes((type_location,))
    measurement = GlucoseMeasurement.from_bytes(payload)
    assert measurement.is_control_solution
    assert measurement.readings() == []


def test_record_without_concentration_has_no_reading() -> None:
    payload = bytes.fromhex("08 04 00 E8 07 05 06 07 08 09 08 00")
    measurement = GlucoseMeasurement.from_bytes(payload)
    assert measurement == GlucoseMeasurement(4, DateTime(2024, 5, 6, 7, 8, 9), sensor_status=0x0008)
    assert measurement.flags == {"strip_insertion_error"}
    assert measurement.readings() == []


def test_incomplete_base_time_keeps_the_offset() -> None:
    payload = bytes.fromhex("03 09 00 00 00 05 06 07 08 09 0A 00 64 B0 11")
    [reading] = GlucoseMeasurement.from_bytes(payload).readings()
    assert reading.device_time is None
    assert reading.device_time_fields == DateTime(None, 5, 6, 7, 8, 9)
    assert reading.time_offset_minutes == 10
    assert "device_time_incomplete" in reading.flags


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("02 01 00 E8 07 05 06 07 08 09 64 B0 10", "sample_type"),  # type 0
        ("02 01 00 E8 07 05 06 07 08 09 64 B0 1B", "sample_type"),  # type 11
        ("02 01 00 E8 07 05 06 07 08 09 64 B0 01", "sample_location"),  # location 0
        ("02 01 00 E8 07 05 06 07 08 09 64 B0 51", "sample_location"),  # location 5
    ],
)
def test_reserved_type_and_location(payload: str, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        GlucoseMeasurement.from_bytes(bytes.fromhex(payload))
    assert (caught.value.field, caught.value.reason, caught.value.characteristic) == (field, "reserved_value", 0x2A18)


def test_offset_past_year_9999_keeps_the_record_without_a_device_time() -> None:
    # 9999-12-31 23:59:59 + 1 minute: no such time; the reading is kept, timed at receipt.
    payload = bytes.fromhex("03 01 00 0F 27 0C 1F 17 3B 3B 01 00 64 B0 11")
    measurement = GlucoseMeasurement.from_bytes(payload)
    assert bytes(measurement) == payload
    [reading] = measurement.readings()
    assert (reading.value, reading.device_time, reading.time_offset_minutes) == (100.0, None, 1)
    assert reading.device_time_fields == DateTime(9999, 12, 31, 23, 59, 59)  # valid as sent
    assert "device_time_invalid" in reading.flags


def test_base_time_that_cannot_exist_keeps_the_record() -> None:
    payload = bytes.fromhex("02 05 00 E7 07 02 1F 08 00 00 64 B0 11")  # 31 February 2023
    measurement = GlucoseMeasurement.from_bytes(payload)
    assert measurement.base_time == InvalidDateTime(2023, 2, 31, 8, 0, 0)
    assert bytes(measurement) == payload
    [reading] = measurement.readings()
    assert (reading.value, reading.sequence, reading.device_time, reading.device_time_fields) == (100.0, 5, None, None)
    assert reading.flags == {"sample:capillary_whole_blood", "location:finger", "device_time_invalid"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("00 01 00 E8 07 05 06 07 08", "truncated"),
        ("01 01 00 E8 07 05 06 07 08 09 01", "truncated"),
        ("02 01 00 E8 07 05 06 07 08 09 64 B0", "truncated"),
        ("00 01 00 E8 07 05 06 07 08 09 00", "trailing_bytes"),
        ("20 01 00 E8 07 05 06 07 08 09", "reserved_value"),
    ],
)
def test_bad_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        GlucoseMeasurement.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == 0x2A18


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concentration": SFloat(100, -5)},  # no type/location
        {"sample_type": SampleType.CAPILLARY_PLASMA, "sample_location": SampleLocation.FINGER},
        {"time_offset": 0x8000},
        {"sequence": 1 << 16},
        {"sensor_status": -1},
    ],
)
def test_construction_is_validated(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"sequence": 1, "base_time": DateTime(2024, 1, 1)}
    fields.update(kwargs)
    with pytest.raises(InvalidMeasurement):
        GlucoseMeasurement(**fields)  # type: ignore[arg-type]


@given(glucoses())
def test_round_trip(measurement: GlucoseMeasurement) -> None:
    assert GlucoseMeasurement.from_bytes(bytes(measurement)) == measurement
