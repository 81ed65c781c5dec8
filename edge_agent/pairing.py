"""``vigil edge pair``: find health devices nearby and put one on the agent's allow-list.

A scan lists candidates: devices advertising one of the health services the agent serves
(:data:`edge_agent.ble.PROFILES`); the chosen one is added to ``[[devices]]`` in the agent
config with its profile. The running agent reads the allow-list at start: restart it afterwards
(``systemctl restart vigil-edge``). Bonding, for devices that demand it, happens on the agent's
first connection (:mod:`edge_agent.ble.session`), not here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from edge_agent.ble.profiles import profile_for_services
from edge_agent.ble.radio import Radio
from edge_agent.errors import AdapterUnavailable
from edge_agent.settings import PairedDevice, ProfileName

__all__ = ["Candidate", "scan_candidates"]


@dataclass(frozen=True, slots=True)
class Candidate:
    address: str
    name: str | None
    profile: ProfileName
    rssi: int

    def paired(self) -> PairedDevice:
        return PairedDevice(address=self.address, profile=self.profile, name=(self.name or "")[:64] or None)


async def scan_candidates(radio: Radio, seconds: float) -> list[Candidate]:
    """Devices advertising a supported health service during ``seconds``, strongest first."""
    found: dict[str, Candidate] = {}

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        profile = profile_for_services(adv.service_uuids)
        if profile is not None:
            address = device.address.upper()
            found[address] = Candidate(address, adv.local_name or device.name, profile, adv.rssi)

    scanner = radio.scanner(on_advertisement)
    try:
        await scanner.start()
        await asyncio.sleep(seconds)
        await scanner.stop()
    except BleakError as exc:
        raise AdapterUnavailable(type(exc).__name__) from exc
    return sorted(found.values(), key=lambda c: -c.rssi)
