"""Pulse Oximeter service (0x1822): PLX Spot-check (0x2A5E, indicate) and PLX Continuous
(0x2A5F, notify) measurements.

Spot-check: flags (b0 timestamp; b1 measurement status; b2 device & sensor status; b3 pulse
amplitude index; b4 device clock not set; b5-7 reserved, rejected) | SpO2 SFLOAT | PR SFLOAT |
Date Time | status uint16 | device & sensor status uint24 | PAI SFLOAT.

Continuous: flags (b0 SpO2PR-Fast; b1 SpO2PR-Slow; b2 status; b3 device & sensor status; b4 PAI;
b5-7 reserved) | SpO2 + PR (normal, always) | fast pair | slow pair | status | device & sensor
status | PAI. No timestamp.

Readings: ``spo2`` (%) and ``heart_rate`` (/min) from the (normal) SpO2/PR pair. The fast and
slow pairs are other averaging windows of the same signal and the PAI is not a catalogue metric:
they stay on the measurement types only. Flags: the names in :data:`MEASUREMENT_STATUS_BITS` and
:data:`DEVICE_SENSOR_STATUS_BITS` that are set (reserved bits are kept and ignored), and
``device_clock_not_set``. With that flag the device itself says its clock is wrong: the spot-check
keeps its values, the readings carry no ``device_time`` (``device_time_fields`` keeps what the
device sent) and the agent times them at receipt, never by that clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, le, translating
from edge_agent.devices.datetime_field import Timestamp, read_timestamp
from edge_agent.devices.reading import DecodedReading, ReadingContext
from edge_agent.devices.sfloat import SFloat

__all__ = [
    "DEVICE_SENSOR_STATUS_BITS",
    "MEASUREMENT_STATUS_BITS",
    "PlxContinuousMeasurement",
    "PlxSpotCheckMeasurement",
    "plx_status_flags",
]

MEASUREMENT_STATUS_BITS: Final = {
    5: "measurement_ongoing",
    6: "early_estimated_data",
    7: "validated_data",
    8: "fully_qualified_data",
    9: "data_from_measurement_storage",
    10: "data_for_demonstration",
    11: "data_for_testing",
    12: "calibration_ongoing",
    13: "measurement_unavailable",
    14: "questionable_measurement_detected",
    15: "invalid_measurement_detected",
}
DEVICE_SENSOR_STATUS_BITS: Final = {
    0: "extended_display_update_ongoing",
    1: "equipment_malfunction_detected",
    2: "signal_processing_irregularity_detected",
    3: "inadequate_signal_detected",
    4: "poor_signal_detected",
    5: "low_perfusion_detected",
    6: "erratic_signal_detected",
    7: "nonpulsatile_signal_detected",
    8: "questionable_pulse_detected",
    9: "signal_analysis_ongoing",
    10: "sensor_interference_detected",
    11: "sensor_unconnected_to_user",
    12: "unknown_sensor_connected",
    13: "sensor_displaced",
    14: "sensor_malfunctioning",
    15: "sensor_disconnected",
}
DEVICE_CLOCK_NOT_SET: Final = "device_clock_not_set"


def plx_status_flags(status: int | None, device_sensor_status: int | None) -> frozenset[str]:
    """Names of the set bits of a PLX measurement status and device & sensor status."""
    names: set[str] = set()
    if status is not None:
        names.update(n for bit, n in MEASUREMENT_STATUS_BITS.items() if status >> bit & 1)
    if device_sensor_status is not None:
        names.update(n for bit, n in DEVICE_SENSOR_STATUS_BITS.items() if device_sensor_status >> bit & 1)
    return frozenset(names)


def _check_status(characteristic: int, status: int | None, device_sensor: int | None) -> None:
    if status is not None:
        check_uint(characteristic, "measurement_status", status, 16)
    if device_sensor is not None:
        check_uint(characteristic, "device_sensor_status", device_sensor, 24)


_SC_TIMESTAMP: Final = 0x01
_SC_STATUS: Final = 0x02
_SC_DEVICE: Final = 0x04
_SC_PAI: Final = 0x08
_SC_CLOCK_NOT_SET: Final = 0x10


@dataclass(frozen=True, slots=True)
class PlxSpotCheckMeasurement:
    spo2: SFloat
    pulse_rate: SFloat
    timestamp: Timestamp | None = None
    measurement_status: int | None = None
    device_sensor_status: int | None = None
    pulse_amplitude_index: SFloat | None = None
    device_clock_not_set: bool = False

    CHARACTERISTIC: ClassVar[int] = 0x2A5E

    def __post_init__(self) -> None:
        _check_status(self.CHARACTERISTIC, self.measurement_status, self.device_sensor_status)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(cls.CHARACTERISTIC, payload)
        flags = reader.flags(0x1F)
        spo2, pulse_rate = SFloat.read(reader), SFloat.read(reader)
        timestamp = read_timestamp(reader) if flags & _SC_TIMESTAMP else None
        status = reader.u16() if flags & _SC_STATUS else None
        device = reader.u24() if flags & _SC_DEVICE else None
        pai = SFloat.read(reader) if flags & _SC_PAI else None
        reader.finish()
        with translating(cls.CHARACTERISTIC):
            return cls(spo2, pulse_rate, timestamp, status, device, pai, bool(flags & _SC_CLOCK_NOT_SET))

    def __bytes__(self) -> bytes:
        flags = _SC_CLOCK_NOT_SET if self.device_clock_not_set else 0
        body = bytes(self.spo2) + bytes(self.pulse_rate)
        if self.timestamp is not None:
            flags |= _SC_TIMESTAMP
            body += bytes(self.timestamp)
        if self.measurement_status is not None:
            flags |= _SC_STATUS
            body += le(self.measurement_status, 2)
        if self.device_sensor_status is not None:
            flags |= _SC_DEVICE
            body += le(self.device_sensor_status, 3)
        if self.pulse_amplitude_index is not None:
            flags |= _SC_PAI
            body += bytes(self.pulse_amplitude_index)
        return bytes((flags,)) + body

    @property
    def flags(self) -> frozenset[str]:
        names = plx_status_flags(self.measurement_status, self.device_sensor_status)
        return (names | {DEVICE_CLOCK_NOT_SET}) if self.device_clock_not_set else names

    def readings(self) -> list[DecodedReading]:
        ctx = ReadingContext.create(
            self.CHARACTERISTIC, self.timestamp, flags=self.flags, clock_set=not self.device_clock_not_set
        )
        return [ctx.number("spo2", self.spo2), ctx.number("heart_rate", self.pulse_rate)]


_CT_FAST: Final = 0x01
_CT_SLOW: Final = 0x02
_CT_STATUS: Final = 0x04
_CT_DEVICE: Final = 0x08
_CT_PAI: Final = 0x10


@dataclass(frozen=True, slots=True)
class PlxContinuousMeasurement:
    """``fast`` and ``slow`` are (SpO2, PR) pairs of the faster/slower averaging windows."""

    spo2: SFloat
    pulse_rate: SFloat
    fast: tuple[SFloat, SFloat] | None = None
    slow: tuple[SFloat, SFloat] | None = None
    measurement_status: int | None = None
    device_sensor_status: int | None = None
    pulse_amplitude_index: SFloat | None = None

    CHARACTERISTIC: ClassVar[int] = 0x2A5F

    def __post_init__(self) -> None:
        _check_status(self.CHARACTERISTIC, self.measurement_status, self.device_sensor_status)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(cls.CHARACTERISTIC, payload)
        flags = reader.flags(0x1F)
        spo2, pulse_rate = SFloat.read(reader), SFloat.read(reader)
        fast = (SFloat.read(reader), SFloat.read(reader)) if flags & _CT_FAST else None
        slow = (SFloat.read(reader), SFloat.read(reader)) if flags & _CT_SLOW else None
        status = reader.u16() if flags & _CT_STATUS else None
        device = reader.u24() if flags & _CT_DEVICE else None
        pai = SFloat.read(reader) if flags & _CT_PAI else None
        reader.finish()
        with translating(cls.CHARACTERISTIC):
            return cls(spo2, pulse_rate, fast, slow, status, device, pai)

    def __bytes__(self) -> bytes:
        flags = 0
        body = bytes(self.spo2) + bytes(self.pulse_rate)
        if self.fast is not None:
            flags |= _CT_FAST
            body += bytes(self.fast[0]) + bytes(self.fast[1])
        if self.slow is not None:
            flags |= _CT_SLOW
            body += bytes(self.slow[0]) + bytes(self.slow[1])
        if self.measurement_status is not None:
            flags |= _CT_STATUS
            body += le(self.measurement_status, 2)
        if self.device_sensor_status is not None:
            flags |= _CT_DEVICE
            body += le(self.device_sensor_status, 3)
        if self.pulse_amplitude_index is not None:
            flags |= _CT_PAI
            body += bytes(self.pulse_amplitude_index)
        return bytes((flags,)) + body

    @property
    def flags(self) -> frozenset[str]:
        return plx_status_flags(self.measurement_status, self.device_sensor_status)

    def readings(self) -> list[DecodedReading]:
        ctx = ReadingContext.create(self.CHARACTERISTIC, flags=self.flags)
        return [ctx.number("spo2", self.spo2), ctx.number("heart_rate", self.pulse_rate)]
