"""Device sessions through bleak against emulated devices speaking real GATT."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice

from edge_agent.ble import Radio, SessionOptions
from edge_agent.demo import glucose_record
from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.glucose import GlucoseMeasurement, SampleLocation, SampleType
from edge_agent.devices.sfloat import Float, SFloat
from edge_agent.devices.thermometer import TemperatureMeasurement
from edge_agent.emulation import VirtualAir, blood_pressure_cuff, glucose_meter, heart_rate_strap, thermometer
from edge_agent.errors import ProfileMismatch
from edge_agent.outbox import AsyncOutbox
from edge_agent.settings import PairedDevice
from tests.edge_agent.ble.conftest import OPTIONS, Rig
from tests.edge_agent.emulation.conftest import Started

BP_VECTOR = bytes.fromhex("1e8a00580078000000041114293b3c00012700")  # 138/88 MAP 120, PR 60, year unknown
HR_VECTOR = bytes.fromhex("1e5532002100")


async def find(radio: Radio, address: str) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(address, timeout=5.0, backend=radio.scanner_backend)
    assert device is not None, address
    return device


@contextlib.asynccontextmanager
async def running(rig: Rig, paired: PairedDevice, options: SessionOptions = OPTIONS):
    task = asyncio.create_task(rig.session(paired, options).run(await find(rig.radio, paired.address)))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await cond():  # noqa: ASYNC110 - polling what the devices and the outbox did
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_skewed_thermometer_is_corrected_and_flagged(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    temp = await started(thermometer(air, name="T", clock_offset=timedelta(hours=1), battery_level=57))
    paired = PairedDevice(address=temp.address, profile="thermometer")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: _true(temp.is_subscribed(0x2A1C)))
        device_now = datetime.now(UTC) + timedelta(hours=1)
        stamp = DateTime.from_datetime(device_now)
        await temp.indicate(0x2A1C, bytes(TemperatureMeasurement(Float(3760, -2), timestamp=stamp)))
        await until(lambda: _stored(outbox, 1))
        await until(lambda: _true(rig.state.device(temp.address).model is not None))  # read after subscribing
    [reading] = await outbox.fetch(0, 10)
    assert (reading.metric, reading.value, reading.device_id) == ("body_temperature", 37.6, temp.address)
    assert "clock_skew" in reading.flags
    assert abs(reading.measured_at - datetime.now(UTC)) < timedelta(seconds=10)  # corrected by the hour
    status = rig.state.device(temp.address)
    assert status.clock_skew_s is not None
    assert 3590 < status.clock_skew_s < 3610
    assert (status.battery_pct, status.manufacturer, status.model) == (57, "Vigil Emulated Devices", "EMU-1")
    assert "clock_skew" in rig.state.alarms


async def _true(value: bool) -> bool:
    return value


async def _stored(outbox: AsyncOutbox, n: int) -> bool:
    return (await outbox.stats()).last_allocated >= n


@pytest.mark.asyncio
async def test_glucose_records_arrive_exactly_once_across_connections(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await started(glucose_meter(air, name="G", record_interval=0.01))
    base = datetime(2026, 3, 1, 7, 0)
    for n in (1, 2, 3):
        meter.add_record(n, glucose_record(n, base + timedelta(minutes=n)))
    control = GlucoseMeasurement(
        4, DateTime.from_datetime(base), concentration=SFloat(100, -5),
        sample_type=SampleType.CONTROL_SOLUTION, sample_location=SampleLocation.FINGER,
    )  # fmt: skip
    meter.add_record(4, bytes(control))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired) as session:
        await until(lambda: _cursor(outbox, meter.address, 4))
        meter.add_record(5, glucose_record(5, base + timedelta(minutes=5)))
        meter.add_record(6, glucose_record(6, base + timedelta(minutes=6)))
        await meter.drop_link()
        await asyncio.wait_for(session, 5)  # a dropped link ends the session quietly
    async with running(rig, paired):
        await until(lambda: _cursor(outbox, meter.address, 6))
    readings = await outbox.fetch(0, 100)
    assert [(r.seq, r.value) for r in readings] == [(1, 81.0), (2, 82.0), (3, 83.0), (4, 85.0), (5, 86.0)]
    assert readings[0].measured_at == datetime(2026, 3, 1, 7, 1, tzinfo=UTC)
    assert {"sample:capillary_plasma", "location:finger"} <= readings[0].flags
    assert rig.state.counters["duplicate_record"] == 0


async def _cursor(outbox: AsyncOutbox, address: str, value: int) -> bool:
    return await outbox.cursor(address, "glucose") == value


@pytest.mark.asyncio
async def test_cuff_delivers_its_memory_and_hangs_up(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    cuff = await started(blood_pressure_cuff(air, name="BP", connectable_window=3.0))
    await cuff.take_measurement(0x2A35, BP_VECTOR)
    paired = PairedDevice(address=cuff.address, profile="blood_pressure")
    rig = Rig(radio, outbox, [paired])
    device = await find(radio, cuff.address)
    before = datetime.now(UTC)
    await asyncio.wait_for(rig.session(paired).run(device), 10)  # returns when the cuff hangs up
    readings = {r.metric: r for r in await outbox.fetch(0, 10)}
    assert {m: r.value for m, r in readings.items()} == {
        "bp_systolic": 138.0, "bp_diastolic": 88.0, "bp_mean": 120.0, "heart_rate": 60.0,
    }  # fmt: skip
    # The vector's year is "unknown": no usable device time, so the time of receipt.
    assert readings["bp_systolic"].measured_at >= before
    assert "device_time_incomplete" in readings["bp_systolic"].flags
    assert not rig.state.device(cuff.address).connected


@pytest.mark.asyncio
async def test_device_that_requires_pairing(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR", encrypted=True))
    paired = PairedDevice(address=strap.address, profile="heart_rate")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: _true(strap.is_subscribed(0x2A37)))
        assert strap.connections[0].is_encrypted
        await strap.notify(0x2A37, HR_VECTOR)
        await until(lambda: _stored(outbox, 1))
    [reading] = await outbox.fetch(0, 10)
    assert (reading.metric, reading.value) == ("heart_rate", 85.0)
    assert rig.state.counters["dropped_implausible"] == 1  # the vector's 32 ms RR interval


@pytest.mark.asyncio
async def test_wrong_profile_is_refused(air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started) -> None:
    temp = await started(thermometer(air, name="T"))
    paired = PairedDevice(address=temp.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    with pytest.raises(ProfileMismatch):
        await asyncio.wait_for(rig.session(paired).run(await find(radio, temp.address)), 10)
