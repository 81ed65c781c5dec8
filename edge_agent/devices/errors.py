"""The exception tree of the GATT decoders and encoders.

::

    VigilError (rpm_core.errors)
    ├── DecodeError                 bytes that are not a valid value of the characteristic
    │   │                           .characteristic .reason
    │   ├── UnknownCharacteristic   no decoder for this UUID           reason unknown_characteristic
    │   ├── TruncatedPayload        fewer bytes than the flags promise reason truncated
    │   ├── TrailingBytes           bytes left over where none allowed reason trailing_bytes
    │   └── InvalidField            .field; a value the spec reserves  reason reserved_value
    │                               (or a date that does not exist)    reason invalid_value
    └── InvalidMeasurement          a measurement built from values that cannot be encoded
                                    .characteristic .field .reserved   reason invalid_measurement

``decode()`` and every ``from_bytes()`` raise only :class:`DecodeError` (never ``IndexError``,
``struct.error`` or ``ValueError``). :class:`InvalidMeasurement` comes from constructing a
measurement type directly with bad values (an emulated device, a test); when ``from_bytes()``
meets the same problem it translates it into :class:`InvalidField`, chained with ``from``.

Messages never contain the measured values (they are PHI); the characteristic, field name and
offsets are data attributes.
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = [
    "DecodeError",
    "InvalidField",
    "InvalidMeasurement",
    "TrailingBytes",
    "TruncatedPayload",
    "UnknownCharacteristic",
]


class DecodeError(VigilError):
    """A payload that is not a valid value of ``characteristic``.

    ``reason`` is a short stable snake_case code (metrics label, dead-letter column).
    """

    reason = "decode_error"

    def __init__(self, characteristic: int, reason: str, message: str) -> None:
        super().__init__(f"0x{characteristic:04X}: {message}")
        self.characteristic = characteristic
        self.reason = reason


class UnknownCharacteristic(DecodeError):
    def __init__(self, characteristic: int) -> None:
        super().__init__(characteristic, "unknown_characteristic", "no decoder for this characteristic")


class TruncatedPayload(DecodeError):
    """``needed`` bytes were required at ``offset`` but only ``available`` remained."""

    def __init__(self, characteristic: int, *, offset: int, needed: int, available: int) -> None:
        super().__init__(
            characteristic,
            "truncated",
            f"truncated payload: {needed} byte(s) needed at offset {offset}, {available} left",
        )
        self.offset = offset
        self.needed = needed
        self.available = available


class TrailingBytes(DecodeError):
    """``extra`` bytes followed the last field the flags announce."""

    def __init__(self, characteristic: int, *, offset: int, extra: int) -> None:
        super().__init__(characteristic, "trailing_bytes", f"{extra} unexpected byte(s) after offset {offset}")
        self.offset = offset
        self.extra = extra


class InvalidField(DecodeError):
    """A field holds a value the specification reserves (``reserved_value``) or that cannot be
    valid (``invalid_value``, e.g. 30 February)."""

    def __init__(self, characteristic: int, *, field: str, reserved: bool, detail: str) -> None:
        reason = "reserved_value" if reserved else "invalid_value"
        super().__init__(characteristic, reason, f"field {field}: {detail}")
        self.field = field
        self.detail = detail


class InvalidMeasurement(VigilError):
    """A measurement type constructed with values its characteristic cannot carry.

    ``reserved`` tells whether the value is one the specification reserves for future use (as
    opposed to out of the field's range or inconsistent with other fields).
    """

    reason = "invalid_measurement"

    def __init__(self, characteristic: int, field: str, detail: str, *, reserved: bool = False) -> None:
        super().__init__(f"0x{characteristic:04X} field {field}: {detail}")
        self.characteristic = characteristic
        self.field = field
        self.detail = detail
        self.reserved = reserved
