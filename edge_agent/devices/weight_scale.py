"""Weight Measurement (0x2A9D, Weight Scale service 0x181D, indicate).

flags (b0 imperial else SI; b1 timestamp; b2 user id; b3 BMI and height; b4-7 reserved,
rejected) | weight uint16 (0.005 kg or 0.01 lb; 0xFFFF = measurement unsuccessful) |
Date Time | user id uint8 (255 = unknown user) | BMI uint16 (0.1 kg/m2) | height uint16
(0.001 m or 0.1 in).

Fields hold the raw integers so that bytes round-trip exactly. Readings: ``body_weight`` (kg;
lb x 0.45359237), plus ``bmi`` (kg/m2) and ``body_height`` (m; in x 0.0254) when present,
rounded per :func:`edge_agent.devices._codec.scale`. An unsuccessful measurement gives a
``body_weight`` reading with no value, absent reason ``error`` and flag
``measurement_unsuccessful``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, le, scale, translating
from edge_agent.devices.datetime_field import Timestamp, read_timestamp
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.reading import DecodedReading, ReadingContext

__all__ = ["INCH_TO_M", "LB_TO_KG", "USER_UNKNOWN", "WEIGHT_UNSUCCESSFUL", "WeightMeasurement"]

LB_TO_KG: Final = 0.45359237
INCH_TO_M: Final = 0.0254
WEIGHT_UNSUCCESSFUL: Final = 0xFFFF
USER_UNKNOWN: Final = 255

_CHAR: Final = 0x2A9D
_IMPERIAL: Final = 0x01
_TIMESTAMP: Final = 0x02
_USER: Final = 0x04
_BMI_HEIGHT: Final = 0x08


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    """``weight`` is in 0.005 kg (SI) or 0.01 lb (imperial) steps; ``None`` = unsuccessful.
    ``bmi`` is in 0.1 kg/m2 steps, ``height`` in 0.001 m (SI) or 0.1 in (imperial) steps;
    both are present or both absent."""

    weight: int | None
    imperial: bool = False
    timestamp: Timestamp | None = None
    user_id: int | None = None
    bmi: int | None = None
    height: int | None = None

    CHARACTERISTIC: ClassVar[int] = _CHAR

    def __post_init__(self) -> None:
        if self.weight is not None:
            check_uint(_CHAR, "weight", self.weight, 16)
            if self.weight == WEIGHT_UNSUCCESSFUL:
                raise InvalidMeasurement(_CHAR, "weight", "0xFFFF is spelled None (unsuccessful)")
        if self.user_id is not None:
            check_uint(_CHAR, "user_id", self.user_id, 8)
        if (self.bmi is None) != (self.height is None):
            raise InvalidMeasurement(_CHAR, "bmi", "BMI and height come together")
        if self.bmi is not None and self.height is not None:
            check_uint(_CHAR, "bmi", self.bmi, 16)
            check_uint(_CHAR, "height", self.height, 16)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(_CHAR, payload)
        flags = reader.flags(0x0F)
        raw_weight = reader.u16()
        timestamp = read_timestamp(reader) if flags & _TIMESTAMP else None
        user_id = reader.u8() if flags & _USER else None
        bmi, height = (reader.u16(), reader.u16()) if flags & _BMI_HEIGHT else (None, None)
        reader.finish()
        weight = None if raw_weight == WEIGHT_UNSUCCESSFUL else raw_weight
        with translating(_CHAR):
            return cls(weight, bool(flags & _IMPERIAL), timestamp, user_id, bmi, height)

    def __bytes__(self) -> bytes:
        flags = _IMPERIAL if self.imperial else 0
        body = le(WEIGHT_UNSUCCESSFUL if self.weight is None else self.weight, 2)
        if self.timestamp is not None:
            flags |= _TIMESTAMP
            body += bytes(self.timestamp)
        if self.user_id is not None:
            flags |= _USER
            body += le(self.user_id, 1)
        if self.bmi is not None and self.height is not None:
            flags |= _BMI_HEIGHT
            body += le(self.bmi, 2) + le(self.height, 2)
        return bytes((flags,)) + body

    @property
    def weight_kg(self) -> float | None:
        if self.weight is None:
            return None
        if self.imperial:
            return scale(self.weight, -2, LB_TO_KG)
        return scale(self.weight * 5, -3)

    @property
    def bmi_kg_m2(self) -> float | None:
        return None if self.bmi is None else scale(self.bmi, -1)

    @property
    def height_m(self) -> float | None:
        if self.height is None:
            return None
        return scale(self.height, -1, INCH_TO_M) if self.imperial else scale(self.height, -3)

    def readings(self) -> list[DecodedReading]:
        ctx = ReadingContext.create(
            _CHAR,
            self.timestamp,
            flags=("measurement_unsuccessful",) if self.weight is None else (),
            user_id=None if self.user_id == USER_UNKNOWN else self.user_id,
        )
        weight = self.weight_kg
        out = [ctx.reading("body_weight", weight, "error" if weight is None else None)]
        bmi, height = self.bmi_kg_m2, self.height_m
        if bmi is not None and height is not None:
            out += [ctx.reading("bmi", bmi), ctx.reading("body_height", height)]
        return out
