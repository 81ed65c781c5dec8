"""The bleak backend over bumble, driven only through bleak's public API."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak_retry_connector import establish_connection

from edge_agent.emulation import (
    DeviceInformation,
    EmulatedRadio,
    VirtualAir,
    bleak_uuid,
    heart_rate_strap,
    thermometer,
)
from tests.edge_agent.emulation.conftest import Started

HR_MEASUREMENT = bleak_uuid(0x2A37)
HR_VECTOR = bytes.fromhex("1e5532002100")  # Nordic vector: 85 bpm, energy 50 kJ, RR 33/1024 s


def collect(into: list[bytes]) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
    def callback(_char: BleakGATTCharacteristic, data: bytearray) -> None:
        into.append(bytes(data))

    return callback


async def find(radio: EmulatedRadio, name: str) -> BLEDevice:
    device = await BleakScanner.find_device_by_name(name, timeout=5.0, backend=radio.scanner_backend)
    assert device is not None, name
    return device


@pytest.mark.asyncio
async def test_scan_reports_each_advertisement_once(air: VirtualAir, radio: EmulatedRadio, started: Started) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1", advertising_interval_ms=50))
    await started(thermometer(air, name="TEMP-1"))
    seen: list[tuple[float, BLEDevice, AdvertisementData]] = []
    heard: list[str] = []  # an unfiltered scan alongside: proof the thermometer was on the air
    enough = asyncio.Event()
    loop = asyncio.get_running_loop()

    def check() -> None:
        if len(seen) >= 5 and heard.count("TEMP-1") >= 3:
            enough.set()

    def on_filtered(device: BLEDevice, adv: AdvertisementData) -> None:
        seen.append((loop.time(), device, adv))
        check()

    def on_any(_device: BLEDevice, adv: AdvertisementData) -> None:
        heard.append(adv.local_name or "")
        check()

    async with asyncio.timeout(5):
        async with (
            BleakScanner(on_filtered, service_uuids=[bleak_uuid(0x180D)], backend=radio.scanner_backend),
            BleakScanner(on_any, backend=radio.scanner_backend),
        ):
            await enough.wait()
    assert {d.address for _, d, _ in seen} == {strap.address}
    times = [t for t, _, _ in seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) > 0.025  # one report per 50 ms advertising event: the scan-response echo would arrive at once
    _, device, adv = seen[-1]
    assert device.name == "HR-1"
    assert adv.local_name == "HR-1"
    assert adv.service_uuids == [bleak_uuid(0x180D)]


@pytest.mark.asyncio
async def test_services_hide_gap_and_gatt_and_use_declaration_handles(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    await started(heart_rate_strap(air, name="HR-1"))
    async with asyncio.timeout(10):
        async with BleakClient(await find(radio, "HR-1"), backend=radio.client_backend) as client:
            services = {s.uuid for s in client.services}
            char = client.services.get_characteristic(HR_MEASUREMENT)
            assert client.mtu_size > 23
    assert services == {bleak_uuid(u) for u in (0x180D, 0x180F, 0x180A, 0x1805)}
    assert char is not None
    assert char.properties == ["notify"]
    (cccd,) = char.descriptors
    assert cccd.uuid == bleak_uuid(0x2902)
    assert cccd.handle == char.handle + 2  # declaration, value, CCCD


@pytest.mark.asyncio
async def test_reads_battery_device_information_and_skewed_current_time(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    info = DeviceInformation(manufacturer="Acme", model="HR-9", serial="X1", firmware="2.1", system_id=bytes(range(8)))
    await started(
        heart_rate_strap(
            air,
            name="HR-1",
            info=info,
            battery_level=57,
            clock=lambda: datetime(2024, 11, 29, 23, 8, 57, tzinfo=UTC),
            clock_offset=timedelta(minutes=-5),
        )
    )
    async with asyncio.timeout(10):
        async with BleakClient(await find(radio, "HR-1"), backend=radio.client_backend) as client:
            values = [
                await client.read_gatt_char(bleak_uuid(u))
                for u in (0x2A19, 0x2A29, 0x2A24, 0x2A25, 0x2A26, 0x2A23, 0x2A2B)
            ]
    assert values[:6] == [b"\x39", b"Acme", b"HR-9", b"X1", b"2.1", bytes(range(8))]
    # 2024-11-29 23:03:57, Friday (5), fractions 0, adjust reason 0
    assert values[6] == struct.pack("<HBBBBBBBB", 2024, 11, 29, 23, 3, 57, 5, 0, 0)


@pytest.mark.asyncio
async def test_notifications_and_indications_arrive_in_order(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1"))
    temp = await started(thermometer(air, name="TEMP-1"))
    received: list[tuple[str, bytes]] = []
    async with asyncio.timeout(10):
        hr_client = BleakClient(await find(radio, "HR-1"), backend=radio.client_backend)
        temp_client = BleakClient(await find(radio, "TEMP-1"), backend=radio.client_backend)
        async with hr_client, temp_client:
            await hr_client.start_notify(HR_MEASUREMENT, lambda _c, data: received.append(("hr", bytes(data))))
            await temp_client.start_notify(bleak_uuid(0x2A1C), lambda _c, data: received.append(("temp", bytes(data))))
            for beat in range(5):
                assert await strap.notify(0x2A37, bytes([0x00, 60 + beat])) == 1
            for tenth in range(3):
                assert await temp.indicate(0x2A1C, bytes([0x00, tenth, 0x0E, 0x00, 0xFE])) == 1
            await asyncio.sleep(0.05)
            await hr_client.stop_notify(HR_MEASUREMENT)
            assert await strap.notify(0x2A37, HR_VECTOR) == 0
    assert received == [("hr", bytes([0, 60 + b])) for b in range(5)] + [
        ("temp", bytes([0x00, t, 0x0E, 0x00, 0xFE])) for t in range(3)
    ]


@pytest.mark.asyncio
async def test_establish_connection_passes_the_backend_through(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    await started(heart_rate_strap(air, name="HR-1", battery_level=88))
    async with asyncio.timeout(10):
        device = await find(radio, "HR-1")
        client = await establish_connection(BleakClient, device, "HR-1", backend=radio.client_backend)
        try:
            assert client.backend_id == "BumbleClient"
            assert await client.read_gatt_char(bleak_uuid(0x2A19)) == b"\x58"
        finally:
            await client.disconnect()


@pytest.mark.asyncio
async def test_encrypted_measurement_fails_until_paired(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1", encrypted=True))
    received: list[bytes] = []
    async with asyncio.timeout(10):
        async with BleakClient(await find(radio, "HR-1"), backend=radio.client_backend) as client:
            with pytest.raises(BleakGATTProtocolError) as refused:
                await client.start_notify(HR_MEASUREMENT, lambda _c, d: received.append(bytes(d)))
            assert refused.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
            assert await strap.notify(0x2A37, HR_VECTOR) == 0
            await client.pair()
            await client.start_notify(HR_MEASUREMENT, lambda _c, d: received.append(bytes(d)))
            assert await strap.notify(0x2A37, HR_VECTOR) == 1
            await asyncio.sleep(0.05)
    assert received == [HR_VECTOR]


@pytest.mark.asyncio
async def test_pair_at_connect(air: VirtualAir, radio: EmulatedRadio, started: Started) -> None:
    await started(heart_rate_strap(air, name="HR-1", encrypted=True))
    async with asyncio.timeout(10):
        device = await find(radio, "HR-1")
        async with BleakClient(device, pair=True, backend=radio.client_backend) as client:
            await client.start_notify(HR_MEASUREMENT, lambda _c, _d: None)
            await client.unpair()  # forgets the bond and, as on BlueZ, disconnects
            assert not client.is_connected


@pytest.mark.asyncio
async def test_drop_link_and_own_disconnect_fire_the_disconnected_callback(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1"))
    downs: asyncio.Queue[BleakClient] = asyncio.Queue()
    async with asyncio.timeout(10):
        device = await find(radio, "HR-1")
        client = BleakClient(device, downs.put_nowait, backend=radio.client_backend)
        await client.connect()
        await strap.drop_link()
        assert await downs.get() is client
        assert not client.is_connected
        with pytest.raises(BleakError):
            await client.read_gatt_char(bleak_uuid(0x2A19))
        await client.connect()  # the strap advertises again after the link loss
        await client.disconnect()
        assert await downs.get() is client


@pytest.mark.asyncio
async def test_request_cut_by_a_link_drop_raises_bleak_error_not_cancellation(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1"))
    strap.delay_reads(0x2A19, 5.0)
    async with asyncio.timeout(10):
        async with BleakClient(await find(radio, "HR-1"), backend=radio.client_backend) as client:
            read = asyncio.create_task(client.read_gatt_char(bleak_uuid(0x2A19)))
            await asyncio.sleep(0.05)
            await strap.drop_link()
            with pytest.raises(BleakError):
                await read


@pytest.mark.asyncio
async def test_att_error_injection_surfaces_as_bleak_error(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR-1"))
    strap.inject_error(0x2A19, 0x80)
    async with asyncio.timeout(10):
        async with BleakClient(await find(radio, "HR-1"), backend=radio.client_backend) as client:
            with pytest.raises(BleakGATTProtocolError) as refused:
                await client.read_gatt_char(bleak_uuid(0x2A19))
            assert refused.value.code == 0x80
            assert await client.read_gatt_char(bleak_uuid(0x2A19)) == b"\x64"
            with pytest.raises(BleakGATTProtocolError) as refused:
                await client.write_gatt_char(bleak_uuid(0x2A19), b"\x01", response=True)
            assert refused.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED


@pytest.mark.asyncio
async def test_two_peripherals_connected_at_once(air: VirtualAir, radio: EmulatedRadio, started: Started) -> None:
    first = await started(heart_rate_strap(air, name="HR-1"))
    second = await started(heart_rate_strap(air, name="HR-2"))
    got: dict[str, list[bytes]] = {"HR-1": [], "HR-2": []}
    async with asyncio.timeout(10):
        devices = [await find(radio, "HR-1"), await find(radio, "HR-2")]
        clients = [BleakClient(d, backend=radio.client_backend) for d in devices]
        await asyncio.gather(*(c.connect() for c in clients))  # serialized inside the radio
        try:
            for name, client in zip(("HR-1", "HR-2"), clients, strict=True):
                await client.start_notify(HR_MEASUREMENT, collect(got[name]))
            await first.notify(0x2A37, b"\x00\x41")
            await second.notify(0x2A37, b"\x00\x42")
            await asyncio.sleep(0.05)
        finally:
            await asyncio.gather(*(c.disconnect() for c in clients))
    assert got == {"HR-1": [b"\x00\x41"], "HR-2": [b"\x00\x42"]}


@pytest.mark.asyncio
async def test_connect_timeout_then_the_radio_still_connects(
    air: VirtualAir, radio: EmulatedRadio, started: Started
) -> None:
    await started(heart_rate_strap(air, name="HR-1"))
    async with asyncio.timeout(10):
        ghost = BleakClient("E0:00:00:00:0F:FF", timeout=0.3, backend=radio.client_backend)
        with pytest.raises(TimeoutError):
            await ghost.connect()
        async with BleakClient(await find(radio, "HR-1"), backend=radio.client_backend) as client:
            assert client.is_connected
