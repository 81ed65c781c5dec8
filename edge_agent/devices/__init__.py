"""Pure decoders and encoders of the Bluetooth SIG health profiles (no I/O, no bleak).

One module per profile; each has a frozen measurement type with ``from_bytes(payload)`` and
``__bytes__()`` (``from_bytes(bytes(m)) == m``; canonical payloads round-trip byte for byte)
and ``readings()``, the patient readings it carries. The single entry point is::

    decode(characteristic, payload) -> list[DecodedReading]

``characteristic`` is the 16-bit UUID (0x2A35 ...). Anything that is not a valid value raises
:class:`~edge_agent.devices.errors.DecodeError` (and only that). Values outside the catalogue's
plausible range are decoded as sent; the agent rejects them later. Some valid values carry no
patient reading and decode to ``[]``: intermediate cuff pressure, heart rate without sensor
contact, glucose control solution, a glucose measurement context without HbA1c, battery level,
current time and RACP responses.

Decoding salvages what the specification lets it keep instead of refusing the whole value: a
heart rate whose RR field is malformed (``rr_truncated``), and a timestamp that cannot exist
(``device_time_invalid``) or comes from a clock the device says is not set
(``device_clock_not_set``), are decoded with those flags; see the profile modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from edge_agent.devices.battery import BatteryLevel
from edge_agent.devices.blood_pressure import BloodPressureMeasurement, IntermediateCuffPressure
from edge_agent.devices.datetime_field import CurrentTime
from edge_agent.devices.errors import DecodeError, UnknownCharacteristic
from edge_agent.devices.glucose import GlucoseMeasurement
from edge_agent.devices.glucose_context import GlucoseMeasurementContext
from edge_agent.devices.heart_rate import HeartRateMeasurement
from edge_agent.devices.pulse_oximeter import PlxContinuousMeasurement, PlxSpotCheckMeasurement
from edge_agent.devices.racp import RACP_CHARACTERISTIC, parse_racp_response
from edge_agent.devices.reading import DecodedReading
from edge_agent.devices.thermometer import TemperatureMeasurement
from edge_agent.devices.weight_scale import WeightMeasurement

__all__ = [
    "REGISTRY",
    "DecodeError",
    "DecodedReading",
    "Measurement",
    "Profile",
    "decode",
    "parse",
]


class Measurement(Protocol):
    """What every decoded characteristic value offers."""

    def __bytes__(self) -> bytes: ...

    def readings(self) -> list[DecodedReading]: ...


@dataclass(frozen=True, slots=True)
class Profile:
    """A decodable characteristic: its UUID, a name and the parser of its values."""

    characteristic: int
    name: str
    parse: Callable[[bytes], Measurement]


REGISTRY: Final[Mapping[int, Profile]] = MappingProxyType(
    {
        p.characteristic: p
        for p in (
            Profile(0x2A37, "heart_rate_measurement", HeartRateMeasurement.from_bytes),
            Profile(0x2A35, "blood_pressure_measurement", BloodPressureMeasurement.from_bytes),
            Profile(0x2A36, "intermediate_cuff_pressure", IntermediateCuffPressure.from_bytes),
            Profile(0x2A1C, "temperature_measurement", TemperatureMeasurement.from_bytes),
            Profile(0x2A5E, "plx_spot_check_measurement", PlxSpotCheckMeasurement.from_bytes),
            Profile(0x2A5F, "plx_continuous_measurement", PlxContinuousMeasurement.from_bytes),
            Profile(0x2A9D, "weight_measurement", WeightMeasurement.from_bytes),
            Profile(0x2A18, "glucose_measurement", GlucoseMeasurement.from_bytes),
            Profile(0x2A34, "glucose_measurement_context", GlucoseMeasurementContext.from_bytes),
            Profile(RACP_CHARACTERISTIC, "record_access_control_point", parse_racp_response),
            Profile(0x2A19, "battery_level", BatteryLevel.from_bytes),
            Profile(0x2A2B, "current_time", CurrentTime.from_bytes),
        )
    }
)


def parse(characteristic: int, payload: bytes) -> Measurement:
    """The typed value of ``characteristic`` (e.g. a :class:`BloodPressureMeasurement`)."""
    profile = REGISTRY.get(characteristic)
    if profile is None:
        raise UnknownCharacteristic(characteristic)
    return profile.parse(payload)


def decode(characteristic: int, payload: bytes) -> list[DecodedReading]:
    """The patient readings in one value of ``characteristic``; raises only :class:`DecodeError`."""
    return parse(characteristic, payload).readings()
