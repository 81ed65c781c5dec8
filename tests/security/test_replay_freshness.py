"""Issue 10 item 9: envelopes sent long ago or "in the future" are stored, flagged and counted.

Deduplication already absorbs a replayed envelope; nothing bounded how old ``sent_at`` may be
against the server's clock. Such envelopes may be a legitimate backlog (a Pi offline for a week)
or a Pi with a wrong clock, so ingest does not drop them: it stores their readings with the flag
``ingest:sent_long_ago`` or ``ingest:sent_in_future``, counts them per agent and logs once per
agent and window. The real ingest service (in process, for its clock seam), real Mosquitto, real
PostgreSQL; the agent uses only its own credentials.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from rpm_core.clock import ManualClock
from rpm_core.envelope import ReadingBatch, seal_batch
from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import SimAgent, readings
from tests.support.ingest_attack import (
    IngestRig,
    ingest_rig_fixture,  # noqa: F401 - the ingest_rig fixture
)

STALE = "vigil_ingest_stale_envelopes_total"


def sealed_at(a: SimAgent, first: int, sent_at: datetime) -> bytes:
    batch = ReadingBatch(a.org, a.agent, sent_at, tuple(readings(a.agent, first, 5)))
    return seal_batch(batch, agent=a.keys, server=a.server.public())[1]


def flags(db: str, agent: str) -> dict[int, list[str]]:
    with psycopg.connect(db) as conn:
        return dict(conn.execute("SELECT seq, flags FROM readings WHERE agent_id = %s", (agent,)).fetchall())


def test_replayed_old_and_future_envelopes_are_stored_once_flagged_and_counted(
    db: str, ingest_rig: IngestRig, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(datetime.now(UTC))
    svc = ingest_rig.service(clock=clock)
    a = ingest_rig.agent("agt-fresh")
    topic = f"vigil/v1/{a.org}/{a.agent}/up/readings"
    captured = sealed_at(a, 1, clock.now())
    a.publish_raw(topic, captured)
    a.wait_receipt(5)
    assert all(f == ["contact"] for f in flags(db, "agt-fresh").values())  # fresh: not flagged

    def stale(kind: str) -> float:
        return svc.metrics.registry.get_sample_value(STALE, {"agent": "agt-fresh", "kind": kind}) or 0.0

    with caplog.at_level(logging.WARNING, logger="ingest"):
        clock.advance(30 * 24 * 3600)  # a month later the attacker replays the captured envelope
        a.publish_raw(topic, captured)
        wait_until(lambda: svc.metrics.registry.get_sample_value("vigil_ingest_duplicates_total") == 5, 20, "dup")
        assert stale("sent_long_ago") == 1  # absorbed by deduplication, and now counted
        a.publish_raw(topic, sealed_at(a, 6, clock.now() - timedelta(days=10)))  # a week-long backlog
        a.publish_raw(topic, sealed_at(a, 11, clock.now() + timedelta(hours=2)))  # a Pi whose clock runs ahead
        a.wait_receipt(15)

    got = flags(db, "agt-fresh")
    assert sorted(got) == list(range(1, 16))  # every reading stored exactly once (the dedup key is unique)
    assert scalar(db, "SELECT count(*) FROM readings WHERE agent_id = 'agt-fresh'") == 15
    assert [got[s] for s in range(1, 6)] == [["contact"]] * 5  # the original delivery was fresh
    assert [got[s] for s in range(6, 11)] == [["contact", "ingest:sent_long_ago"]] * 5
    assert [got[s] for s in range(11, 16)] == [["contact", "ingest:sent_in_future"]] * 5
    assert (stale("sent_long_ago"), stale("sent_in_future")) == (2, 1)
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0  # recorded, never dropped
    lines = [r.getMessage() for r in caplog.records if "agt-fresh" in r.getMessage()]
    assert sum("sent long ago" in line for line in lines) == 1  # one line per agent and window
    assert sum("sent in the future" in line for line in lines) == 1
    # The agent's last-seen time never moves past the server's clock.
    assert scalar(db, "SELECT last_seen_at FROM agents WHERE agent_id = 'agt-fresh'") <= clock.now()
