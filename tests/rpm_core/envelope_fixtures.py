"""Shared builders for envelope tests."""

from __future__ import annotations

from datetime import UTC, datetime

from rpm_core.envelope import ReadingBatch
from rpm_core.ids import agent_id, org_id
from rpm_core.reading import Reading

ORG = org_id("clinic-1")
AGENT = agent_id("agt-0001")
T = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def batch(n: int = 3, *, agent: str = AGENT, first_seq: int = 1) -> ReadingBatch:
    readings = tuple(
        Reading(
            agent_id=agent,
            device_id="F0:12:34:56:78:9A",
            seq=first_seq + i,
            metric="heart_rate",
            value=60.0 + i,
            measured_at=T,
            flags=frozenset({"contact"}),
        )
        for i in range(n)
    )
    return ReadingBatch(ORG, agent_id(agent), T, readings)
