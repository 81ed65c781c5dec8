"""The commit-window hook (catalogue 7): one sane :class:`CommitWindow` per measurement committed.

Not timed: the figures live in ``python -m bench.edge_window``; here the hook must report every
committed value once, with the sequence numbers the outbox holds, a callback time before the commit
time, and nothing for values that never reach the outbox or for RACP records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from edge_agent.ble import CommitWindow, DeviceSession, Radio
from edge_agent.emulation import VirtualAir, glucose_meter, heart_rate_strap, thermometer
from edge_agent.emulation.demo import glucose_record
from edge_agent.outbox import AsyncOutbox
from edge_agent.settings import PairedDevice
from rpm_core.clock import SystemClock
from tests.edge_agent.ble.conftest import AGENT, OPTIONS, Rig
from tests.edge_agent.ble.test_session import find, until
from tests.edge_agent.emulation.conftest import Started
from tests.support.home import HR_PLAIN, TEMP_VECTOR

HR_NO_CONTACT = bytes.fromhex("044e")  # 78 bpm, contact supported but not detected: not a reading


@contextlib.asynccontextmanager
async def observed(rig: Rig, paired: PairedDevice, windows: list[CommitWindow]) -> AsyncIterator[None]:
    session = DeviceSession(
        paired, radio=rig.radio, agent=AGENT, outbox=rig.outbox, state=rig.state, clock=SystemClock(),
        options=OPTIONS, on_stored=lambda: None, on_committed=windows.append,
    )  # fmt: skip
    task = asyncio.create_task(session.run(await find(rig.radio, paired.address)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _held(outbox: AsyncOutbox) -> int:
    return (await outbox.stats()).last_allocated


@pytest.mark.asyncio
async def test_every_committed_indication_and_notification_reports_its_window(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    temp = await started(thermometer(air, name="T"))
    strap = await started(heart_rate_strap(air, name="HR"))
    devices = [
        PairedDevice(address=temp.address, profile="thermometer"),
        PairedDevice(address=strap.address, profile="heart_rate"),
    ]
    rig = Rig(radio, outbox, devices)
    windows: list[CommitWindow] = []
    async with observed(rig, devices[0], windows), observed(rig, devices[1], windows):
        await until(lambda: _both(temp.is_subscribed(0x2A1C), strap.is_subscribed(0x2A37)))
        for n in range(5):
            assert await temp.indicate(0x2A1C, TEMP_VECTOR) == 1  # confirmed by the agent's stack
            await strap.notify(0x2A37, HR_NO_CONTACT)  # never a reading: no window
            await strap.notify(0x2A37, HR_PLAIN)
            await until(lambda n=n: _at_least(outbox, 2 * (n + 1)))
        await until(lambda: _true(len(windows) == 10))
    readings = await outbox.fetch(0, 100)
    assert len(readings) == 10
    assert sorted(s for w in windows for s in w.seqs) == [r.seq for r in readings]  # each seq in one window
    by_seq = {r.seq: r for r in readings}
    for window in windows:
        assert window.received_ns <= window.committed_ns
        assert 0 <= window.seconds < 60  # sane, not a timing claim
        [seq] = window.seqs
        expected = {temp.address: (0x2A1C, "body_temperature"), strap.address: (0x2A37, "heart_rate")}
        assert (window.characteristic, by_seq[seq].metric) == expected[window.address]
    assert sorted(w.received_ns for w in windows if w.address == temp.address) == [
        w.received_ns for w in windows if w.address == temp.address
    ]  # in arrival order


@pytest.mark.asyncio
async def test_racp_records_report_no_window(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await started(glucose_meter(air, name="G", record_interval=0.01))
    base = datetime(2026, 3, 1, 7, 0)
    for n in (1, 2):
        meter.add_record(n, glucose_record(n, base + timedelta(minutes=n)))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    windows: list[CommitWindow] = []
    async with observed(rig, paired, windows):
        await until(lambda: _cursor(outbox, meter.address, 2))
    assert await _held(outbox) == 2
    assert windows == []  # a record can be re-read through RACP: it has no window to report


async def _both(a: bool, b: bool) -> bool:
    return a and b


async def _true(value: bool) -> bool:
    return value


async def _at_least(outbox: AsyncOutbox, n: int) -> bool:
    return await _held(outbox) >= n


async def _cursor(outbox: AsyncOutbox, address: str, value: int) -> bool:
    return await outbox.cursor(address, "glucose") == value
