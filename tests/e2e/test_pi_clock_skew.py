"""Catalogue 16: the Pi's own clock off by a day (not a device's).

The real agent reads an emulated heart-rate strap through the rendered broker into real ingest,
with its clock (the ``Clock`` every part of the agent reads) first a day ahead, then a day behind,
then right, as a Pi without a real-time clock can be after a boot until NTP answers. Every reading
is stored once; ingest compares each envelope's ``sent_at`` with its own clock and flags the
readings ``ingest:sent_in_future`` (ahead) or ``ingest:sent_late`` (behind), none once the clock is
right; the readings keep the times the Pi gave them and their order is the agent's sequence, not
their (now non-monotonic) times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.emulation import EmulatedPeripheral, EmulatedRadio, VirtualAir, heart_rate_strap
from edge_agent.outbox import inspect_outbox
from edge_agent.settings import PairedDevice
from rpm_core.clock import SystemClock
from tests.e2e.conftest import enroll_with_cli, ingest_worker, rows, until
from tests.support.platform import RenderedPlatform

AGENT = "agt-skewed-pi"
HR = "E0:00:00:00:31:01"
PER_PHASE = 5
DAY = timedelta(days=1)


class SkewedClock(SystemClock):
    """The system's clock plus an offset that the test moves (the Pi's wall clock; monotonic is true)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


@pytest_asyncio.fixture
async def strap() -> AsyncIterator[tuple[EmulatedPeripheral, Radio]]:
    air = VirtualAir()
    device = heart_rate_strap(air, name="HR", address=HR)
    await device.start()
    central = await EmulatedRadio.open(air)
    try:
        yield device, Radio(central.scanner_backend, central.client_backend)
    finally:
        await central.close()
        await device.stop()


@pytest.mark.asyncio
async def test_catalogue_16_the_pis_clock_a_day_off_is_stored_flagged_and_ordered_by_sequence(
    rendered: RenderedPlatform, tmp_path: Path, strap: tuple[EmulatedPeripheral, Radio]
) -> None:
    platform, (device, radio) = rendered, strap
    enrolled = await asyncio.to_thread(
        enroll_with_cli, platform, tmp_path, AGENT, devices=(PairedDevice(address=HR, profile="heart_rate"),)
    )
    settings, ident = await asyncio.to_thread(lambda: (enrolled.settings(), enrolled.identity()))
    svc = await asyncio.to_thread(ingest_worker, platform)
    clock = SkewedClock()
    agent = Agent(settings, ident, radio=radio, clock=clock, version="test")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    beats = 0
    phases = (DAY, -DAY, timedelta(0))
    try:
        await until(lambda: device.is_subscribed(0x2A37), "the agent subscribed to the strap", running=task)
        for offset in phases:
            clock.offset = offset
            for _ in range(PER_PHASE):
                assert await device.notify(0x2A37, bytes([0x06, 60 + beats])) == 1
                beats += 1
            await until(
                lambda n=beats: inspect_outbox(settings.outbox_path).stats.last_receipt == n,
                f"the readings of phase {offset}",
                running=task,
            )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(svc.stop, 5)

    now = datetime.now(UTC)
    stored = await asyncio.to_thread(
        rows, platform.db, "SELECT seq, value, time, flags FROM readings WHERE agent_id = %s ORDER BY seq", AGENT
    )
    assert [s for s, *_ in stored] == list(range(1, 3 * PER_PHASE + 1))  # each once, in sequence
    assert [v for _, v, *_ in stored] == [60.0 + i for i in range(3 * PER_PHASE)]  # in the order measured
    expected_flag = {DAY: ["ingest:sent_in_future"], -DAY: ["ingest:sent_late"], timedelta(0): []}
    for i, (_seq, _value, time, flags) in enumerate(stored):
        offset = phases[i // PER_PHASE]
        assert [f for f in flags if f.startswith("ingest:")] == expected_flag[offset]
        assert abs(time - (now + offset)) < timedelta(minutes=10)  # the time the Pi gave it, kept
    times = [t for _, _, t, _ in stored]
    assert times != sorted(times)  # by time the day-ahead readings would come last: sequence is the order
