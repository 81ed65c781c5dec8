"""Heart Rate Measurement (0x2A37, Heart Rate service 0x180D, notify).

Flags: b0 heart rate is uint16 (else uint8); b1-2 sensor contact (0/1 not supported,
2 supported but not detected, 3 detected); b3 energy expended (uint16 kJ) present; b4 RR
intervals present (uint16, 1/1024 s each, to the end of the packet); b5-7 reserved (rejected,
they could announce fields this decoder does not know).

Readings: ``heart_rate`` (/min) and one ``rr_interval`` (ms) per RR value, all flagged
``sensor_contact:detected`` or ``sensor_contact:unsupported``. A measurement taken with sensor
contact supported but not detected is not a patient reading: :meth:`readings` returns nothing.
Energy expended is not a catalogue metric and produces no reading. The packet has no timestamp.

Salvage: the RR field is the last one and the heart rate before it is complete, so a malformed
RR field (the flag set but no RR value, or an odd number of bytes: a byte lost or added
somewhere) does not cost the heart rate. Where the stray byte sits cannot be told, so none of the
field's intervals is trusted: the field is kept as sent in
:attr:`HeartRateMeasurement.rr_malformed` (the packet still round-trips) and gives no reading,
and the heart rate reading is flagged ``rr_truncated`` (the agent counts it).

Encoding is canonical: uint8 heart rate when it fits, contact code 0 when unsupported.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, le, scale
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.reading import DecodedReading, ReadingContext

__all__ = ["RR_TRUNCATED", "HeartRateMeasurement", "SensorContact"]

RR_TRUNCATED: Final = "rr_truncated"

_CHAR: Final = 0x2A37
_UINT16_HR: Final = 0x01
_CONTACT_SHIFT: Final = 1
_ENERGY: Final = 0x08
_RR: Final = 0x10
_ALLOWED: Final = 0x1F
_MS_PER_RR_UNIT: Final = 1000 / 1024


class SensorContact(enum.Enum):
    NOT_SUPPORTED = "unsupported"
    NOT_DETECTED = "not_detected"
    DETECTED = "detected"


_CONTACT_CODE: Final = {
    SensorContact.NOT_SUPPORTED: 0,
    SensorContact.NOT_DETECTED: 2,
    SensorContact.DETECTED: 3,
}


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """``rr_intervals`` are raw 1/1024 s counts (see :attr:`rr_intervals_ms`).

    ``rr_malformed`` is ``None`` for a well-formed packet; otherwise the RR flag was set and this
    is the whole RR field as sent, an odd number of bytes or none at all (then ``rr_intervals``
    is empty).
    """

    heart_rate: int
    sensor_contact: SensorContact = SensorContact.NOT_SUPPORTED
    energy_expended: int | None = None
    rr_intervals: tuple[int, ...] = ()
    rr_malformed: bytes | None = None

    CHARACTERISTIC: ClassVar[int] = _CHAR

    def __post_init__(self) -> None:
        check_uint(_CHAR, "heart_rate", self.heart_rate, 16)
        if self.energy_expended is not None:
            check_uint(_CHAR, "energy_expended", self.energy_expended, 16)
        for rr in self.rr_intervals:
            check_uint(_CHAR, "rr_intervals", rr, 16)
        if self.rr_malformed is not None:
            if self.rr_intervals:
                raise InvalidMeasurement(_CHAR, "rr_malformed", "a malformed RR field has no intervals")
            if len(self.rr_malformed) % 2:
                return
            if self.rr_malformed:
                raise InvalidMeasurement(_CHAR, "rr_malformed", "an even RR field is well formed")

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(_CHAR, payload)
        flags = reader.flags(_ALLOWED)
        heart_rate = reader.u16() if flags & _UINT16_HR else reader.u8()
        contact_code = (flags >> _CONTACT_SHIFT) & 0b11
        contact = {2: SensorContact.NOT_DETECTED, 3: SensorContact.DETECTED}.get(
            contact_code, SensorContact.NOT_SUPPORTED
        )
        energy = reader.u16() if flags & _ENERGY else None
        rr: tuple[int, ...] = ()
        malformed: bytes | None = None
        if flags & _RR:
            # The flag promises at least one whole uint16 to the end; an odd count is a byte astray.
            if reader.remaining == 0 or reader.remaining % 2:
                malformed = reader.take(reader.remaining)
            else:
                rr = tuple(reader.u16() for _ in range(reader.remaining // 2))
        reader.finish()
        return cls(heart_rate, contact, energy, rr, malformed)

    def __bytes__(self) -> bytes:
        flags = _CONTACT_CODE[self.sensor_contact] << _CONTACT_SHIFT
        if self.heart_rate > 0xFF:
            flags |= _UINT16_HR
            body = le(self.heart_rate, 2)
        else:
            body = le(self.heart_rate, 1)
        if self.energy_expended is not None:
            flags |= _ENERGY
            body += le(self.energy_expended, 2)
        if self.rr_intervals or self.rr_malformed is not None:
            flags |= _RR
            body += b"".join(le(rr, 2) for rr in self.rr_intervals) + (self.rr_malformed or b"")
        return bytes((flags,)) + body

    @property
    def rr_truncated(self) -> bool:
        """Whether the RR field was malformed (and dropped from the readings)."""
        return self.rr_malformed is not None

    @property
    def rr_intervals_ms(self) -> tuple[float, ...]:
        """RR intervals in milliseconds, rounded to 3 decimals (1/1024 s is 0.977 ms)."""
        return tuple(_rr_ms(rr) for rr in self.rr_intervals)

    def readings(self) -> list[DecodedReading]:
        if self.sensor_contact is SensorContact.NOT_DETECTED:
            return []
        flags = [f"sensor_contact:{self.sensor_contact.value}"]
        if self.rr_truncated:
            flags.append(RR_TRUNCATED)
        ctx = ReadingContext.create(_CHAR, flags=flags)
        out = [ctx.reading("heart_rate", float(self.heart_rate))]
        out.extend(ctx.reading("rr_interval", ms) for ms in self.rr_intervals_ms)
        return out


def _rr_ms(raw: int) -> float:
    return scale(raw, 0, _MS_PER_RR_UNIT)
