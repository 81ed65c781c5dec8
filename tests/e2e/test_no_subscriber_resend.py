"""PUBACK 0x10 (no matching subscribers) brings the agent's resend forward.

Mosquitto 2.0.11 does not keep shared subscriptions over a restart: until ingest has subscribed
again, the broker accepts each readings envelope with PUBACK reason 0x10 and drops it (while the
broker runs, a stopped worker's persistent session keeps the subscription and queues instead). Before, the
agent took that PUBACK as delivery in progress and waited for the receipt timeout (60 s by
default) before sending the readings again. Here the receipt timeout is an hour, so only the 0x10
path can deliver within the test: ingest stops, the rendered broker restarts, and the real agent
publishes while no worker subscribes (every envelope answered 0x10), resends with a doubling delay (counted), and
once a worker subscribes everything is stored once and receipted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from rpm_core.clock import SystemClock
from tests.e2e.conftest import enroll_with_cli, ingest_worker, rows, until
from tests.support.agents import readings
from tests.support.platform import RenderedPlatform

AGENT = "agt-nosub"
N = 30


@pytest.mark.asyncio
async def test_no_subscriber_puback_resends_soon_not_after_the_receipt_timeout(
    rendered: RenderedPlatform, tmp_path: Path, empty_radio: Radio
) -> None:
    platform = rendered
    # The registration needs ingest: register first, then take ingest away.
    enrolled = await asyncio.to_thread(
        enroll_with_cli, platform, tmp_path, AGENT, receipt_timeout_s=3600.0, no_subscriber_retry_s=0.5
    )
    settings, ident = await asyncio.to_thread(lambda: (enrolled.settings(), enrolled.identity()))
    svc = await asyncio.to_thread(ingest_worker, platform)
    agent = Agent(settings, ident, radio=empty_radio, version="test")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await until(lambda: inspect_outbox(settings.outbox_path).stats.registered_at is not None, "registration")
        await asyncio.to_thread(svc.stop, 5)
        # Stopped, ingest's persistent session would queue envelopes (PUBACK 0); after a broker
        # restart Mosquitto 2.0.11 has the session but not its shared subscription.
        await asyncio.to_thread(platform.broker.stop)
        await asyncio.to_thread(platform.broker.start)
        await until(lambda: agent.uplink is not None and agent.state is not None and agent.state.broker_connected,
                    "the agent back on the broker", running=task)  # fmt: skip

        def buffer() -> None:
            box = SqliteOutbox.open(
                settings.outbox_path, key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid,
                clock=SystemClock(), max_readings=10_000,
            )  # fmt: skip
            try:
                box.append(readings(AGENT, 1, N))
            finally:
                box.close()

        # A second connection to the agent's outbox, as a BLE session would write: the agent is told.
        await asyncio.to_thread(buffer)
        assert agent.uplink is not None
        agent.uplink.readings_added()
        # Dropped by the broker, answered 0x10, sent again (twice), dropped again: each time 0x10.
        await until(lambda: agent.uplink is not None and agent.uplink.resends >= 2, "two resends", running=task)
        assert agent.uplink.no_subscribers >= 3
        assert rows(platform.db, "SELECT count(*) FROM readings WHERE agent_id = %s", AGENT) == [(0,)]
        # Ingest subscribes again: the next resend is delivered long before the hour's receipt timeout.
        svc = await asyncio.to_thread(ingest_worker, platform)
        await until(
            lambda: inspect_outbox(settings.outbox_path).stats.last_receipt == N, "receipt through N", running=task
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(svc.stop, 5)
    stored = await asyncio.to_thread(
        rows, platform.db, "SELECT seq FROM readings WHERE agent_id = %s ORDER BY seq", AGENT
    )
    assert [s for (s,) in stored] == list(range(1, N + 1))
