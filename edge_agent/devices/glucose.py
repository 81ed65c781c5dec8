"""Glucose Measurement (0x2A18, Glucose service 0x1808, notify); the Record Access Control
Point (0x2A52) that retrieves stored records lives in :mod:`edge_agent.devices.racp` and is
re-exported here.

flags (b0 time offset; b1 concentration + type/location; b2 mol/L else kg/L; b3 sensor status
annunciation; b4 context information follows; b5-7 reserved, rejected) | sequence uint16 |
base time (Date Time) | time offset sint16 minutes | concentration SFLOAT | type (low nibble)
and location (high nibble) | sensor status annunciation uint16.

Device time: the meter's time of the measurement is base time + time offset; that sum is the
reading's ``device_time`` (``device_time_fields`` keeps the base time as sent and
``time_offset_minutes`` the offset). A base time that cannot exist, or an offset that carries it
past year 9999, keeps the record: its readings are timed at receipt and flagged
``device_time_invalid``.

Readings: one ``glucose`` reading in mg/dL (kg/L x 100000; mol/L x 18015.6, the molar mass of
glucose 180.156 g/mol; rounded per :func:`edge_agent.devices._codec.scale`), with ``sequence``
and flags ``sample:<type>``, ``location:<site>``, the set sensor-status bit names and
``context_follows``. No reading: when the record has no concentration, or when the sample type
or the sample location is control solution (quality control, not patient data).

With ``context_follows`` the meter sends a Glucose Measurement Context (0x2A34) next:
:func:`edge_agent.devices.glucose_context.paired_readings` joins the two (meal flag, HbA1c).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, enum_value, le, translating
from edge_agent.devices.datetime_field import Timestamp, read_timestamp
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.racp import (
    RACP_CHARACTERISTIC,
    RacpFilter,
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    parse_racp_response,
)
from edge_agent.devices.reading import DecodedReading, ReadingContext
from edge_agent.devices.sfloat import SFloat

__all__ = [
    "KG_PER_L_TO_MG_PER_DL",
    "MOL_PER_L_TO_MG_PER_DL",
    "RACP_CHARACTERISTIC",
    "SENSOR_STATUS_BITS",
    "ConcentrationUnit",
    "GlucoseMeasurement",
    "RacpFilter",
    "RacpNumberOfRecords",
    "RacpOpcode",
    "RacpOperator",
    "RacpRequest",
    "RacpResponse",
    "RacpResponseCode",
    "SampleLocation",
    "SampleType",
    "parse_racp_response",
]

KG_PER_L_TO_MG_PER_DL: Final = 100_000.0
MOL_PER_L_TO_MG_PER_DL: Final = 18_015.6

_CHAR: Final = 0x2A18
_TIME_OFFSET: Final = 0x01
_CONCENTRATION: Final = 0x02
_MOL: Final = 0x04
_STATUS: Final = 0x08
_CONTEXT: Final = 0x10

SENSOR_STATUS_BITS: Final = {
    0: "device_battery_low",
    1: "sensor_malfunction",
    2: "sample_size_insufficient",
    3: "strip_insertion_error",
    4: "strip_type_incorrect",
    5: "sensor_result_too_high",
    6: "sensor_result_too_low",
    7: "sensor_temperature_too_high",
    8: "sensor_temperature_too_low",
    9: "sensor_read_interrupted",
    10: "general_device_fault",
    11: "time_fault",
}


class ConcentrationUnit(enum.Enum):
    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class SampleType(enum.IntEnum):
    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10

    @property
    def flag(self) -> str:
        return f"sample:{self.name.lower()}"


class SampleLocation(enum.IntEnum):
    FINGER = 1
    ALTERNATE_SITE = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    NOT_AVAILABLE = 15

    @property
    def flag(self) -> str:
        return f"location:{self.name.lower()}"


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    """A glucose record. ``time_offset`` is in minutes; ``sample_type`` and
    ``sample_location`` are present exactly when ``concentration`` is."""

    sequence: int
    base_time: Timestamp
    time_offset: int | None = None
    concentration: SFloat | None = None
    unit: ConcentrationUnit = ConcentrationUnit.KG_PER_L
    sample_type: SampleType | None = None
    sample_location: SampleLocation | None = None
    sensor_status: int | None = None
    context_follows: bool = False

    CHARACTERISTIC: ClassVar[int] = _CHAR

    def __post_init__(self) -> None:
        check_uint(_CHAR, "sequence", self.sequence, 16)
        if self.sensor_status is not None:
            check_uint(_CHAR, "sensor_status", self.sensor_status, 16)
        has_type = self.sample_type is not None and self.sample_location is not None
        none_type = self.sample_type is None and self.sample_location is None
        if not (has_type if self.concentration is not None else none_type):
            raise InvalidMeasurement(_CHAR, "sample_type", "type and location come with the concentration")
        if self.time_offset is not None and not -0x8000 <= self.time_offset <= 0x7FFF:
            raise InvalidMeasurement(_CHAR, "time_offset", "must fit in a signed 16-bit field")

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(_CHAR, payload)
        flags = reader.flags(0x1F)
        sequence = reader.u16()
        base_time = read_timestamp(reader)
        offset = reader.s16() if flags & _TIME_OFFSET else None
        concentration = kind = location = None
        if flags & _CONCENTRATION:
            concentration = SFloat.read(reader)
            type_location = reader.u8()
            kind = enum_value(reader, SampleType, type_location & 0x0F, "sample_type")
            location = enum_value(reader, SampleLocation, type_location >> 4, "sample_location")
        status = reader.u16() if flags & _STATUS else None
        reader.finish()
        unit = ConcentrationUnit.MOL_PER_L if flags & _MOL else ConcentrationUnit.KG_PER_L
        with translating(_CHAR):
            return cls(
                sequence,
                base_time,
                offset,
                concentration,
                unit,
                kind,
                location,
                status,
                bool(flags & _CONTEXT),
            )

    def __bytes__(self) -> bytes:
        flags = _MOL if self.unit is ConcentrationUnit.MOL_PER_L else 0
        flags |= _CONTEXT if self.context_follows else 0
        body = le(self.sequence, 2) + bytes(self.base_time)
        if self.time_offset is not None:
            flags |= _TIME_OFFSET
            body += le(self.time_offset, 2, signed=True)
        if self.concentration is not None and self.sample_type is not None and self.sample_location is not None:
            flags |= _CONCENTRATION
            body += bytes(self.concentration)
            body += bytes((self.sample_location << 4 | self.sample_type,))
        if self.sensor_status is not None:
            flags |= _STATUS
            body += le(self.sensor_status, 2)
        return bytes((flags,)) + body

    @property
    def is_control_solution(self) -> bool:
        return (
            self.sample_type is SampleType.CONTROL_SOLUTION or self.sample_location is SampleLocation.CONTROL_SOLUTION
        )

    @property
    def flags(self) -> frozenset[str]:
        names = {n for bit, n in SENSOR_STATUS_BITS.items() if (self.sensor_status or 0) >> bit & 1}
        if self.sample_type is not None:
            names.add(self.sample_type.flag)
        if self.sample_location is not None:
            names.add(self.sample_location.flag)
        if self.context_follows:
            names.add("context_follows")
        return frozenset(names)

    def readings(self) -> list[DecodedReading]:
        ctx = ReadingContext.create(
            _CHAR,
            self.base_time,
            offset_minutes=self.time_offset,
            flags=self.flags,
            sequence=self.sequence,
        )
        return self.readings_with(ctx)

    def readings_with(self, ctx: ReadingContext) -> list[DecodedReading]:
        """The glucose reading built by ``ctx`` (this record's time, flags and sequence, plus
        whatever its context adds: :func:`edge_agent.devices.glucose_context.paired_readings`)."""
        if self.concentration is None or self.is_control_solution:
            return []
        factor = MOL_PER_L_TO_MG_PER_DL if self.unit is ConcentrationUnit.MOL_PER_L else KG_PER_L_TO_MG_PER_DL
        return [ctx.number("glucose", self.concentration, factor)]
