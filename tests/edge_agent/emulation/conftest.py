"""Fixtures for the emulated BLE devices: one virtual radio medium and the agent's central on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from edge_agent.emulation import EmulatedPeripheral, EmulatedRadio, VirtualAir


@pytest_asyncio.fixture
async def air() -> VirtualAir:
    return VirtualAir()


@pytest_asyncio.fixture
async def radio(air: VirtualAir) -> AsyncIterator[EmulatedRadio]:
    central = await EmulatedRadio.open(air)
    try:
        yield central
    finally:
        await central.close()


class Started:
    """Starts peripherals for a test and stops them afterwards."""

    def __init__(self) -> None:
        self.devices: list[EmulatedPeripheral] = []

    async def __call__(self, device: EmulatedPeripheral) -> EmulatedPeripheral:
        await device.start()
        self.devices.append(device)
        return device


@pytest_asyncio.fixture
async def started() -> AsyncIterator[Started]:
    holder = Started()
    try:
        yield holder
    finally:
        for device in holder.devices:
            await device.stop()
