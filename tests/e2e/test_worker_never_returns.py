"""Catalogue 13 and 14: three ingest workers on one shared subscription; one is killed (-9) with
unacknowledged messages and never comes back.

Mosquitto 2.0.11 keeps what it had sent or queued to the dead member in that member's persistent
session, and goes on giving it its round-robin share of new messages, until the member returns or
its session expires (``mqtt_session_expiry_s``). What delivers those readings is the end-to-end
guarantee: the real agent deletes nothing without the server's receipt, and when no receipt comes
for ``receipt_timeout_s`` it sends every unreceipted reading again; the copies that land on a live
member are committed and the receipt moves on. Each resend round can still hand the oldest
unreceipted envelope to the dead member, so the number of rounds grows with the backlog while the
dead session lives (measured: about one round per ten envelopes); once it expires the next round
delivers everything. The bound stated, in the agent's own units: with the workers' session expiry
``EXPIRY_S``, at most ``EXPIRY_S / RECEIPT_TIMEOUT_S + 2`` resend rounds after the kill, i.e. the
backlog is complete within ``EXPIRY_S + 2 x receipt_timeout_s`` of the kill. (With the default
expiry of 7 days that bound is 7 days; a short expiry costs nothing in safety, because the agent,
not the broker, holds every reading until its receipt.) Everything is stored exactly once, no gap
is recorded, and the killed worker stays dead.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from rpm_core.clock import SystemClock
from tests.e2e.conftest import enroll_with_cli, rows, until
from tests.ingest.conftest import IngestProcess
from tests.support.agents import readings
from tests.support.platform import RenderedPlatform

AGENT = "agt-shared"
N = 3000  # 150 envelopes of 20
RECEIPT_TIMEOUT_S = 3.0
EXPIRY_S = 60  # the workers' mqtt_session_expiry_s (its minimum)
MAX_RESENDS = EXPIRY_S // int(RECEIPT_TIMEOUT_S) + 2


@pytest.mark.slow
@pytest.mark.asyncio
async def test_catalogue_14_a_worker_killed_with_unacked_messages_that_never_returns_loses_nothing(
    rendered: RenderedPlatform, tmp_path: Path, empty_radio: Radio
) -> None:
    platform = rendered
    enrolled = await asyncio.to_thread(
        enroll_with_cli, platform, tmp_path, AGENT, receipt_timeout_s=RECEIPT_TIMEOUT_S, batch_max_readings=20
    )
    settings, ident = await asyncio.to_thread(lambda: (enrolled.settings(), enrolled.identity()))
    workers = [
        IngestProcess(
            platform.ingest_settings(
                mqtt_client_id=f"vigil-ingest-{i}",
                batch_max_messages=10,
                batch_max_wait_ms=50,
                mqtt_session_expiry_s=EXPIRY_S,
            ),
            tmp_path / f"ingest-{i}.log",
        )
        for i in (1, 2, 3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        await asyncio.to_thread(w.wait_connected)
    agent = Agent(settings, ident, radio=empty_radio, version="test")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    victim = workers[1]
    try:
        await until(lambda: inspect_outbox(settings.outbox_path).stats.registered_at is not None, "registration")

        def buffer() -> None:  # a long offline backlog arriving at once (as a BLE session would write it)
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
        await until(lambda: agent.uplink is not None and agent.uplink.receipted_through > 0, "the first receipt")
        await asyncio.to_thread(victim.kill)  # kill -9 mid-stream: its unacked share stays in its session
        resends_before = agent.uplink.resends
        await until(
            lambda: inspect_outbox(settings.outbox_path).stats.last_receipt == N,
            "everything receipted",
            running=task,
            limit_s=EXPIRY_S + 60 * RECEIPT_TIMEOUT_S,
        )
        resends = agent.uplink.resends - resends_before
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        for w in workers:
            if w is not victim:
                assert await asyncio.to_thread(w.terminate) == 0
    facts = {"catalogue": 14, "readings": N, "receipt_timeout_s": RECEIPT_TIMEOUT_S, "session_expiry_s": EXPIRY_S}
    print(json.dumps({**facts, "resend_rounds": resends, "bound_rounds": MAX_RESENDS}))
    assert victim.proc is not None
    assert victim.proc.poll() is not None  # it never came back
    assert resends <= MAX_RESENDS
    with psycopg.connect(platform.db) as conn:
        n, distinct, lo, hi = conn.execute(
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM readings WHERE agent_id = %s", (AGENT,)
        ).fetchone()
    assert (n, distinct, lo, hi) == (N, N, 1, N)  # everything, once
    assert rows(platform.db, "SELECT count(*) FROM agent_gaps WHERE agent_id = %s", AGENT) == [(0,)]  # no false gap
    survivors = [w.log() for w in workers if w is not victim]
    assert all("committed" in log or "session present" in log for log in survivors)
