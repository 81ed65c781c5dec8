"""Glucose Measurement Context (0x2A34): every field, the public vectors, pairing with its record."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given

from edge_agent.devices import glucose_context as gc
from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.errors import DecodeError, InvalidField, InvalidMeasurement
from edge_agent.devices.glucose import GlucoseMeasurement, SampleLocation, SampleType
from edge_agent.devices.glucose_context import (
    CONTEXT_MISSING,
    MEAL_FLAGS,
    CarbohydrateId,
    GlucoseMeasurementContext,
    Health,
    Meal,
    MedicationId,
    MedicationUnit,
    paired_readings,
)
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.sfloat import SFloat, Special

from .strategies import glucose_contexts, glucoses

# Nordic Android BLE Common Library, GlucoseMeasurementContextDataCallbackTest
# onGlucoseMeasurementContextReceived_full: the test writes the fields with MutableData.setValue,
# whose float-to-SFLOAT rounding (Antidote's algorithm) gives 100.0 -> 0x0064 (100e0),
# 123.45 -> 0xF4D2 (1234e-1) and 34.5 -> 0xF159 (345e-1).
NORDIC_FULL = "FF 00 00 B3 03 64 00 04 12 3C 00 32 04 D2 F4 59 F1"


def test_nordic_full_vector_decodes_every_field() -> None:
    payload = bytes.fromhex(NORDIC_FULL)
    context = GlucoseMeasurementContext.from_bytes(payload)
    assert context == GlucoseMeasurementContext(
        sequence=0,
        extended_flags=0xB3,  # reserved bits, kept as sent ("ignored" in Nordic's test)
        carbohydrate_id=CarbohydrateId.DINNER,
        carbohydrate=SFloat(100, 0),
        meal=Meal.CASUAL,
        tester=gc.Tester.HEALTH_CARE_PROFESSIONAL,  # low nibble 2
        health=Health.MINOR_HEALTH_ISSUES,  # high nibble 1
        exercise_duration=60,
        exercise_intensity=50,
        medication_id=MedicationId.LONG_ACTING_INSULIN,
        medication=SFloat(1234, -1),
        medication_unit=MedicationUnit.LITRES,  # flag bit 5
        hba1c=SFloat(345, -1),
    )
    # The SIG units are kilograms and litres (Nordic's test calls them grams and millilitres).
    assert context.carbohydrate_grams == 100_000.0
    assert context.medication_milli == 123_400.0
    assert not context.exercise_overrun
    assert context.readings() == [
        DecodedReading(
            characteristic=0x2A34, metric="hba1c", value=34.5, unit="%", sequence=0, flags=frozenset({"meal_casual"})
        )
    ]
    assert bytes(context) == payload


def test_nordic_empty_vector() -> None:
    # onGlucoseMeasurementContextReceived_empty: flags 0, sequence 1. Nordic's test passes a
    # 17-byte zero-padded buffer; a SIG value ends after the announced fields, so only 3 bytes.
    context = GlucoseMeasurementContext.from_bytes(bytes.fromhex("00 01 00"))
    assert context == GlucoseMeasurementContext(sequence=1)
    assert context.readings() == []
    assert bytes(context) == bytes.fromhex("00 01 00")
    with pytest.raises(DecodeError) as caught:
        GlucoseMeasurementContext.from_bytes(bytes.fromhex("00 01 00") + bytes(14))
    assert caught.value.reason == "trailing_bytes"


def test_nordic_invalid_vector_is_truncated() -> None:
    # onInvalidDataReceived: flags 0xFF promise 17 bytes; 5 were sent.
    with pytest.raises(DecodeError) as caught:
        GlucoseMeasurementContext.from_bytes(bytes.fromhex("FF 00 00 B3 03"))
    assert (caught.value.reason, caught.value.characteristic) == ("truncated", 0x2A34)


@pytest.mark.parametrize(
    ("code", "meal", "flag"),
    [
        (1, Meal.PREPRANDIAL, "meal_preprandial"),
        (2, Meal.POSTPRANDIAL, "meal_postprandial"),
        (3, Meal.FASTING, "meal_fasting"),
        (4, Meal.CASUAL, "meal_casual"),
        (5, Meal.BEDTIME, "meal_bedtime"),
    ],
)
def test_each_meal_and_its_flag(code: int, meal: Meal, flag: str) -> None:
    payload = bytes((0x42, 0x07, 0x00, code)) + bytes.fromhex("41 F0")  # meal + HbA1c 6.5 %
    context = GlucoseMeasurementContext.from_bytes(payload)
    assert (context.meal, context.flags, MEAL_FLAGS[meal]) == (meal, {flag}, flag)
    [reading] = context.readings()
    assert (reading.metric, reading.value, reading.unit, reading.flags) == ("hba1c", 6.5, "%", {flag})


def test_medication_in_kilograms_and_exercise_overrun() -> None:
    payload = bytes.fromhex("18 2A 00 FF FF 64 01 0A D0")  # exercise 0xFFFF s at 100 %, rapid insulin 10e-3 kg
    context = GlucoseMeasurementContext.from_bytes(payload)
    assert (context.exercise_duration, context.exercise_intensity, context.exercise_overrun) == (0xFFFF, 100, True)
    assert (context.medication_id, context.medication_unit) == (
        MedicationId.RAPID_ACTING_INSULIN,
        MedicationUnit.KILOGRAMS,
    )
    assert context.medication_milli == 10.0  # 10 mg
    assert bytes(context) == payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("01 01 00 00 64 00", "carbohydrate_id"),  # 0
        ("01 01 00 08 64 00", "carbohydrate_id"),  # 8
        ("02 01 00 00", "meal"),
        ("02 01 00 06", "meal"),
        ("04 01 00 10", "tester"),  # tester 0
        ("04 01 00 14", "tester"),  # tester 4
        ("04 01 00 01", "health"),  # health 0
        ("04 01 00 61", "health"),  # health 6
        ("10 01 00 00 64 00", "medication_id"),
        ("10 01 00 06 64 00", "medication_id"),
    ],
)
def test_reserved_codes(payload: str, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        GlucoseMeasurementContext.from_bytes(bytes.fromhex(payload))
    assert (caught.value.field, caught.value.reason, caught.value.characteristic) == (field, "reserved_value", 0x2A34)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("00 01", "truncated"),
        ("80 01 00", "truncated"),  # extended flags announced, missing
        ("40 01 00 41", "truncated"),  # half an HbA1c
        ("00 01 00 00", "trailing_bytes"),
        ("80 01 00 01 41 F0", "trailing_bytes"),  # an extension's unknown field is refused, not misread
    ],
)
def test_bad_payloads(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        GlucoseMeasurementContext.from_bytes(bytes.fromhex(payload))
    assert (caught.value.reason, caught.value.characteristic) == (reason, 0x2A34)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sequence": 1 << 16},
        {"carbohydrate_id": CarbohydrateId.LUNCH},  # without the amount
        {"carbohydrate": SFloat(5, -2)},
        {"tester": gc.Tester.SELF},  # without health
        {"exercise_duration": 60},
        {"exercise_duration": 60, "exercise_intensity": 256},
        {"medication": SFloat(1, -3)},
        {"extended_flags": 256},
    ],
)
def test_construction_is_validated(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"sequence": 1}
    fields.update(kwargs)
    with pytest.raises(InvalidMeasurement):
        GlucoseMeasurementContext(**fields)  # type: ignore[arg-type]


@given(glucose_contexts())
def test_round_trip(context: GlucoseMeasurementContext) -> None:
    payload = bytes(context)
    assert GlucoseMeasurementContext.from_bytes(payload) == context
    assert bytes(GlucoseMeasurementContext.from_bytes(payload)) == payload


# -- pairing ------------------------------------------------------------------------------

RECORD = GlucoseMeasurement(
    sequence=7,
    base_time=DateTime(2026, 3, 1, 7, 30, 0),
    time_offset=-30,
    concentration=SFloat(112, -5),
    sample_type=SampleType.CAPILLARY_PLASMA,
    sample_location=SampleLocation.FINGER,
    context_follows=True,
)


def test_paired_readings_carry_the_meal_and_hba1c_timed_like_the_glucose() -> None:
    context = GlucoseMeasurementContext(7, meal=Meal.PREPRANDIAL, hba1c=SFloat(68, -1))
    glucose, hba1c = paired_readings(RECORD, context)
    assert (glucose.metric, glucose.value, glucose.sequence) == ("glucose", 112.0, 7)
    assert glucose.flags == {"sample:capillary_plasma", "location:finger", "context_follows", "meal_preprandial"}
    assert (hba1c.metric, hba1c.value, hba1c.unit, hba1c.characteristic) == ("hba1c", 6.8, "%", 0x2A34)
    assert hba1c.flags == {"meal_preprandial"}  # not the glucose sample's type or site
    assert glucose.device_time == hba1c.device_time == datetime(2026, 3, 1, 7, 0, 0)  # base - 30 min
    assert hba1c.sequence == 7


def test_a_context_without_hba1c_only_flags_the_glucose() -> None:
    [glucose] = paired_readings(RECORD, GlucoseMeasurementContext(7, meal=Meal.FASTING))
    assert "meal_fasting" in glucose.flags


def test_a_record_whose_context_never_came() -> None:
    [glucose] = paired_readings(RECORD, None, context_missing=True)
    assert (glucose.value, CONTEXT_MISSING in glucose.flags) == (112.0, True)
    assert not any(f.startswith("meal_") for f in glucose.flags)


def test_a_record_without_concentration_still_gives_its_hba1c() -> None:
    record = GlucoseMeasurement(8, DateTime(2026, 3, 1, 9, 0, 0), context_follows=True)
    [hba1c] = paired_readings(record, GlucoseMeasurementContext(8, hba1c=SFloat(71, -1)))
    assert (hba1c.metric, hba1c.value, hba1c.device_time) == ("hba1c", 7.1, datetime(2026, 3, 1, 9, 0, 0))


def test_control_solution_has_no_readings_even_with_a_context() -> None:
    control = GlucoseMeasurement(
        9, DateTime(2026, 3, 1), concentration=SFloat(100, -5),
        sample_type=SampleType.CONTROL_SOLUTION, sample_location=SampleLocation.FINGER, context_follows=True,
    )  # fmt: skip
    assert paired_readings(control, GlucoseMeasurementContext(9, hba1c=SFloat(70, -1))) == []


def test_an_absent_hba1c_is_an_absent_reading() -> None:
    [_, hba1c] = paired_readings(RECORD, GlucoseMeasurementContext(7, hba1c=SFloat(special=Special.NAN)))
    assert (hba1c.value, hba1c.absent_reason) == (None, "not-a-number")


def test_a_context_of_another_record_is_refused() -> None:
    with pytest.raises(InvalidMeasurement) as caught:
        paired_readings(RECORD, GlucoseMeasurementContext(8, meal=Meal.BEDTIME))
    assert caught.value.field == "sequence"


@given(glucoses(), glucose_contexts())
def test_pairing_any_record_with_any_context(record: GlucoseMeasurement, context: GlucoseMeasurementContext) -> None:
    context = GlucoseMeasurementContext.from_bytes(bytes(context)[:1] + bytes(record)[1:3] + bytes(context)[3:])
    readings = paired_readings(record, context)
    glucose = [r for r in readings if r.metric == "glucose"]
    assert glucose == [DecodedReading(**{**_fields(r), "flags": r.flags | context.flags}) for r in record.readings()]
    assert len([r for r in readings if r.metric == "hba1c"]) == (
        context.hba1c is not None and not record.is_control_solution
    )


def _fields(reading: DecodedReading) -> dict[str, object]:
    return {name: getattr(reading, name) for name in DecodedReading.__dataclass_fields__}
