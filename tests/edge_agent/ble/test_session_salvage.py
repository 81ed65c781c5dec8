"""Values the decoders salvage, through bleak: kept, timed by the agent at receipt, flagged, counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.ble import Radio
from edge_agent.ble.session import _cancelled
from edge_agent.emulation import VirtualAir, heart_rate_strap, pulse_oximeter, thermometer
from edge_agent.outbox import AsyncOutbox
from edge_agent.settings import PairedDevice
from tests.edge_agent.ble.conftest import Rig
from tests.edge_agent.ble.test_session import running, until
from tests.edge_agent.emulation.conftest import Started


async def _true(value: bool) -> bool:
    return value


async def _stored(outbox: AsyncOutbox, n: int) -> bool:
    return (await outbox.stats()).last_allocated >= n


@pytest.mark.asyncio
async def test_heart_rate_with_an_odd_rr_byte_is_stored_and_counted(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="HR"))
    paired = PairedDevice(address=strap.address, profile="heart_rate")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: _true(strap.is_subscribed(0x2A37)))
        await strap.notify(0x2A37, bytes.fromhex("16 48 00 04 00"))  # 72 /min, RR 1024 and a stray byte
        await strap.notify(0x2A37, bytes.fromhex("16 49 00 04"))  # 73 /min, one RR, well formed
        await until(lambda: _stored(outbox, 3))
    readings = await outbox.fetch(0, 10)
    assert [(r.metric, r.value, "rr_truncated" in r.flags) for r in readings] == [
        ("heart_rate", 72.0, True),
        ("heart_rate", 73.0, False),
        ("rr_interval", 1000.0, False),
    ]
    assert rig.state.counters["rr_truncated"] == 1
    assert rig.state.counters["decode_error"] == 0


@pytest.mark.asyncio
async def test_spot_check_from_a_clock_not_set_is_timed_at_receipt(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    oximeter = await started(pulse_oximeter(air, name="SpO2"))
    paired = PairedDevice(address=oximeter.address, profile="pulse_oximeter")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: _true(oximeter.is_subscribed(0x2A5E)))
        before = datetime.now(UTC)
        # 98 %, 72 /min, "2000-01-01 00:00:16" from a device that says its clock is not set.
        await oximeter.indicate(0x2A5E, bytes.fromhex("11 62 00 48 00 D0 07 01 01 00 00 10"))
        await until(lambda: _stored(outbox, 2))
        after = datetime.now(UTC)
    readings = await outbox.fetch(0, 10)
    assert [(r.metric, r.value) for r in readings] == [("spo2", 98.0), ("heart_rate", 72.0)]
    for reading in readings:
        assert before <= reading.measured_at <= after  # the agent's clock, not the year 2000
        assert reading.device_time is None
        assert "device_clock_not_set" in reading.flags
    assert rig.state.counters["device_clock_not_set"] == 1


@pytest.mark.asyncio
async def test_a_temperature_stamped_31_february_is_kept_timed_at_receipt(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    # A device clock an hour off: even its correction must not apply to a time that cannot exist.
    temp = await started(thermometer(air, name="T", clock_offset=timedelta(hours=1)))
    paired = PairedDevice(address=temp.address, profile="thermometer")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: _true(temp.is_subscribed(0x2A1C)))
        before = datetime.now(UTC)
        await temp.indicate(0x2A1C, bytes.fromhex("06 B0 0E 00 FE DC 07 02 1F 0B 32 1B 04"))
        await until(lambda: _stored(outbox, 1))
        after = datetime.now(UTC)
    [reading] = await outbox.fetch(0, 10)
    assert (reading.metric, reading.value, reading.device_time) == ("body_temperature", 37.6, None)
    assert before <= reading.measured_at <= after
    assert {"device_time_invalid", "site:finger"} <= reading.flags
    assert "clock_skew" not in reading.flags
    assert rig.state.counters["device_time_invalid"] == 1


@pytest.mark.asyncio
async def test_a_task_that_swallows_its_cancellation_is_cancelled_again() -> None:
    """What a GATT request does when its answer and the cancellation land together (Python 3.11's
    ``asyncio.wait_for``): the session's server must still end when the session does."""
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # and carry on as if nothing happened
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await _cancelled(task)
    assert swallowed.is_set()
    assert task.cancelled()
