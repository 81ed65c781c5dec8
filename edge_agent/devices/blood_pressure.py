"""Blood Pressure Measurement (0x2A35, indicate) and Intermediate Cuff Pressure (0x2A36, notify),
Blood Pressure service 0x1810. Both share one layout:

flags (b0 kPa else mmHg; b1 timestamp; b2 pulse rate; b3 user id; b4 measurement status;
b5-7 reserved, rejected) | systolic, diastolic, MAP (SFLOAT each) | Date Time (7 B) |
pulse rate SFLOAT | user id uint8 (255 = unknown user) | status uint16.

Status bits: b0 body movement, b1 cuff too loose, b2 irregular pulse, b3-4 pulse-rate range
(0 within, 1 above, 2 below, 3 reserved -> ``reserved_value``), b5 improper position; b6-15 are
reserved, kept as sent and ignored.

Readings of 0x2A35: ``bp_systolic``, ``bp_diastolic``, ``bp_mean`` in mm[Hg] (kPa converted by
x 7.50061683, rounded per :func:`edge_agent.devices._codec.scale`), plus ``heart_rate`` (/min)
when the pulse rate is present. Status flags: ``body_movement``, ``cuff_too_loose``,
``irregular_pulse``, ``pulse_rate_above_range``, ``pulse_rate_below_range``,
``improper_position``. ``user_id`` 255 (unknown user) becomes ``None`` on the readings.

0x2A36 carries the cuff pressure while the cuff inflates: not a patient reading, so
:meth:`IntermediateCuffPressure.readings` is empty. Its diastolic/MAP slots are unused
(devices send NaN) and kept as sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, Final, NamedTuple, Self

from edge_agent.devices._codec import Reader, check_uint, le, translating
from edge_agent.devices.datetime_field import Timestamp, read_timestamp
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.reading import DecodedReading, ReadingContext
from edge_agent.devices.sfloat import SFloat, Special

__all__ = [
    "KPA_TO_MMHG",
    "USER_UNKNOWN",
    "BloodPressureMeasurement",
    "IntermediateCuffPressure",
    "PressureUnit",
    "status_flags",
]

KPA_TO_MMHG: Final = 7.50061683
USER_UNKNOWN: Final = 255

_KPA: Final = 0x01
_TIMESTAMP: Final = 0x02
_PULSE: Final = 0x04
_USER: Final = 0x08
_STATUS: Final = 0x10
_ALLOWED: Final = 0x1F

_STATUS_BITS: Final = (
    (0, "body_movement"),
    (1, "cuff_too_loose"),
    (2, "irregular_pulse"),
    (5, "improper_position"),
)
_RANGE_SHIFT: Final = 3
_RANGE_FLAGS: Final = {1: "pulse_rate_above_range", 2: "pulse_rate_below_range"}


class PressureUnit(enum.Enum):
    MMHG = "mm[Hg]"
    KPA = "kPa"


class _Layout(NamedTuple):
    unit: PressureUnit
    pressures: tuple[SFloat, SFloat, SFloat]
    timestamp: Timestamp | None
    pulse_rate: SFloat | None
    user_id: int | None
    status: int | None


def status_flags(status: int | None) -> frozenset[str]:
    """The flag names of a Blood Pressure Measurement Status value."""
    if status is None:
        return frozenset()
    names = {name for bit, name in _STATUS_BITS if status >> bit & 1}
    range_name = _RANGE_FLAGS.get((status >> _RANGE_SHIFT) & 0b11)
    if range_name is not None:
        names.add(range_name)
    return frozenset(names)


def _check_common(characteristic: int, user_id: int | None, status: int | None) -> None:
    if user_id is not None:
        check_uint(characteristic, "user_id", user_id, 8)
    if status is not None:
        check_uint(characteristic, "status", status, 16)
        if (status >> _RANGE_SHIFT) & 0b11 == 0b11:
            raise InvalidMeasurement(characteristic, "status", "pulse-rate range 3 is reserved", reserved=True)


def _read(characteristic: int, payload: bytes) -> _Layout:
    reader = Reader(characteristic, payload)
    flags = reader.flags(_ALLOWED)
    pressures = (SFloat.read(reader), SFloat.read(reader), SFloat.read(reader))
    timestamp = read_timestamp(reader) if flags & _TIMESTAMP else None
    pulse_rate = SFloat.read(reader) if flags & _PULSE else None
    user_id = reader.u8() if flags & _USER else None
    status = reader.u16() if flags & _STATUS else None
    reader.finish()
    unit = PressureUnit.KPA if flags & _KPA else PressureUnit.MMHG
    return _Layout(unit, pressures, timestamp, pulse_rate, user_id, status)


def _write(layout: _Layout) -> bytes:
    flags = _KPA if layout.unit is PressureUnit.KPA else 0
    body = b"".join(bytes(p) for p in layout.pressures)
    if layout.timestamp is not None:
        flags |= _TIMESTAMP
        body += bytes(layout.timestamp)
    if layout.pulse_rate is not None:
        flags |= _PULSE
        body += bytes(layout.pulse_rate)
    if layout.user_id is not None:
        flags |= _USER
        body += le(layout.user_id, 1)
    if layout.status is not None:
        flags |= _STATUS
        body += le(layout.status, 2)
    return bytes((flags,)) + body


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """A complete cuff measurement (0x2A35); pressures in ``unit``, pulse rate in /min."""

    systolic: SFloat
    diastolic: SFloat
    mean_arterial_pressure: SFloat
    unit: PressureUnit = PressureUnit.MMHG
    timestamp: Timestamp | None = None
    pulse_rate: SFloat | None = None
    user_id: int | None = None
    status: int | None = None

    CHARACTERISTIC: ClassVar[int] = 0x2A35

    def __post_init__(self) -> None:
        _check_common(self.CHARACTERISTIC, self.user_id, self.status)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        layout = _read(cls.CHARACTERISTIC, payload)
        systolic, diastolic, mean = layout.pressures
        with translating(cls.CHARACTERISTIC):
            return cls(
                systolic,
                diastolic,
                mean,
                layout.unit,
                layout.timestamp,
                layout.pulse_rate,
                layout.user_id,
                layout.status,
            )

    def __bytes__(self) -> bytes:
        pressures = (self.systolic, self.diastolic, self.mean_arterial_pressure)
        return _write(_Layout(self.unit, pressures, self.timestamp, self.pulse_rate, self.user_id, self.status))

    @property
    def status_flags(self) -> frozenset[str]:
        return status_flags(self.status)

    def readings(self) -> list[DecodedReading]:
        ctx = ReadingContext.create(
            self.CHARACTERISTIC,
            self.timestamp,
            flags=self.status_flags,
            user_id=None if self.user_id == USER_UNKNOWN else self.user_id,
        )
        factor = KPA_TO_MMHG if self.unit is PressureUnit.KPA else 1.0
        out = [
            ctx.number("bp_systolic", self.systolic, factor),
            ctx.number("bp_diastolic", self.diastolic, factor),
            ctx.number("bp_mean", self.mean_arterial_pressure, factor),
        ]
        if self.pulse_rate is not None:
            out.append(ctx.number("heart_rate", self.pulse_rate))
        return out


_NAN: Final = SFloat(special=Special.NAN)


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    """The current cuff pressure during a measurement (0x2A36); not a patient reading."""

    cuff_pressure: SFloat
    unit: PressureUnit = PressureUnit.MMHG
    timestamp: Timestamp | None = None
    pulse_rate: SFloat | None = None
    user_id: int | None = None
    status: int | None = None
    diastolic_unused: SFloat = field(default=_NAN)
    mean_unused: SFloat = field(default=_NAN)

    CHARACTERISTIC: ClassVar[int] = 0x2A36

    def __post_init__(self) -> None:
        _check_common(self.CHARACTERISTIC, self.user_id, self.status)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        layout = _read(cls.CHARACTERISTIC, payload)
        cuff, diastolic, mean = layout.pressures
        with translating(cls.CHARACTERISTIC):
            return cls(
                cuff,
                layout.unit,
                layout.timestamp,
                layout.pulse_rate,
                layout.user_id,
                layout.status,
                diastolic,
                mean,
            )

    def __bytes__(self) -> bytes:
        pressures = (self.cuff_pressure, self.diastolic_unused, self.mean_unused)
        return _write(_Layout(self.unit, pressures, self.timestamp, self.pulse_rate, self.user_id, self.status))

    @property
    def status_flags(self) -> frozenset[str]:
        return status_flags(self.status)

    def readings(self) -> list[DecodedReading]:
        """Always empty: cuff pressure during inflation is not a patient reading."""
        return []
