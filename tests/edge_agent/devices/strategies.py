"""Hypothesis strategies that generate valid measurement types (for round-trip properties)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from edge_agent.devices.datetime_field import CurrentTime, DateTime, DayOfWeek
from edge_agent.devices.sfloat import Float, SFloat, Special

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
