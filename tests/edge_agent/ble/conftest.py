"""BLE fixtures: emulated devices on a virtual radio, the agent's Radio over it, a real outbox."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from edge_agent.ble import DeviceSession, Radio, SessionOptions
from edge_agent.emulation import EmulatedRadio, VirtualAir
from edge_agent.outbox import AsyncOutbox, SqliteOutbox
from edge_agent.settings import PairedDevice
from edge_agent.state import AgentState
from rpm_core.clock import SystemClock
from rpm_core.ids import agent_id
from tests.edge_agent.emulation.conftest import Started, started  # noqa: F401 - fixture

AGENT = agent_id("agt-ble")
KID = "kid-ble"
OPTIONS = SessionOptions(zone=ZoneInfo("UTC"), clock_skew_threshold=timedelta(minutes=2), racp_timeout_s=10)


@pytest_asyncio.fixture
async def air() -> VirtualAir:
    return VirtualAir()


@pytest_asyncio.fixture
async def radio(air: VirtualAir) -> AsyncIterator[Radio]:
    central = await EmulatedRadio.open(air)
    try:
        yield Radio(central.scanner_backend, central.client_backend)
    finally:
        await central.close()


@pytest.fixture
def outbox_file(tmp_path: Path) -> tuple[Path, bytes]:
    key = secrets.token_bytes(32)
    path = tmp_path / "outbox.db"
    SqliteOutbox.create(path, key=key, agent=AGENT, kid=KID, clock=SystemClock())
    return path, key


@pytest_asyncio.fixture
async def outbox(outbox_file: tuple[Path, bytes]) -> AsyncIterator[AsyncOutbox]:
    path, key = outbox_file
    box = await AsyncOutbox.open(path, key=key, agent=AGENT, kid=KID, clock=SystemClock(), max_readings=10_000)
    try:
        yield box
    finally:
        await box.close()


class Rig:
    """Builds sessions for paired devices, counting what they store."""

    def __init__(self, radio: Radio, outbox: AsyncOutbox, devices: list[PairedDevice]) -> None:
        self.radio = radio
        self.outbox = outbox
        self.state = AgentState(devices, clock=SystemClock(), clock_skew_threshold_s=120)
        self.stored = 0

    def _on_stored(self) -> None:
        self.stored += 1

    def session(self, paired: PairedDevice, options: SessionOptions = OPTIONS) -> DeviceSession:
        return DeviceSession(
            paired,
            radio=self.radio,
            agent=AGENT,
            outbox=self.outbox,
            state=self.state,
            clock=SystemClock(),
            options=options,
            on_stored=self._on_stored,
        )
