"""Battery Level (0x2A19, Battery service 0x180F): one uint8, 0-100 %; 101-255 are reserved.

The device's battery is not a patient quantity: :meth:`BatteryLevel.readings` is empty and the
agent reads :attr:`BatteryLevel.percent` for its status messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, translating
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.reading import DecodedReading

__all__ = ["BatteryLevel"]

_CHAR: Final = 0x2A19


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    percent: int

    CHARACTERISTIC: ClassVar[int] = _CHAR

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise InvalidMeasurement(_CHAR, "percent", "must be 0-100", reserved=self.percent > 100)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(_CHAR, payload)
        percent = reader.u8()
        reader.finish()
        with translating(_CHAR):
            return cls(percent)

    def __bytes__(self) -> bytes:
        return bytes((self.percent,))

    def readings(self) -> list[DecodedReading]:
        """Always empty: battery level is device status, not a patient reading."""
        return []
