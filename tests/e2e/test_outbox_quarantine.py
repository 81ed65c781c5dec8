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
import getpass
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from typer.testing import CliRunner

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.config_file import read_config, write_config
from edge_agent.emulation import EmulatedRadio, VirtualAir
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from ingest.service import IngestService
from rpm_core.clock import SystemClock
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.keystore import load_server_keys
from tests.edge_agent.harness import Enrolled
from tests.support.agents import readings
from tests.support.platform import RenderedPlatform, start_platform

AGENT = "agt-quarantine"
N = 40
BROKEN = (7, N)  # one in the middle, and the last row (no reading follows its gap)


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def enrolled(platform: RenderedPlatform, tmp_path: Path) -> Enrolled:
    bundle_path = tmp_path / "agent.bundle.json"
    platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", AGENT, "--out", str(bundle_path)
    )
    directory, state_dir = tmp_path / "edge", tmp_path / "edge-state"
    result = CliRunner().invoke(
        edge_app,
        ["enroll", "--bundle", str(bundle_path), "--dir", str(directory), "--state-dir", str(state_dir),
         "--time-zone", "UTC", "--owner", getpass.getuser()],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = directory / "agent.toml"
    tuning = {"mqtt_backoff_cap_s": 2.0, "registration_retry_s": 1.0, "batch_max_age_s": 0.2}
    write_config(config, {**read_config(config), **tuning}, ())
    return Enrolled(config, EnrollmentBundle.read(bundle_path), directory, state_dir)


@pytest_asyncio.fixture
async def radio() -> AsyncIterator[Radio]:
    central = await EmulatedRadio.open(VirtualAir())  # no devices: the readings are already buffered
    try:
        yield Radio(central.scanner_backend, central.client_backend)
    finally:
        await central.close()


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


def ingest(platform: RenderedPlatform) -> IngestService:
    svc = IngestService(
        platform.ingest_settings(), keyring=load_server_keys(platform.key_dir), mqtt_password=platform.ingest_password()
    )
    svc.start()
    return svc


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql, (AGENT,)).fetchall()


@pytest.mark.asyncio
async def test_a_row_corrupted_on_disk_is_quarantined_reported_and_the_agent_carries_on(
    platform: RenderedPlatform, enrolled: Enrolled, radio: Radio
) -> None:
    await asyncio.to_thread(buffer_and_corrupt, enrolled)
    path = (await asyncio.to_thread(enrolled.settings)).outbox_path
    svc = await asyncio.to_thread(ingest, platform)
    agent = await asyncio.to_thread(lambda: Agent(enrolled.settings(), enrolled.identity(), radio=radio))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    async def until(cond: Any, what: str) -> None:
        async with asyncio.timeout(60):
            while not await asyncio.to_thread(cond):
                assert not task.done(), f"the agent stopped: {task.exception()!r}"
                await asyncio.sleep(0.1)
        assert not task.done(), what

    try:
        await until(lambda: inspect_outbox(path).stats.last_receipt == N, "receipted through the last row")
        await until(
            lambda: "outbox_quarantine" in (query(platform.db, "SELECT alarms FROM agent_status WHERE agent_id = %s")
                                            or [([],)])[0][0],
            "the status alarm at the server",
        )  # fmt: skip
        assert not task.done()  # still running: no crash loop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(svc.stop, 5)

    seqs = [
        s
        for (s,) in await asyncio.to_thread(
            query, platform.db, "SELECT seq FROM readings WHERE agent_id = %s ORDER BY seq"
        )
    ]
    assert seqs == [s for s in range(1, N + 1) if s not in BROKEN]  # every other reading, once
    gaps = await asyncio.to_thread(
        query, platform.db, "SELECT first_seq, last_seq, reason FROM agent_gaps WHERE agent_id = %s ORDER BY 1"
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
