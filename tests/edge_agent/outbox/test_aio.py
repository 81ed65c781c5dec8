"""The asyncio outbox keeps every SQLite call off the event loop (blockbuster polices this test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.outbox import AsyncOutbox, Cursor
from rpm_core.clock import ManualClock
from tests.edge_agent.outbox.conftest import AGENT, KID, reading


@pytest.mark.asyncio
async def test_async_outbox_round_trip(path: Path, key: bytes, clock: ManualClock) -> None:
    box = await AsyncOutbox.open(path, key=key, agent=AGENT, kid=KID, clock=clock, max_readings=100)
    try:
        results = await asyncio.gather(*(box.append([reading(i)]) for i in range(10)))
        assert sorted(s for seqs in results for s in seqs) == list(range(1, 11))
        await box.append([reading(11)], cursor=Cursor("E0:00:00:00:00:06", "glucose", 3))
        assert await box.cursor("E0:00:00:00:00:06", "glucose") == 3
        assert (await box.backlog(0, 5)).count == 5
        assert [r.seq for r in await box.fetch(8, 10)] == [9, 10, 11]
        assert await box.acknowledge(10, clock.now()) == 10
        assert (await box.stats()).depth == 1
        assert await box.gaps() == ()
    finally:
        await box.close()
