"""Emulated peripherals: profile shapes, store-and-forward cuffs, and the guards on what they send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edge_agent.emulation import PROFILES, EmulatedRadio, VirtualAir, bleak_uuid, blood_pressure_cuff, heart_rate_strap
from tests.edge_agent.emulation.conftest import Started

BP_A = bytes.fromhex("1e8a00580078000000041114293b3c00012700")  # Nordic vector
BP_B = bytes.fromhex("15bdf00b009ff03c001200")  # Nordic vector, kPa


def collect(into: list[bytes]) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
    def callback(_char: BleakGATTCharacteristic, data: bytearray) -> None:
        into.append(bytes(data))

    return callback


async def scan_for(radio: EmulatedRadio, name: str, seconds: float) -> BLEDevice | None:
    return await BleakScanner.find_device_by_name(name, timeout=seconds, backend=radio.scanner_backend)


async def names_heard(radio: EmulatedRadio, *, until: str, times: int) -> list[str]:
    """The name of every advertisement a scan heard, scanning until it heard ``until`` ``times`` times."""
    names: list[str] = []
    enough = asyncio.Event()

    def on_advertisement(_device: BLEDevice, adv: AdvertisementData) -> None:
        names.append(adv.local_name or "")
        if names.count(until) >= times:
            enough.set()

    async with BleakScanner(on_advertisement, backend=radio.scanner_backend):
        await enough.wait()
    return names


SHAPES: dict[str, tuple[int, dict[int, list[str]]]] = {
    "heart_rate": (0x180D, {0x2A37: ["notify"], 0x2A38: ["read"]}),
    "blood_pressure": (0x1810, {0x2A35: ["indicate"], 0x2A36: ["notify"], 0x2A49: ["read"]}),
    "thermometer": (0x1809, {0x2A1C: ["indicate"], 0x2A1D: ["read"]}),
    "pulse_oximeter": (0x1822, {0x2A5E: ["indicate"], 0x2A5F: ["notify"], 0x2A60: ["read"]}),
    "weight_scale": (0x181D, {0x2A9D: ["indicate"], 0x2A9E: ["read"]}),
    "glucose": (0x1808, {0x2A18: ["notify"], 0x2A51: ["read"], 0x2A52: ["write", "indicate"]}),
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.asyncio
async def test_profile_shapes(profile: str, air: VirtualAir, radio: EmulatedRadio, started: Started) -> None:
    service_uuid, characteristics = SHAPES[profile]
    await started(PROFILES[profile](air, name="DEV-1"))
    async with asyncio.timeout(10):
        device = await scan_for(radio, "DEV-1", 5.0)
        assert device is not None
        async with BleakClient(device, backend=radio.client_backend) as client:
            service = client.services.get_service(bleak_uuid(service_uuid))
            assert service is not None
            shape = {c.uuid: c.properties for c in service.characteristics}
    assert shape == {bleak_uuid(u): props for u, props in characteristics.items()}


@pytest.mark.asyncio
async def test_cuff_is_connectable_only_after_a_measurement_and_forwards_its_memory(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    cuff = await started(blood_pressure_cuff(air, name="BP-1", connectable_window=2.0))
    await started(heart_rate_strap(air, name="HR-1", advertising_interval_ms=50))  # the scan's barrier
    received: list[bytes] = []
    downs: asyncio.Queue[BleakClient] = asyncio.Queue()
    async with asyncio.timeout(10):
        assert "BP-1" not in await names_heard(radio, until="HR-1", times=3)  # silent until it measures
        await cuff.take_measurement(0x2A35, BP_A)
        await cuff.take_measurement(0x2A35, BP_B)
        device = await scan_for(radio, "BP-1", 2.0)
        assert device is not None
        client = BleakClient(device, downs.put_nowait, backend=radio.client_backend)
        await client.connect()
        await client.start_notify(bleak_uuid(0x2A35), collect(received))
        assert await downs.get() is client  # the cuff hangs up once its memory is delivered
    assert received == [BP_A, BP_B]
    assert cuff.stored_measurements == []


@pytest.mark.asyncio
async def test_cuff_window_closes_and_keeps_the_measurement(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    cuff = await started(blood_pressure_cuff(air, name="BP-1", connectable_window=0.2))
    await started(heart_rate_strap(air, name="HR-1", advertising_interval_ms=50))  # the scan's barrier
    async with asyncio.timeout(10):
        await cuff.take_measurement(0x2A35, BP_A)
        assert cuff.device.is_advertising  # the window is open
        while cuff.device.is_advertising:  # noqa: ASYNC110 - the emulated device has no event for it
            await asyncio.sleep(0.02)
        # A scan that has heard the strap three times has listened long enough to hear the cuff.
        assert "BP-1" not in await names_heard(radio, until="HR-1", times=3)
    assert cuff.stored_measurements == [(bleak_uuid(0x2A35), BP_A)]


@pytest.mark.asyncio
async def test_payload_longer_than_the_att_mtu_is_refused(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1", max_mtu=23))
    async with asyncio.timeout(10):
        device = await scan_for(radio, "HR-1", 5.0)
        assert device is not None
        async with BleakClient(device, backend=radio.client_backend) as client:
            assert client.mtu_size == 23
            await client.start_notify(bleak_uuid(0x2A37), lambda _c, _d: None)
            assert await strap.notify(0x2A37, bytes(20)) == 1
            with pytest.raises(ValueError):
                await strap.notify(0x2A37, bytes(21))


@pytest.mark.asyncio
async def test_advertising_data_must_fit_a_legacy_pdu(air: VirtualAir) -> None:
    strap = heart_rate_strap(air, name="A very long device name for a PDU")
    with pytest.raises(ValueError):
        strap.advertising_data()
