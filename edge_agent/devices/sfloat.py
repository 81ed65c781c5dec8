"""IEEE 11073-20601 medical number formats: SFLOAT (16 bit) and FLOAT (32 bit).

A value is ``mantissa * 10**exponent``; the exponent carries the device's precision, so
``SFloat(3760, -2)`` (37.60) and ``SFloat(376, -1)`` (37.6) are different numbers on the wire and
compare unequal. Five mantissa codes are special values that carry no number; each maps to a FHIR
``dataAbsentReason``:

==================  ========  ============  ===================
special             SFLOAT    FLOAT         dataAbsentReason
==================  ========  ============  ===================
NaN                 0x07FF    0x007FFFFF    not-a-number
NRes                0x0800    0x00800000    error
+INF                0x07FE    0x007FFFFE    positive-infinity
-INF                0x0802    0x00800002    negative-infinity
reserved            0x0801    0x00800001    error
==================  ========  ============  ===================

The standard defines the specials with exponent 0. A special mantissa with another exponent is
decoded as the same special (as Nordic's parser does): no number is ever made from those codes.
Encoding always writes the canonical exponent-0 code.

Constructing a number the format cannot carry raises
:class:`~edge_agent.devices.errors.InvalidMeasurement` with ``characteristic`` 0 (a bare number
belongs to no characteristic); decoding never does, since every bit pattern has a meaning.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, le, scale
from edge_agent.devices.errors import InvalidMeasurement

__all__ = ["ABSENT_REASONS", "Float", "MedFloat", "SFloat", "Special"]

ABSENT_REASONS: Final = frozenset({"not-a-number", "error", "positive-infinity", "negative-infinity"})


class Special(enum.Enum):
    """The special values of SFLOAT/FLOAT; ``absent_reason`` is the FHIR code."""

    NAN = "nan"
    NRES = "nres"
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"

    @property
    def absent_reason(self) -> str:
        return _ABSENT_REASON[self]


_ABSENT_REASON: Final = {
    Special.NAN: "not-a-number",
    Special.NRES: "error",
    Special.POSITIVE_INFINITY: "positive-infinity",
    Special.NEGATIVE_INFINITY: "negative-infinity",
    Special.RESERVED: "error",
}


@dataclass(frozen=True, slots=True)
class MedFloat:
    """Common implementation; use :class:`SFloat` or :class:`Float`.

    Either ``special`` is set (and mantissa and exponent are 0), or ``mantissa`` lies strictly
    inside the signed mantissa range minus the special codes.
    """

    mantissa: int = 0
    exponent: int = 0
    special: Special | None = None

    MANTISSA_BITS: ClassVar[int] = 12
    EXPONENT_BITS: ClassVar[int] = 4

    def __post_init__(self) -> None:
        if self.special is not None:
            if self.mantissa or self.exponent:
                raise InvalidMeasurement(0, "mantissa", "a special value has mantissa 0, exponent 0")
            return
        limit = (1 << (self.MANTISSA_BITS - 1)) - 3
        if not -limit <= self.mantissa <= limit:
            raise InvalidMeasurement(0, "mantissa", f"must be within +/-{limit}")
        half = 1 << (self.EXPONENT_BITS - 1)
        if not -half <= self.exponent < half:
            raise InvalidMeasurement(0, "exponent", f"must be within [{-half}, {half - 1}]")

    # -- wire form -----------------------------------------------------------------------
    @classmethod
    def size(cls) -> int:
        return (cls.MANTISSA_BITS + cls.EXPONENT_BITS) // 8

    @classmethod
    def from_raw(cls, raw: int) -> Self:
        """Decode the unsigned integer ``raw`` (every value of the field width decodes)."""
        m_bits = cls.MANTISSA_BITS
        mantissa = raw & ((1 << m_bits) - 1)
        if mantissa >= 1 << (m_bits - 1):
            mantissa -= 1 << m_bits
        exponent = (raw >> m_bits) & ((1 << cls.EXPONENT_BITS) - 1)
        if exponent >= 1 << (cls.EXPONENT_BITS - 1):
            exponent -= 1 << cls.EXPONENT_BITS
        special = _special_for(mantissa, m_bits)
        if special is not None:
            return cls(special=special)
        return cls(mantissa, exponent)

    def to_raw(self) -> int:
        m_bits = self.MANTISSA_BITS
        mantissa = self.mantissa if self.special is None else _special_code(self.special, m_bits)
        m_field = mantissa & ((1 << m_bits) - 1)
        e_field = self.exponent & ((1 << self.EXPONENT_BITS) - 1)
        return (e_field << m_bits) | m_field

    @classmethod
    def read(cls, reader: Reader) -> Self:
        return cls.from_raw(reader.uint(cls.size()))

    @classmethod
    def from_bytes(cls, data: bytes, *, characteristic: int = 0) -> Self:
        """Decode exactly :meth:`size` bytes (``characteristic`` only labels errors)."""
        reader = Reader(characteristic, data)
        value = cls.read(reader)
        reader.finish()
        return value

    def __bytes__(self) -> bytes:
        return le(self.to_raw(), self.size())

    # -- construction from numbers -------------------------------------------------------
    @classmethod
    def of(cls, value: str | int | float | Decimal) -> Self:
        """The number ``value`` keeping its decimal precision: ``of("37.60")`` is 3760e-2.

        Floats go through their shortest repr (``of(37.6)`` is 376e-1). Trailing zeros are
        dropped (raising the exponent) only when the mantissa would not fit otherwise.
        """
        try:
            dec = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
            sign, digits, exponent = dec.as_tuple()
        except (InvalidOperation, ValueError):
            raise InvalidMeasurement(0, "value", "not a decimal number") from None
        if not isinstance(exponent, int):
            raise InvalidMeasurement(0, "value", "not a finite number; use special=")
        mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        limit = (1 << (cls.MANTISSA_BITS - 1)) - 3
        while abs(mantissa) > limit and mantissa % 10 == 0:
            mantissa //= 10
            exponent += 1
        return cls(mantissa, exponent)

    # -- meaning -------------------------------------------------------------------------
    @property
    def is_number(self) -> bool:
        return self.special is None

    @property
    def value(self) -> float | None:
        """The number (nearest float to the exact decimal), or ``None`` for a special."""
        return None if self.special is not None else scale(self.mantissa, self.exponent)

    @property
    def absent_reason(self) -> str | None:
        return None if self.special is None else self.special.absent_reason

    def convert(self, factor: float = 1.0, offset: float = 0.0) -> float | None:
        """``value * factor + offset`` rounded per :func:`edge_agent.devices._codec.scale`."""
        if self.special is not None:
            return None
        return scale(self.mantissa, self.exponent, factor, offset)


@dataclass(frozen=True, slots=True)
class SFloat(MedFloat):
    """16-bit SFLOAT: 4-bit signed exponent, 12-bit signed mantissa."""

    MANTISSA_BITS: ClassVar[int] = 12
    EXPONENT_BITS: ClassVar[int] = 4


@dataclass(frozen=True, slots=True)
class Float(MedFloat):
    """32-bit FLOAT: 8-bit signed exponent, 24-bit signed mantissa."""

    MANTISSA_BITS: ClassVar[int] = 24
    EXPONENT_BITS: ClassVar[int] = 8


def _special_for(mantissa: int, m_bits: int) -> Special | None:
    top = (1 << (m_bits - 1)) - 1  # NaN
    bottom = -(1 << (m_bits - 1))  # NRes
    if mantissa == top:
        return Special.NAN
    if mantissa == top - 1:
        return Special.POSITIVE_INFINITY
    if mantissa == bottom:
        return Special.NRES
    if mantissa == bottom + 1:
        return Special.RESERVED
    if mantissa == bottom + 2:
        return Special.NEGATIVE_INFINITY
    return None


def _special_code(special: Special, m_bits: int) -> int:
    top = (1 << (m_bits - 1)) - 1
    bottom = -(1 << (m_bits - 1))
    return {
        Special.NAN: top,
        Special.POSITIVE_INFINITY: top - 1,
        Special.NRES: bottom,
        Special.RESERVED: bottom + 1,
        Special.NEGATIVE_INFINITY: bottom + 2,
    }[special]
