"""The output of every decoder: :class:`DecodedReading`, one patient quantity in its canonical unit.

A reading carries what the device said and nothing the agent adds: the value converted to the
catalogue's UCUM unit (or ``None`` with a FHIR ``dataAbsentReason`` when the device sent an
IEEE 11073 special value), the device's own clock reading, and status flags.

Device time
    ``device_time`` is a naive ``datetime``: the device's wall clock, no zone, no correction.
    It is ``None`` when the measurement has no timestamp, and also when the device sent year,
    month or day as 0 ("unknown"); then ``device_time_fields`` still holds the raw
    :class:`~edge_agent.devices.datetime_field.DateTime` and the flag ``device_time_incomplete``
    is set. For glucose, ``device_time`` is base time + ``time_offset_minutes`` (the offset the
    meter applies to its base time), and ``device_time_fields`` is the base time as sent.

    A time that cannot exist (31 February, month 13, hour 25, or a glucose base time whose offset
    runs past year 9999) never rejects the measurement: ``device_time`` is ``None`` (and so is
    ``device_time_fields``, unless the fields themselves were valid) and the flag
    ``device_time_invalid`` is set. When the device itself says its clock
    is not set (PLX spot-check flag bit 4), ``device_time`` is ``None`` and ``device_time_fields``
    keeps what it sent, flagged ``device_clock_not_set``. Either way the agent times the reading
    at receipt (:func:`edge_agent.timefix.measured_at` of ``None``), never by that clock.

Flags
    Stable lowercase strings. Booleans are bare names (``irregular_pulse``); enumerations are
    ``key:value`` (``site:finger``, ``sample:capillary_plasma``, ``sensor_contact:detected``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge_agent.devices.datetime_field import DateTime, InvalidDateTime, Timestamp
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.sfloat import ABSENT_REASONS, MedFloat
from rpm_core.metrics import CATALOGUE

__all__ = ["DEVICE_TIME_INCOMPLETE", "DEVICE_TIME_INVALID", "DecodedReading", "ReadingContext"]

DEVICE_TIME_INCOMPLETE = "device_time_incomplete"
DEVICE_TIME_INVALID = "device_time_invalid"


@dataclass(frozen=True, slots=True)
class DecodedReading:
    """One quantity decoded from one characteristic value."""

    characteristic: int
    metric: str
    value: float | None
    unit: str
    absent_reason: str | None = None
    device_time: datetime | None = None
    device_time_fields: DateTime | None = None
    time_offset_minutes: int | None = None
    sequence: int | None = None
    user_id: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        entry = CATALOGUE.get(self.metric)
        if entry is None:
            raise InvalidMeasurement(self.characteristic, "metric", f"{self.metric!r} not in catalogue")
        if self.unit != entry.unit:
            raise InvalidMeasurement(self.characteristic, "unit", f"{self.metric} is in {entry.unit}")
        if (self.value is None) == (self.absent_reason is None):
            raise InvalidMeasurement(self.characteristic, "absent_reason", "exactly one of value and absent_reason")
        if self.value is not None and not math.isfinite(self.value):
            raise InvalidMeasurement(self.characteristic, "value", "must be finite")
        if self.absent_reason is not None and self.absent_reason not in ABSENT_REASONS:
            raise InvalidMeasurement(self.characteristic, "absent_reason", "not a FHIR code")
        if self.device_time is not None and self.device_time.tzinfo is not None:
            raise InvalidMeasurement(self.characteristic, "device_time", "must be naive")


@dataclass(frozen=True, slots=True)
class ReadingContext:
    """What the readings of one measurement share; builds them. Used by the profile modules."""

    characteristic: int
    device_time: datetime | None = None
    device_time_fields: DateTime | None = None
    time_offset_minutes: int | None = None
    sequence: int | None = None
    user_id: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def create(
        cls,
        characteristic: int,
        timestamp: Timestamp | None = None,
        *,
        offset_minutes: int | None = None,
        flags: Iterable[str] = (),
        sequence: int | None = None,
        user_id: int | None = None,
        clock_set: bool = True,
    ) -> ReadingContext:
        """``timestamp`` (plus ``offset_minutes``, if any) becomes ``device_time``, unless it
        cannot exist or ``clock_set`` is false (the device says its clock is not set)."""
        all_flags = set(flags)
        device_time = None
        fields: DateTime | None = None
        if isinstance(timestamp, InvalidDateTime):
            all_flags.add(DEVICE_TIME_INVALID)
        elif timestamp is not None:
            fields = timestamp
            device_time = timestamp.to_datetime() if clock_set else None
            if clock_set and device_time is None:
                all_flags.add(DEVICE_TIME_INCOMPLETE)
            elif device_time is not None and offset_minutes:
                try:
                    device_time += timedelta(minutes=offset_minutes)
                except OverflowError:  # base time + offset runs past year 9999
                    device_time = None
                    all_flags.add(DEVICE_TIME_INVALID)
        return cls(
            characteristic,
            device_time,
            fields,
            offset_minutes,
            sequence,
            user_id,
            frozenset(all_flags),
        )

    def reading(self, metric: str, value: float | None, absent_reason: str | None = None) -> DecodedReading:
        return DecodedReading(
            characteristic=self.characteristic,
            metric=metric,
            value=value,
            unit=CATALOGUE[metric].unit,
            absent_reason=absent_reason,
            device_time=self.device_time,
            device_time_fields=self.device_time_fields,
            time_offset_minutes=self.time_offset_minutes,
            sequence=self.sequence,
            user_id=self.user_id,
            flags=self.flags,
        )

    def number(self, metric: str, number: MedFloat, factor: float = 1.0, offset: float = 0.0) -> DecodedReading:
        """A reading of an SFLOAT/FLOAT converted by ``value * factor + offset``."""
        return self.reading(metric, number.convert(factor, offset), number.absent_reason)
