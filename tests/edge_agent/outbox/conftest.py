"""An enrolled-looking outbox in tmp_path, and readings to put in it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.outbox import SqliteOutbox
from rpm_core.clock import ManualClock
from rpm_core.ids import agent_id
from rpm_core.reading import Reading

AGENT = agent_id("agt-test")
KID = "0123456789abcdef"
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def reading(
    n: int = 0, *, metric: str = "heart_rate", value: float = 72.0, device: str = "E0:00:00:00:00:01"
) -> Reading:
    return Reading(
        agent_id=AGENT,
        device_id=device,
        seq=0,
        metric=metric,
        value=value + n % 10,
        measured_at=START + timedelta(seconds=n),
        flags=frozenset({"sensor_contact:detected"}),
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def path(tmp_path: Path, key: bytes, clock: ManualClock) -> Path:
    p = tmp_path / "state" / "outbox.db"
    SqliteOutbox.create(p, key=key, agent=AGENT, kid=KID, clock=clock)
    return p


@pytest.fixture
def outbox(path: Path, key: bytes, clock: ManualClock) -> Iterator[SqliteOutbox]:
    box = SqliteOutbox.open(path, key=key, agent=AGENT, kid=KID, clock=clock, max_readings=1000)
    try:
        yield box
    finally:
        box.close()
