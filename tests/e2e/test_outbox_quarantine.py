"""Issue 14, item 4: an outbox row that no longer opens is quarantined, reported, and the agent goes on.

Before, a row that failed authentication made the agent exit, and systemd restarted it into the
same row for ever. Here the outbox file is corrupted on disk the way a failing SD card does it (a
byte of two stored rows changed in the database file itself, SQLite none the wiser), then the real
agent runs against the real broker (rendered by ``vigil broker render``) and real ingest: every
other reading is stored, the two rows are moved to the outbox's quarantine and reported to the
server as gaps with the reason ``quarantined`` (one of them the last row, so its gap travels in an
envelope with no readings), the receipt passes them, the agent's status carries the
``outbox_quarantine`` alarm to the server, ``vigil edge status`` lists them, and the agent is
still running.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from rpm_core.clock import SystemClock
from tests.e2e.conftest import enroll_with_cli, ingest_worker, rows, until
from tests.support.agents import readings
from tests.support.platform import RenderedPlatform
from vigil_testkit.agent_harness import Enrolled

AGENT = "agt-quarantine"
N = 40
BROKEN = (7, N)  # one in the middle, and the last row (no reading follows its gap)


@pytest.fixture
def enrolled(rendered: RenderedPlatform, tmp_path: Path) -> Enrolled:
    return enroll_with_cli(rendered, tmp_path, AGENT)


def buffer_and_corrupt(enrolled: Enrolled) -> None:
    """``N`` readings in the outbox, then one byte of each ``BROKEN`` row flipped in the file on disk."""
    settings, ident = enrolled.settings(), enrolled.identity()
    path = settings.outbox_path
    box = SqliteOutbox.open(
        path, key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid, clock=SystemClock(),
        max_readings=10_000,
    )  # fmt: skip
    try:
        box.append(readings(AGENT, 1, N))
    finally:
        box.close()  # the last connection: the write-ahead log is folded into the file
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    sealed = {seq: bytes(blob) for seq, blob in db.execute("SELECT seq, sealed FROM readings")}
    db.close()
    raw = bytearray(path.read_bytes())
    for seq in BROKEN:
        at = raw.find(sealed[seq])
        assert at >= 0  # in the file itself (not only in a write-ahead log)
        assert raw.find(sealed[seq], at + 1) < 0  # and exactly once
        raw[at + len(sealed[seq]) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.asyncio
async def test_a_row_corrupted_on_disk_is_quarantined_reported_and_the_agent_carries_on(
    rendered: RenderedPlatform, enrolled: Enrolled, empty_radio: Radio
) -> None:
    platform, radio = rendered, empty_radio
    await asyncio.to_thread(buffer_and_corrupt, enrolled)
    path = (await asyncio.to_thread(enrolled.settings)).outbox_path
    svc = await asyncio.to_thread(ingest_worker, platform)
    agent = await asyncio.to_thread(lambda: Agent(enrolled.settings(), enrolled.identity(), radio=radio))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    def alarms() -> list[str]:
        found = rows(platform.db, "SELECT alarms FROM agent_status WHERE agent_id = %s", AGENT)
        return list(found[0][0]) if found else []

    try:
        await until(
            lambda: inspect_outbox(path).stats.last_receipt == N, "a receipt through the last row", running=task
        )
        await until(lambda: "outbox_quarantine" in alarms(), "the status alarm at the server", running=task)
        assert not task.done()  # still running: no crash loop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(svc.stop, 5)

    seqs = [
        s
        for (s,) in await asyncio.to_thread(
            rows, platform.db, "SELECT seq FROM readings WHERE agent_id = %s ORDER BY seq", AGENT
        )
    ]
    assert seqs == [s for s in range(1, N + 1) if s not in BROKEN]  # every other reading, once
    gaps = await asyncio.to_thread(
        rows, platform.db, "SELECT first_seq, last_seq, reason FROM agent_gaps WHERE agent_id = %s ORDER BY 1", AGENT
    )
    assert gaps == [(s, s, "quarantined") for s in BROKEN]
    local = await asyncio.to_thread(inspect_outbox, path)
    assert [(q.seq, q.reason) for q in local.quarantined] == [(s, "row does not authenticate") for s in BROKEN]
    assert (local.stats.depth, local.stats.gaps) == (0, ())  # delivered, and the gaps receipted
    result = await asyncio.to_thread(
        CliRunner().invoke, edge_app, ["status", "--config", str(enrolled.config), "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [q["seq"] for q in shown["outbox"]["quarantined"]] == list(BROKEN)
    assert "outbox_quarantine" in shown["alarms"]
