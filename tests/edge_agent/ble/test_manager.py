"""The device manager: only allow-listed devices are connected; they come back on their advertisements."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from edge_agent.ble import DeviceManager, Radio
from edge_agent.emulation import VirtualAir, heart_rate_strap, weight_scale
from edge_agent.errors import DeviceUnreachable
from edge_agent.outbox import AsyncOutbox
from edge_agent.settings import PairedDevice
from rpm_core.backoff import BackoffPolicy
from tests.edge_agent.ble.conftest import Rig
from tests.edge_agent.emulation.conftest import Started

HR_PAYLOAD = bytes.fromhex("064e")  # 78 bpm, contact detected
WEIGHT_PAYLOAD = bytes.fromhex("00b036")  # 70.0 kg (SIG-conformant case)


async def stored(outbox: AsyncOutbox) -> int:
    return (await outbox.stats()).last_allocated


async def until(cond, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await cond():  # noqa: ASYNC110 - polling what the devices and the outbox did
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_only_paired_devices_and_reconnect_after_a_drop(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    mine = await started(heart_rate_strap(air, name="MINE"))
    neighbour = await started(heart_rate_strap(air, name="NEIGHBOUR"))
    paired = PairedDevice(address=mine.address, profile="heart_rate")
    rig = Rig(radio, outbox, [paired])
    manager = DeviceManager(
        radio=radio, devices=[paired], session=rig.session, state=rig.state, policy=BackoffPolicy(0.05, 2, 0.5)
    )
    task = asyncio.create_task(manager.run())
    try:
        for expected in (1, 2, 3):
            await until(lambda: _async(mine.is_subscribed(0x2A37)))
            await mine.notify(0x2A37, HR_PAYLOAD)
            await until(lambda n=expected: _at_least(outbox, n))
            await mine.drop_link()
        assert neighbour.connections == []
        assert rig.state.counters == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [r.value for r in await outbox.fetch(0, 10)] == [78.0, 78.0, 78.0]


@pytest.mark.asyncio
async def test_scale_is_reached_each_time_it_opens_its_window(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    scale = await started(weight_scale(air, name="SCALE", connectable_window=2.0))
    paired = PairedDevice(address=scale.address, profile="weight_scale")
    rig = Rig(radio, outbox, [paired])
    manager = DeviceManager(
        radio=radio, devices=[paired], session=rig.session, state=rig.state, policy=BackoffPolicy(0.05, 2, 0.5)
    )
    task = asyncio.create_task(manager.run())
    try:
        for expected in (1, 2):
            await scale.take_measurement(0x2A9D, WEIGHT_PAYLOAD)
            await until(lambda n=expected: _at_least(outbox, n))
            await until(lambda: _async(not scale.connections))  # it hangs up after delivering
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(r.metric, r.value) for r in await outbox.fetch(0, 10)] == [("body_weight", 70.0)] * 2


async def _async(value: bool) -> bool:
    return value


async def _at_least(outbox: AsyncOutbox, n: int) -> bool:
    return await stored(outbox) >= n


class SwallowingRadio(Radio):
    """A radio whose connect loses the task's cancellation, as Python 3.11's ``asyncio.wait_for``
    inside bumble does when the connection completes in the same loop iteration as the cancel."""

    def __init__(self, radio: Radio, *, then_fail: bool) -> None:
        super().__init__(radio.scanner_backend, radio.client_backend)
        object.__setattr__(self, "connecting", asyncio.Event())  # Radio is a frozen dataclass
        object.__setattr__(self, "then_fail", then_fail)

    async def connect(self, device, *, name, disconnected):  # type: ignore[no-untyped-def]
        self.connecting.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: only Task.cancelling() remembers it
            await asyncio.sleep(3600)
        if self.then_fail:
            raise DeviceUnreachable(device.address, "TimeoutError")
        return await super().connect(device, name=name, disconnected=disconnected)


@pytest.mark.asyncio
@pytest.mark.parametrize("then_fail", [False, True], ids=["connects", "fails"])
async def test_a_cancellation_lost_inside_connect_still_stops_the_manager(
    then_fail: bool, air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    strap = await started(heart_rate_strap(air, name="STRAP"))
    swallowing = SwallowingRadio(radio, then_fail=then_fail)
    paired = PairedDevice(address=strap.address, profile="heart_rate")
    rig = Rig(swallowing, outbox, [paired])
    manager = DeviceManager(
        radio=swallowing, devices=[paired], session=rig.session, state=rig.state, policy=BackoffPolicy(0.05, 2, 0.5)
    )
    task = asyncio.create_task(manager.run())
    await swallowing.connecting.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=20)  # a hang guard: before the fix it never ended
    assert done == {task}
    assert task.cancelled()
    await until(lambda: _async(not strap.connections))  # and the link it made was closed
