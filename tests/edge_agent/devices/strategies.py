"""Hypothesis strategies that generate valid measurement types (for round-trip properties)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from edge_agent.devices.blood_pressure import BloodPressureMeasurement, IntermediateCuffPressure, PressureUnit
from edge_agent.devices.datetime_field import CurrentTime, DateTime, DayOfWeek
from edge_agent.devices.glucose import ConcentrationUnit, GlucoseMeasurement, SampleLocation, SampleType
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


current_times = st.builds(CurrentTime, date_times(), st.none() | st.sampled_from(list(DayOfWeek)), u8, u8)

heart_rates = st.builds(
    HeartRateMeasurement,
    u16,
    st.sampled_from(list(SensorContact)),
    st.none() | u16,
    st.lists(u16, max_size=9).map(tuple),
)

# Status words whose pulse-rate range (bits 3-4) is not the reserved value 3.
bp_status = u16.filter(lambda s: (s >> 3) & 3 != 3)

blood_pressures = st.builds(
    BloodPressureMeasurement,
    sfloats,
    sfloats,
    sfloats,
    st.sampled_from(list(PressureUnit)),
    st.none() | date_times(),
    st.none() | sfloats,
    st.none() | u8,
    st.none() | bp_status,
)

cuff_pressures = st.builds(
    IntermediateCuffPressure,
    sfloats,
    st.sampled_from(list(PressureUnit)),
    st.none() | date_times(),
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
    st.none() | date_times(),
    st.none() | st.sampled_from(list(TemperatureType)),
)

plx_spot_checks = st.builds(
    PlxSpotCheckMeasurement,
    sfloats,
    sfloats,
    st.none() | date_times(),
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
        draw(st.none() | date_times()),
        draw(st.none() | u8),
        bmi,
        height,
    )


@st.composite
def glucoses(draw: st.DrawFn) -> GlucoseMeasurement:
    base = draw(date_times())
    offset = draw(st.none() | st.integers(-0x8000, 0x7FFF))
    if base.year == 9999 and offset is not None:
        offset = min(offset, 0)  # base + offset must stay a representable date
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
