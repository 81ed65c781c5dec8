"""Peripherals in a child process, the agent's central here: HCI over TCP between the two."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic

from edge_agent.emulation import DeviceProcess, DeviceProcessError, EmulatedRadio, bleak_uuid

HR_VECTOR = bytes.fromhex("1e5532002100")
GLUCOSE_VECTOR = bytes.fromhex("1b0100e307021b0b0a1efbff1e00120501")


@pytest_asyncio.fixture
async def remote() -> AsyncIterator[tuple[DeviceProcess, EmulatedRadio]]:
    devices = [
        {"profile": "heart_rate", "name": "HR-R", "battery_level": 42},
        {"profile": "glucose", "name": "GLU-R", "clock_offset": -300},
    ]
    async with asyncio.timeout(30):
        process = await DeviceProcess.start(devices)
        radio = await EmulatedRadio.open_hci(process.hci)
    try:
        yield process, radio
    finally:
        async with asyncio.timeout(30):
            await radio.close()
            await process.aclose()


@pytest.mark.asyncio
async def test_scan_connect_read_and_notify_across_processes(remote: tuple[DeviceProcess, EmulatedRadio]) -> None:
    process, radio = remote
    received: asyncio.Queue[bytes] = asyncio.Queue()
    downs: asyncio.Queue[BleakClient] = asyncio.Queue()

    def on_hr(_char: BleakGATTCharacteristic, data: bytearray) -> None:
        received.put_nowait(bytes(data))

    async with asyncio.timeout(20):
        seen = await BleakScanner.discover(timeout=0.5, return_adv=True, backend=radio.scanner_backend)
        names = {adv.local_name: device.address for device, adv in seen.values()}
        assert names == {"HR-R": process.addresses["HR-R"], "GLU-R": process.addresses["GLU-R"]}
        device = next(d for d, adv in seen.values() if adv.local_name == "HR-R")
        client = BleakClient(device, downs.put_nowait, backend=radio.client_backend)
        await client.connect()
        assert await client.read_gatt_char(bleak_uuid(0x2A19)) == b"\x2a"
        await client.start_notify(bleak_uuid(0x2A37), on_hr)
        assert await process.notify("HR-R", 0x2A37, HR_VECTOR) == 1
        assert await received.get() == HR_VECTOR
        await process.request("HR-R", "stream", uuid="2a37", payload=HR_VECTOR.hex(), interval=0.01, count=3)
        assert [await received.get() for _ in range(3)] == [HR_VECTOR] * 3
        await process.drop_link("HR-R")
        assert await downs.get() is client


@pytest.mark.asyncio
async def test_glucose_records_across_processes(remote: tuple[DeviceProcess, EmulatedRadio]) -> None:
    process, radio = remote
    events: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for sequence in (1, 2):
        payload = GLUCOSE_VECTOR[:1] + struct.pack("<H", sequence) + GLUCOSE_VECTOR[3:]
        await process.request("GLU-R", "add_record", sequence=sequence, payload=payload.hex())
    async with asyncio.timeout(20):
        device = await BleakScanner.find_device_by_name("GLU-R", timeout=5.0, backend=radio.scanner_backend)
        assert device is not None
        async with BleakClient(device, backend=radio.client_backend) as client:
            await client.start_notify(bleak_uuid(0x2A18), lambda _c, d: events.put_nowait(("m", bytes(d))))
            await client.start_notify(bleak_uuid(0x2A52), lambda _c, d: events.put_nowait(("racp", bytes(d))))
            await client.write_gatt_char(bleak_uuid(0x2A52), b"\x01\x03\x01\x02\x00", response=True)
            first = await events.get()
            last = await events.get()
    assert first == ("m", GLUCOSE_VECTOR[:1] + b"\x02\x00" + GLUCOSE_VECTOR[3:])
    assert last == ("racp", b"\x06\x00\x01\x01")


@pytest.mark.asyncio
async def test_device_process_reports_refused_requests(remote: tuple[DeviceProcess, EmulatedRadio]) -> None:
    process, _radio = remote
    async with asyncio.timeout(10):
        with pytest.raises(DeviceProcessError):
            await process.request("HR-R", "add_record", sequence=1, payload="00")
        with pytest.raises(DeviceProcessError):
            await process.request("nobody", "drop_link")
