"""SIG Date Time (0x2A08, 7 bytes) and Current Time (0x2A2B, 10 bytes).

Date Time: year uint16 (1582-9999, 0 = unknown), month (1-12, 0 = unknown), day (1-31,
0 = unknown), hours (0-23), minutes (0-59), seconds (0-59). Every other value is reserved and
decodes to an :class:`~edge_agent.devices.errors.InvalidField` (``reserved_value``); a date that
does not exist (30 February; 29 February of a known non-leap year) is ``invalid_value``.

An unknown year/month/day is ``None`` here. Such a time cannot become a ``datetime``:
:meth:`DateTime.to_datetime` returns ``None`` and the fields stay available for display.

A measurement's timestamp is read with :func:`read_timestamp`, which does not reject the
measurement for a time that cannot exist: it returns an :class:`InvalidDateTime` holding the
seven bytes as sent (so the measurement still round-trips), and the reading is timed by the agent
at receipt and flagged ``device_time_invalid`` (:mod:`edge_agent.devices.reading`). Only a
Current Time value (:class:`CurrentTime`) still rejects an impossible date: it carries nothing
but the time.

The device clock has no time zone: every ``datetime`` made here is naive and means "what the
device's clock said". Correcting it to UTC (from the device's Current Time) is the agent's job.
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, le, translating
from edge_agent.devices.errors import InvalidField, InvalidMeasurement

if TYPE_CHECKING:  # reading.py imports this module
    from edge_agent.devices.reading import DecodedReading

__all__ = ["ADJUST_REASONS", "CurrentTime", "DateTime", "DayOfWeek", "InvalidDateTime", "Timestamp", "read_timestamp"]

_DATE_TIME: Final = 0x2A08
_CURRENT_TIME: Final = 0x2A2B


@dataclass(frozen=True, slots=True)
class DateTime:
    """A Date Time field exactly as the device sent it (``None`` = the device sent 0, unknown)."""

    year: int | None
    month: int | None
    day: int | None
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    SIZE: ClassVar[int] = 7

    def __post_init__(self) -> None:
        _check_range("year", self.year, 1582, 9999)
        _check_range("month", self.month, 1, 12)
        _check_range("day", self.day, 1, 31)
        _check_range("hours", self.hours, 0, 23)
        _check_range("minutes", self.minutes, 0, 59)
        _check_range("seconds", self.seconds, 0, 59)
        if self.month is not None and self.day is not None:
            # An unknown year may be a leap year, so 29 February stays possible.
            leap_probe = 2000 if self.year is None else self.year
            if self.day > calendar.monthrange(leap_probe, self.month)[1]:
                raise InvalidMeasurement(_DATE_TIME, "day", "no such day in that month")

    @classmethod
    def read(cls, reader: Reader) -> Self:
        year, month, day = reader.u16(), reader.u8(), reader.u8()
        hours, minutes, seconds = reader.u8(), reader.u8(), reader.u8()
        with translating(reader.characteristic):
            return cls(year or None, month or None, day or None, hours, minutes, seconds)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = Reader(_DATE_TIME, data)
        value = cls.read(reader)
        reader.finish()
        return value

    def __bytes__(self) -> bytes:
        return le(self.year or 0, 2) + bytes((self.month or 0, self.day or 0, self.hours, self.minutes, self.seconds))

    @classmethod
    def from_datetime(cls, value: datetime) -> Self:
        """The fields of ``value`` (its time zone and microseconds are dropped)."""
        return cls(value.year, value.month, value.day, value.hour, value.minute, value.second)

    @property
    def is_complete(self) -> bool:
        return self.year is not None and self.month is not None and self.day is not None

    def to_datetime(self) -> datetime | None:
        """The naive device time, or ``None`` when year, month or day is unknown."""
        if self.year is None or self.month is None or self.day is None:
            return None
        # The device clock has no time zone; this is the device's wall time, not UTC.
        return datetime(  # noqa: DTZ001
            self.year, self.month, self.day, self.hours, self.minutes, self.seconds
        )


@dataclass(frozen=True, slots=True)
class InvalidDateTime:
    """A Date Time field that is no time at all (month 13, 31 February, hour 25, year 1000), kept
    exactly as sent: every field is the raw number, 0 included.

    ``field`` names the first field found wrong and ``reason`` is ``reserved_value`` (a value the
    specification reserves) or ``invalid_value`` (a day the month does not have). Constructing one
    from fields that make a valid (or merely incomplete) :class:`DateTime` raises
    :class:`InvalidMeasurement`, so a timestamp has exactly one representation.
    """

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    SIZE: ClassVar[int] = 7

    def __post_init__(self) -> None:
        check_uint(_DATE_TIME, "year", self.year, 16)
        for name in ("month", "day", "hours", "minutes", "seconds"):
            check_uint(_DATE_TIME, name, getattr(self, name), 8)
        if self._problem() is None:
            raise InvalidMeasurement(_DATE_TIME, "year", "a valid Date Time is a DateTime")

    def _problem(self) -> InvalidMeasurement | None:
        try:
            DateTime(self.year or None, self.month or None, self.day or None, self.hours, self.minutes, self.seconds)
        except InvalidMeasurement as exc:
            return exc
        return None

    @property
    def field(self) -> str:
        problem = self._problem()
        return "" if problem is None else problem.field

    @property
    def reason(self) -> str:
        problem = self._problem()
        return "reserved_value" if problem is not None and problem.reserved else "invalid_value"

    @property
    def is_complete(self) -> bool:
        return False

    def to_datetime(self) -> None:
        """Always ``None``: no instant corresponds to these fields."""
        return None

    def __bytes__(self) -> bytes:
        return le(self.year, 2) + bytes((self.month, self.day, self.hours, self.minutes, self.seconds))


Timestamp = DateTime | InvalidDateTime
"""A measurement's timestamp as sent: a valid (possibly incomplete) Date Time, or one that cannot be."""


def read_timestamp(reader: Reader) -> Timestamp:
    """A measurement's Date Time field; an impossible one is kept as an :class:`InvalidDateTime`."""
    year, month, day = reader.u16(), reader.u8(), reader.u8()
    hours, minutes, seconds = reader.u8(), reader.u8(), reader.u8()
    try:
        return DateTime(year or None, month or None, day or None, hours, minutes, seconds)
    except InvalidMeasurement:
        return InvalidDateTime(year, month, day, hours, minutes, seconds)


class DayOfWeek(enum.IntEnum):
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


ADJUST_REASONS: Final = (
    "manual_time_update",
    "external_reference_time_update",
    "change_of_time_zone",
    "change_of_dst",
)


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time (0x2A2B): Date Time, day of week (``None`` = unknown), fractions of a
    second in 1/256 s, and the adjust-reason bit field (bits 4-7 reserved, kept as sent)."""

    date_time: DateTime
    day_of_week: DayOfWeek | None = None
    fractions256: int = 0
    adjust_reason: int = 0

    CHARACTERISTIC: ClassVar[int] = _CURRENT_TIME
    SIZE: ClassVar[int] = 10

    def __post_init__(self) -> None:
        check_uint(_CURRENT_TIME, "fractions256", self.fractions256, 8)
        check_uint(_CURRENT_TIME, "adjust_reason", self.adjust_reason, 8)
        if self.day_of_week is not None and not isinstance(self.day_of_week, DayOfWeek):
            raise InvalidMeasurement(_CURRENT_TIME, "day_of_week", "must be a DayOfWeek or None")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = Reader(_CURRENT_TIME, data)
        date_time = DateTime.read(reader)
        dow_raw = reader.u8()
        fractions, adjust = reader.u8(), reader.u8()
        reader.finish()
        if dow_raw > len(DayOfWeek):
            raise InvalidField(_CURRENT_TIME, field="day_of_week", reserved=True, detail=f"reserved value {dow_raw}")
        day_of_week = DayOfWeek(dow_raw) if dow_raw else None
        return cls(date_time, day_of_week, fractions, adjust)

    def __bytes__(self) -> bytes:
        tail = (self.day_of_week or 0, self.fractions256, self.adjust_reason)
        return bytes(self.date_time) + bytes(tail)

    @property
    def adjust_reasons(self) -> frozenset[str]:
        return frozenset(n for bit, n in enumerate(ADJUST_REASONS) if self.adjust_reason >> bit & 1)

    def readings(self) -> list[DecodedReading]:
        """Always empty: the device's clock is metadata for the agent, not a patient reading."""
        return []

    def to_datetime(self) -> datetime | None:
        """The naive device time including the fraction (to the microsecond), or ``None``."""
        base = self.date_time.to_datetime()
        if base is None:
            return None
        return base.replace(microsecond=round(self.fractions256 * 1_000_000 / 256))


def _check_range(field: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidMeasurement(_DATE_TIME, field, f"reserved value {value} (valid {low}-{high})", reserved=True)
