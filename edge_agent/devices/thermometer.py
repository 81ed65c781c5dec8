"""Temperature Measurement (0x2A1C, Health Thermometer service 0x1809, indicate).

flags (b0 Fahrenheit else Celsius; b1 timestamp; b2 temperature type; b3-7 reserved, rejected)
| temperature FLOAT | Date Time (7 B) | type uint8.

Type (the measurement site): 1 armpit, 2 body (general), 3 ear (lobe), 4 finger,
5 gastro-intestinal tract, 6 mouth, 7 rectum, 8 toe, 9 tympanum (ear drum); 0 and 10-255 are
reserved (``reserved_value``). Reading: ``body_temperature`` in Cel (Fahrenheit converted and
rounded per :func:`edge_agent.devices._codec.scale`), flagged ``site:<name>`` when sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, enum_value, translating
from edge_agent.devices.datetime_field import Timestamp, read_timestamp
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.reading import DecodedReading, ReadingContext
from edge_agent.devices.sfloat import Float

__all__ = ["TemperatureMeasurement", "TemperatureType"]

_CHAR: Final = 0x2A1C
_FAHRENHEIT: Final = 0x01
_TIMESTAMP: Final = 0x02
_TYPE: Final = 0x04
_ALLOWED: Final = 0x07


class TemperatureType(enum.IntEnum):
    """Where the temperature was taken; ``site`` is the flag value."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL_TRACT = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9

    @property
    def site(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    temperature: Float
    fahrenheit: bool = False
    timestamp: Timestamp | None = None
    temperature_type: TemperatureType | None = None

    CHARACTERISTIC: ClassVar[int] = _CHAR

    def __post_init__(self) -> None:
        if self.temperature_type is not None and not isinstance(self.temperature_type, TemperatureType):
            raise InvalidMeasurement(_CHAR, "temperature_type", "must be a TemperatureType")

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(_CHAR, payload)
        flags = reader.flags(_ALLOWED)
        temperature = Float.read(reader)
        timestamp = read_timestamp(reader) if flags & _TIMESTAMP else None
        kind = enum_value(reader, TemperatureType, reader.u8(), "temperature_type") if flags & _TYPE else None
        reader.finish()
        with translating(_CHAR):
            return cls(temperature, bool(flags & _FAHRENHEIT), timestamp, kind)

    def __bytes__(self) -> bytes:
        flags = _FAHRENHEIT if self.fahrenheit else 0
        body = bytes(self.temperature)
        if self.timestamp is not None:
            flags |= _TIMESTAMP
            body += bytes(self.timestamp)
        if self.temperature_type is not None:
            flags |= _TYPE
            body += bytes((self.temperature_type,))
        return bytes((flags,)) + body

    @property
    def celsius(self) -> float | None:
        """The temperature in Cel (``None`` for a special value)."""
        if self.fahrenheit:
            return self.temperature.convert(5 / 9, -32 * 5 / 9)
        return self.temperature.value

    def readings(self) -> list[DecodedReading]:
        flags = () if self.temperature_type is None else (f"site:{self.temperature_type.site}",)
        ctx = ReadingContext.create(_CHAR, self.timestamp, flags=flags)
        return [ctx.reading("body_temperature", self.celsius, self.temperature.absent_reason)]
