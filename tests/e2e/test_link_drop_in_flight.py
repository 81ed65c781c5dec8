"""Catalogue 10: many messages in flight, then the link drops: no reading stored twice.

The real agent sends a backlog of 8,000 readings through a real TCP link to the rendered broker
(a relay the test cuts with a reset, so whatever is in flight on it is lost mid-packet: publishes
the broker has or has not acknowledged, receipts on their way back) to real ingest. The link is cut
again and again while envelopes are in flight; the agent reconnects and sends every unreceipted
reading again, so the server sees some of them twice and stores each exactly once. Before each cut
the relay holds back what the broker sends to the agent until the server has stored readings the
agent has no receipt for: the positive signal that the cut lands on messages that got through
(under load, cutting on timing alone once made 40 cuts that all missed). The receipt timeout is an hour, so every resend
here is the reconnect's.

Writing it found a stall: a batch being read from the outbox while the link dropped was recorded
as in flight after the rewind, so on the new connection the window was full of envelopes never
published there and nothing moved until the receipt timeout (an hour here, a minute by default).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from rpm_core.clock import SystemClock
from tests.e2e.conftest import CuttableLink, enroll_with_cli, ingest_worker, rows, until
from tests.support.agents import readings
from tests.support.platform import RenderedPlatform

AGENT = "agt-link-drop"
N = 8000
CUTS = 6


@pytest.mark.asyncio
async def test_catalogue_10_link_dropped_with_messages_in_flight_stores_nothing_twice(
    rendered: RenderedPlatform, tmp_path: Path, empty_radio: Radio
) -> None:
    platform = rendered
    link = await CuttableLink(platform.port).start()
    enrolled = await asyncio.to_thread(
        enroll_with_cli, platform, tmp_path, AGENT, receipt_timeout_s=3600.0, mqtt_backoff_cap_s=1.0
    )
    settings, ident = await asyncio.to_thread(lambda: (enrolled.settings(broker_port=link.port), enrolled.identity()))
    svc = await asyncio.to_thread(ingest_worker, platform)
    agent = Agent(settings, ident, radio=empty_radio, version="test")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    def receipted() -> int:
        return inspect_outbox(settings.outbox_path).stats.last_receipt

    try:
        await until(lambda: inspect_outbox(settings.outbox_path).stats.registered_at is not None, "registration")

        def buffer() -> None:
            box = SqliteOutbox.open(
                settings.outbox_path, key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid,
                clock=SystemClock(), max_readings=100_000,
            )  # fmt: skip
            try:
                box.append(readings(AGENT, 1, N))
            finally:
                box.close()

        await asyncio.to_thread(buffer)
        assert agent.uplink is not None
        agent.uplink.readings_added()
        uplink = agent.uplink

        def stored() -> int:
            [(n,)] = rows(platform.db, "SELECT count(*) FROM readings WHERE agent_id = %s", AGENT)
            return int(n)

        cuts = 0
        while cuts < CUTS:
            # With receipts flowing, hold back what the broker sends to the agent, wait until the
            # server has stored readings the agent has no receipt (nor PUBACK) for (the positive
            # signal that the cut will hit messages that already got through), then cut.
            before = uplink.receipted_through
            async with asyncio.timeout(60):
                while not (uplink.receipted_through > before and len(uplink._inflight) >= 4):
                    assert uplink.receipted_through < N, "delivered before the cuts: make N larger"
                    assert not task.done()
                    await asyncio.sleep(0.005)
            link.hold_downstream()
            async with asyncio.timeout(60):
                while await asyncio.to_thread(stored) <= uplink.receipted_through:
                    assert not task.done()
                    await asyncio.sleep(0.01)
            link.cut()
            cuts += 1
        await until(lambda: receipted() == N, "everything receipted after the cuts", running=task, limit_s=120)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(svc.stop, 5)
        await link.stop()
    duplicates = svc.metrics.registry.get_sample_value("vigil_ingest_duplicates_total") or 0.0
    print(json.dumps({"catalogue": 10, "readings": N, "cuts": cuts, "duplicates_absorbed": duplicates}))
    [(n, distinct, lo, hi)] = await asyncio.to_thread(
        rows, platform.db,
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM readings WHERE agent_id = %s", AGENT,
    )  # fmt: skip
    assert (n, distinct, lo, hi) == (N, N, 1, N)  # every reading, none twice
    assert duplicates > 0  # the cuts hit messages the server had stored: it saw them again and kept one
    assert agent.uplink.resends == 0  # (no receipt timeout: every resend was the reconnect's)
