"""Hypothesis strategies that generate valid measurement types (for round-trip properties)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from edge_agent.devices.blood_pressure import BloodPressureMeasurement, IntermediateCuffPressure, PressureUnit
from edge_agent.devices.datetime_field import CurrentTime, DateTime, DayOfWeek, InvalidDateTime, Timestamp
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.glucose import ConcentrationUnit, GlucoseMeasurement, SampleLocation, SampleType
from edge_agent.devices.glucose_context import (
    CarbohydrateId,
    GlucoseMeasurementContext,
    Health,
    Meal,
    MedicationId,
    MedicationUnit,
    Tester,
)
from edge_agent.devices.heart_rate import HeartRateMeasurement, SensorContact
from edge_agent.devices.pulse_oximeter import PlxContinuousMeasurement, PlxSpotCheckMeasurement
from edge_agent.devices.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
)
from edge_agent.devices.sfloat import Float, SFloat, Special
from edge_agent.devices.thermometer import TemperatureMeasurement, TemperatureType
from edge_agent.devices.weight_scale import WeightMeasurement

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)

specials = st.sampled_from(list(Special))

sfloats = st.one_of(
    st.builds(SFloat, st.integers(-2045, 2045), st.integers(-8, 7)),
    st.builds(lambda s: SFloat(special=s), specials),
)
floats32 = st.one_of(
    st.builds(Float, st.integers(-8388605, 8388605), st.integers(-128, 127)),
    st.builds(lambda s: Float(special=s), specials),
)


@st.composite
def date_times(draw: st.DrawFn) -> DateTime:
    """Valid Date Time values, each of year/month/day sometimes unknown."""
    moment = draw(st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    year: int | None = moment.year
    month: int | None = moment.month
    day: int | None = moment.day
    if draw(st.booleans()):
        year = None
    if draw(st.booleans()):
        month = None
    if draw(st.booleans()):
        day = None
    return DateTime(year, month, day, moment.hour, moment.minute, moment.second)


def _is_valid_date_time(fields: tuple[int, int, int, int, int, int]) -> bool:
    year, month, day, hours, minutes, seconds = fields
    try:
        DateTime(year or None, month or None, day or None, hours, minutes, seconds)
    except InvalidMeasurement:
        return False
    return True


@st.composite
def invalid_date_times(draw: st.DrawFn) -> InvalidDateTime:
    """Date Time fields that cannot be a time: a reserved value somewhere, or a missing day."""
    fields = draw(
        st.one_of(
            st.tuples(u16, u8, u8, u8, u8, u8),
            # Mostly plausible fields with one wrong: more likely to hit day-of-month errors.
            st.tuples(st.integers(1582, 9999), st.integers(1, 12), st.integers(29, 31), st.integers(0, 25), u8, u8),
        ).filter(lambda f: not _is_valid_date_time(f))
    )
    return InvalidDateTime(*fields)


# What a measurement's timestamp may hold: a valid (maybe incomplete) time or an impossible one.
timestamps: st.SearchStrategy[Timestamp] = st.one_of(date_times(), invalid_date_times())

current_times = st.builds(CurrentTime, date_times(), st.none() | st.sampled_from(list(DayOfWeek)), u8, u8)


@st.composite
def heart_rates(draw: st.DrawFn) -> HeartRateMeasurement:
    malformed = draw(st.none() | st.binary(max_size=9).filter(lambda b: len(b) % 2 == 1 or not b))
    return HeartRateMeasurement(
        draw(u16),
        draw(st.sampled_from(list(SensorContact))),
        draw(st.none() | u16),
        () if malformed is not None else tuple(draw(st.lists(u16, max_size=9))),
        malformed,
    )


# Status words whose pulse-rate range (bits 3-4) is not the reserved value 3.
bp_status = u16.filter(lambda s: (s >> 3) & 3 != 3)

blood_pressures = st.builds(
    BloodPressureMeasurement,
    sfloats,
    sfloats,
    sfloats,
    st.sampled_from(list(PressureUnit)),
    st.none() | timestamps,
    st.none() | sfloats,
    st.none() | u8,
    st.none() | bp_status,
)

cuff_pressures = st.builds(
    IntermediateCuffPressure,
    sfloats,
    st.sampled_from(list(PressureUnit)),
    st.none() | timestamps,
    st.none() | sfloats,
    st.none() | u8,
    st.none() | bp_status,
    sfloats,
    sfloats,
)

temperatures = st.builds(
    TemperatureMeasurement,
    floats32,
    st.booleans(),
    st.none() | timestamps,
    st.none() | st.sampled_from(list(TemperatureType)),
)

plx_spot_checks = st.builds(
    PlxSpotCheckMeasurement,
    sfloats,
    sfloats,
    st.none() | timestamps,
    st.none() | u16,
    st.none() | u24,
    st.none() | sfloats,
    st.booleans(),
)

plx_continuous = st.builds(
    PlxContinuousMeasurement,
    sfloats,
    sfloats,
    st.none() | st.tuples(sfloats, sfloats),
    st.none() | st.tuples(sfloats, sfloats),
    st.none() | u16,
    st.none() | u24,
    st.none() | sfloats,
)


@st.composite
def weights(draw: st.DrawFn) -> WeightMeasurement:
    bmi_height = draw(st.none() | st.tuples(u16, u16))
    bmi, height = bmi_height if bmi_height is not None else (None, None)
    return WeightMeasurement(
        draw(st.none() | st.integers(0, 0xFFFE)),
        draw(st.booleans()),
        draw(st.none() | timestamps),
        draw(st.none() | u8),
        bmi,
        height,
    )


@st.composite
def glucoses(draw: st.DrawFn) -> GlucoseMeasurement:
    base = draw(timestamps)
    offset = draw(st.none() | st.integers(-0x8000, 0x7FFF))
    concentration = draw(st.none() | sfloats)
    has_value = concentration is not None
    return GlucoseMeasurement(
        draw(u16),
        base,
        offset,
        concentration,
        draw(st.sampled_from(list(ConcentrationUnit))),
        draw(st.sampled_from(list(SampleType))) if has_value else None,
        draw(st.sampled_from(list(SampleLocation))) if has_value else None,
        draw(st.none() | u16),
        draw(st.booleans()),
    )


@st.composite
def glucose_contexts(draw: st.DrawFn) -> GlucoseMeasurementContext:
    """Valid contexts: each pair of fields present together or absent together."""
    carb_id = draw(st.none() | st.sampled_from(list(CarbohydrateId)))
    tester = draw(st.none() | st.sampled_from(list(Tester)))
    duration = draw(st.none() | u16)
    med_id = draw(st.none() | st.sampled_from(list(MedicationId)))
    return GlucoseMeasurementContext(
        sequence=draw(u16),
        extended_flags=draw(st.none() | u8),
        carbohydrate_id=carb_id,
        carbohydrate=None if carb_id is None else draw(sfloats),
        meal=draw(st.none() | st.sampled_from(list(Meal))),
        tester=tester,
        health=None if tester is None else draw(st.sampled_from(list(Health))),
        exercise_duration=duration,
        exercise_intensity=None if duration is None else draw(u8),
        medication_id=med_id,
        medication=None if med_id is None else draw(sfloats),
        medication_unit=draw(st.sampled_from(list(MedicationUnit))),
        hba1c=draw(st.none() | sfloats),
    )


@st.composite
def racp_requests(draw: st.DrawFn) -> RacpRequest:
    opcode = draw(st.sampled_from(list(RacpOpcode)[:4]))
    if opcode is RacpOpcode.ABORT_OPERATION:
        return RacpRequest(opcode, RacpOperator.NULL)
    operator = draw(st.sampled_from(list(RacpOperator)[1:]))
    if operator in (RacpOperator.LESS_THAN_OR_EQUAL, RacpOperator.GREATER_THAN_OR_EQUAL):
        return RacpRequest(opcode, operator, (draw(u16),))
    if operator is RacpOperator.WITHIN_RANGE:
        low = draw(u16)
        return RacpRequest(opcode, operator, (low, draw(st.integers(low, 0xFFFF))))
    return RacpRequest(opcode, operator)


racp_responses = st.one_of(
    st.builds(RacpNumberOfRecords, u16),
    st.builds(RacpResponse, u8, st.sampled_from(list(RacpResponseCode))),
)
