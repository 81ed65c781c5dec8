"""The health profiles the agent serves: which service identifies them and what to subscribe to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from bleak.uuids import normalize_uuid_16

from edge_agent.devices.racp import RACP_CHARACTERISTIC
from edge_agent.settings import ProfileName

__all__ = [
    "BATTERY_LEVEL",
    "CURRENT_TIME",
    "DEVICE_INFORMATION",
    "PROFILES",
    "RACP",
    "ProfileSpec",
    "profile_for_services",
    "uuid16",
]


def uuid16(value: int) -> str:
    """bleak's 128-bit string for a 16-bit SIG UUID."""
    return normalize_uuid_16(value)


BATTERY_LEVEL: Final = 0x2A19
CURRENT_TIME: Final = 0x2A2B
RACP: Final = RACP_CHARACTERISTIC
# Device Information: manufacturer, model, serial, firmware (DeviceStatus field names).
DEVICE_INFORMATION: Final = {0x2A29: "manufacturer", 0x2A24: "model", 0x2A25: "serial", 0x2A26: "firmware"}


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    """``measurements``: characteristics subscribed to (those the device has; at least one).
    A glucose meter's Measurement Context (0x2A34) is one of them when the meter has it.

    ``store_and_forward`` devices (cuffs, scales) advertise only for a short window after a
    measurement, deliver their memory and hang up; the agent simply reconnects on their next
    advertisement. ``racp`` devices (glucose meters) are asked for their stored records.
    """

    name: ProfileName
    service: int
    measurements: tuple[int, ...]
    store_and_forward: bool = False
    racp: bool = False


PROFILES: Final[Mapping[ProfileName, ProfileSpec]] = MappingProxyType(
    {
        "heart_rate": ProfileSpec("heart_rate", 0x180D, (0x2A37,)),
        "blood_pressure": ProfileSpec("blood_pressure", 0x1810, (0x2A35,), store_and_forward=True),
        "thermometer": ProfileSpec("thermometer", 0x1809, (0x2A1C,)),
        "pulse_oximeter": ProfileSpec("pulse_oximeter", 0x1822, (0x2A5E, 0x2A5F)),
        "weight_scale": ProfileSpec("weight_scale", 0x181D, (0x2A9D,), store_and_forward=True),
        "glucose": ProfileSpec("glucose", 0x1808, (0x2A18, 0x2A34), racp=True),
    }
)
_BY_SERVICE: Final = {uuid16(p.service): p.name for p in PROFILES.values()}


def profile_for_services(service_uuids: Iterable[str]) -> ProfileName | None:
    """The profile a device advertises (first match), from its advertised service UUIDs."""
    for service in service_uuids:
        name = _BY_SERVICE.get(service.lower())
        if name is not None:
            return name
    return None
