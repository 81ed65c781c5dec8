"""Agent state: device updates wake status reporting; alarms latch or clear; skew raises clock_skew."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from edge_agent.settings import PairedDevice
from edge_agent.state import LATCH, AgentState
from rpm_core.clock import ManualClock

HR = PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate", name="HR")


@pytest.mark.asyncio
async def test_changes_bump_the_version_and_wake_waiters() -> None:
    state = AgentState([HR], clock=ManualClock(datetime(2026, 3, 1, tzinfo=UTC)), clock_skew_threshold_s=120)
    version = state.version
    waiter = asyncio.create_task(state.changed(version))
    state.seen(HR.address, datetime(2026, 3, 1, tzinfo=UTC))  # last_seen alone: no status message
    assert state.version == version
    state.update_device(HR.address, connected=True, battery_pct=90)
    await asyncio.wait_for(waiter, 1)
    assert state.version == version + 1
    state.update_device(HR.address, connected=True)  # no actual change
    assert state.version == version + 1
    assert state.device(HR.address).battery_pct == 90


def test_alarms() -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    state = AgentState([HR], clock=clock, clock_skew_threshold_s=120)
    state.raise_alarm("disk_full")
    state.raise_alarm("client_id_takeover", latch=True)
    state.update_device(HR.address, clock_skew_s=-3600.0)
    assert state.alarms == {"disk_full", "client_id_takeover", "clock_skew"}
    state.clear_alarm("disk_full")
    state.clear_alarm("client_id_takeover")  # latched: stays until reported
    assert "client_id_takeover" in state.alarms
    clock.advance(LATCH.total_seconds() + 1)
    assert "client_id_takeover" not in state.alarms
    with pytest.raises(ValueError):
        state.raise_alarm("on_fire")
