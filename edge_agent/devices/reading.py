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

Flags
    Stable lowercase strings. Booleans are bare names (``irregular_pulse``); enumerations are
    ``key:value`` (``site:finger``, ``sample:capillary_plasma``, ``sensor_contact:detected``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.sfloat import ABSENT_REASONS, MedFloat
from rpm_core.metrics import CATALOGUE

__all__ = ["DEVICE_TIME_INCOMPLETE", "DecodedReading", "ReadingContext"]

DEVICE_TIME_INCOMPLETE = "device_time_incomplete"


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
        timestamp: DateTime | None = None,
        *,
        offset_minutes: int | None = None,
        flags: Iterable[str] = (),
        sequence: int | None = None,
        user_id: int | None = None,
    ) -> ReadingContext:
        """``timestamp`` (plus ``offset_minutes``, if any) becomes ``device_time``."""
        all_flags = set(flags)
        device_time = None
        if timestamp is not None:
            device_time = timestamp.to_datetime()
            if device_time is None:
                all_flags.add(DEVICE_TIME_INCOMPLETE)
            elif offset_minutes:
                device_time += timedelta(minutes=offset_minutes)
        return cls(
            characteristic,
            device_time,
            timestamp,
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
