"""Byte-level helpers shared by the profile codecs: a bounds-checked little-endian reader, the
matching writers, and the one rounding rule for unit conversions.

Everything that can fail raises a :mod:`edge_agent.devices.errors` exception carrying the
characteristic being decoded, so no ``IndexError``/``struct.error`` can escape a decoder.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from edge_agent.devices.errors import (
    InvalidField,
    InvalidMeasurement,
    TrailingBytes,
    TruncatedPayload,
)

__all__ = [
    "Reader",
    "check_uint",
    "enum_value",
    "le",
    "scale",
    "translating",
]

_E = TypeVar("_E", bound=enum.IntEnum)


class Reader:
    """Reads little-endian fields from ``data``; raises :class:`TruncatedPayload` when short."""

    __slots__ = ("_data", "_offset", "characteristic")

    def __init__(self, characteristic: int, data: bytes) -> None:
        self.characteristic = characteristic
        self._data = bytes(data)
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise TruncatedPayload(self.characteristic, offset=self._offset, needed=n, available=self.remaining)
        chunk = self._data[self._offset : self._offset + n]
        self._offset += n
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def s16(self) -> int:
        return int.from_bytes(self.take(2), "little", signed=True)

    def u24(self) -> int:
        return self.uint(3)

    def flags(self, allowed: int) -> int:
        """The flags byte; bits outside ``allowed`` are reserved and may change the layout."""
        value = self.u8()
        if value & ~allowed:
            raise InvalidField(
                self.characteristic,
                field="flags",
                reserved=True,
                detail=f"reserved flag bits 0x{value & ~allowed & 0xFF:02X} set",
            )
        return value

    def finish(self) -> None:
        """Assert that every byte was consumed."""
        if self.remaining:
            raise TrailingBytes(self.characteristic, offset=self._offset, extra=self.remaining)


@contextmanager
def translating(characteristic: int) -> Iterator[None]:
    """Turn an :class:`InvalidMeasurement` raised while building a decoded value into the
    :class:`InvalidField` decode error of ``characteristic``."""
    try:
        yield
    except InvalidMeasurement as exc:
        raise InvalidField(characteristic, field=exc.field, reserved=exc.reserved, detail=exc.detail) from exc


def enum_value(reader: Reader, cls: type[_E], raw: int, field: str) -> _E:
    """``cls(raw)``, or :class:`InvalidField` (reserved) for a value the spec does not define."""
    try:
        return cls(raw)
    except ValueError:
        raise InvalidField(reader.characteristic, field=field, reserved=True, detail=f"reserved value {raw}") from None


def check_uint(characteristic: int, field: str, value: int, bits: int) -> None:
    """Raise :class:`InvalidMeasurement` unless ``0 <= value < 2**bits``."""
    if not 0 <= value < (1 << bits):
        raise InvalidMeasurement(characteristic, field, f"must fit in an unsigned {bits}-bit field")


def le(value: int, size: int, *, signed: bool = False) -> bytes:
    """``value`` as ``size`` little-endian bytes (values are validated at construction)."""
    return value.to_bytes(size, "little", signed=signed)


def scale(mantissa: int, exponent: int, factor: float = 1.0, offset: float = 0.0) -> float:
    """``(mantissa * 10**exponent) * factor + offset`` as a float.

    Without a conversion (factor 1, offset 0) the result is the float nearest the exact decimal
    (Python's int division rounds correctly), so ``37.60`` prints as ``37.6``. With a conversion,
    the result is rounded to two decimal places beyond the first place that the device's
    resolution (``10**exponent`` in the device's unit, times ``factor``) reaches, e.g.
    0.1 kPa = 0.75 mm[Hg] -> 1 + 2 = 3 decimals; 0.01 lb = 0.0045 kg -> 3 + 2 = 5 decimals.
    That keeps every digit the device reported and drops binary noise such as 138.00000000001.
    """
    exact = float(mantissa * 10**exponent) if exponent >= 0 else mantissa / 10**-exponent
    if factor == 1.0 and offset == 0.0:
        return exact
    decimals = math.ceil(-exponent - math.log10(abs(factor))) + 2
    return round(exact * factor + offset, decimals)
