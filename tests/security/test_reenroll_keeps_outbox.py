"""Issue 10 item 8: ``vigil edge enroll --force`` must not make undelivered readings unreadable.

The attack is an ordinary operator action: a Pi holding readings it could not deliver yet is
re-enrolled with a new bundle. Before the fix the old outbox was renamed aside but the outbox key
that encrypts it was overwritten: nothing on the machine could read those readings again.

Set up the production way (tests/e2e's platform: ``vigil agents keys init``, ``vigil broker
render``, Mosquitto, ``vigil agents create``, ``vigil edge enroll``, ``vigil ingest``): the agent
registers, then readings wait undelivered in its real outbox, then ``vigil edge enroll --force``
runs through the real CLI with a second agent's bundle.

* The old outbox, its key and the old identity are kept together in ``retired/``: the readings
  still open with a key on the machine, and ``vigil edge status`` shows them.
* The re-enrolled agent delivers them *as the old identity* (its keys, its credentials, its
  sequence numbers): ingest stores them for the old agent and its patient, exactly once, and the
  retired directory (with the old private keys) is removed when the last reading is receipted.
* When the old identity can no longer deliver (its agent revoked), ``vigil edge outbox adopt``
  re-seals them under the new identity, flagged with where they came from, and they are stored.
* Re-enrolling under a running agent is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_agent.errors import EdgeError
from edge_agent.identity import AgentIdentity
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from rpm_core.clock import SystemClock
from rpm_core.errors import VigilError
from rpm_core.ids import agent_id, org_id
from rpm_core.reading import Reading
from tests.e2e import test_edge_to_store as e2e
from tests.e2e.test_edge_to_store import AGENT as OLD
from tests.e2e.test_edge_to_store import Platform
from tests.edge_agent.live import (
    ORG,
    PATIENT,
    add_readings,
    agents_cli,
    create_agent,
    edge_cli,
    enroll,
    identity_of,
    registered,
    rows,
    running_agent,
    scalar,
    settings_of,
    until,
    utc,
)
from tests.ingest.conftest import IngestProcess

# The production-set-up platform and `vigil ingest` of tests/e2e (fixtures).
platform, ingest = e2e.platform, e2e.ingest
NEW = "agt-new-1"
VALUES = [61.0, 62.0, 63.0, 64.0, 65.0]


def readable_old_readings(edge: Path, state: Path) -> list[Reading]:
    """Every reading of the replaced identity that some outbox and some identity on this machine still open."""
    outboxes = [p for p in state.rglob("outbox.db*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))]
    identities = []
    for key in (*edge.rglob("outbox.key"), *state.rglob("outbox.key")):
        try:
            identities.append(AgentIdentity.load(key.parent.parent, org=org_id(ORG), agent=agent_id(OLD)))
        except VigilError:
            continue  # not a whole identity
    found: list[Reading] = []
    for db in outboxes:
        for ident in identities:
            try:
                outbox = SqliteOutbox.open(
                    db, key=ident.outbox_key, agent=agent_id(OLD), kid=ident.keys.public().kex_kid,
                    clock=SystemClock(), max_readings=10**6,
                )  # fmt: skip
            except EdgeError:
                continue
            try:
                found += outbox.fetch(0, 1000)
            finally:
                outbox.close()
    return sorted(found, key=lambda r: r.seq)


def retired_dirs(state: Path) -> list[Path]:
    root = state / "retired"
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


async def enrolled_and_registered(platform: Platform, ingest: IngestProcess, edge: Path, state: Path) -> None:
    await asyncio.to_thread(enroll, platform.bundle, edge, state)
    async with running_agent(edge) as agent:
        await until(lambda: registered(state), 60, "the first identity registered", agent=agent)
    assert (
        await asyncio.to_thread(scalar, platform.db, "SELECT status FROM agents WHERE agent_id = %s", OLD) == "active"
    )


@pytest.mark.slow
@pytest.mark.asyncio
async def test_reenrolled_agent_delivers_the_old_identitys_readings(
    platform: Platform, ingest: IngestProcess, tmp_path: Path
) -> None:
    edge, state = tmp_path / "edge", tmp_path / "edge-state"
    await asyncio.to_thread(ingest.start)
    await enrolled_and_registered(platform, ingest, edge, state)
    stored = await asyncio.to_thread(add_readings, edge, VALUES, start=utc(2026, 3, 1, 8, 0))
    assert [r.seq for r in stored] == [1, 2, 3, 4, 5]  # undelivered: the agent is not running

    new_bundle = await asyncio.to_thread(create_agent, platform, NEW, tmp_path / "new.json")
    output = await asyncio.to_thread(enroll, new_bundle, edge, state, "--force")

    # The old readings are still readable: the old outbox and its key are kept together.
    assert await asyncio.to_thread(readable_old_readings, edge, state) == stored, (
        "no key on this machine opens the replaced outbox: its undelivered readings are lost"
    )
    [retired] = retired_dirs(state)
    assert "retired" in output
    status = json.loads(
        (await asyncio.to_thread(edge_cli, "status", "--config", str(edge / "agent.toml"), "--json")).stdout
    )
    assert status["agent"] == NEW
    assert [(r["agent"], r["depth"]) for r in status["retired"]] == [(OLD, 5)]

    # The re-enrolled agent delivers them under the old identity, then forgets that identity.
    async with running_agent(edge) as agent:
        await until(lambda: len(rows(platform.db, OLD)) == 5, 60, "the old readings stored", agent=agent)
        await until(lambda: not retired.exists(), 30, "the retired identity removed", agent=agent)
        await until(lambda: registered(state), 30, "the new identity registered", agent=agent)
    old_rows = await asyncio.to_thread(rows, platform.db, OLD)
    assert [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in old_rows] == [
        (r.seq, r.device_id, r.metric, r.value, r.measured_at, PATIENT) for r in stored
    ]
    assert await asyncio.to_thread(rows, platform.db, NEW) == []
    assert await asyncio.to_thread(scalar, platform.db, "SELECT count(*) FROM dead_letters") == 0
    assert (await asyncio.to_thread(inspect_outbox, state / "outbox.db")).stats.last_allocated == 0  # its own numbering
    assert retired_dirs(state) == []


@pytest.mark.slow
@pytest.mark.asyncio
async def test_adopt_reseals_readings_the_old_identity_can_no_longer_deliver(
    platform: Platform, ingest: IngestProcess, tmp_path: Path
) -> None:
    edge, state = tmp_path / "edge", tmp_path / "edge-state"
    await asyncio.to_thread(ingest.start)
    await enrolled_and_registered(platform, ingest, edge, state)
    stored = await asyncio.to_thread(add_readings, edge, VALUES, start=utc(2026, 3, 2, 8, 0))
    await asyncio.to_thread(agents_cli, platform, "revoke", OLD)  # the old identity cannot log in any more
    new_bundle = await asyncio.to_thread(create_agent, platform, NEW, tmp_path / "new.json")
    await asyncio.to_thread(enroll, new_bundle, edge, state, "--force")
    [retired] = retired_dirs(state)

    result = await asyncio.to_thread(edge_cli, "outbox", "adopt", str(retired), "--config", str(edge / "agent.toml"))
    assert "adopted 5 reading(s)" in result.stdout
    assert not retired.exists()
    async with running_agent(edge) as agent:
        await until(lambda: len(rows(platform.db, NEW)) == 5, 60, "the adopted readings stored", agent=agent)
    new_rows = await asyncio.to_thread(rows, platform.db, NEW)
    assert [(r[1], r[2], r[3], r[4], r[6]) for r in new_rows] == [
        (r.device_id, r.metric, r.value, r.measured_at, PATIENT) for r in stored
    ]
    for row, old in zip(new_rows, stored, strict=True):
        assert set(row[5]) == {
            "sensor_contact:detected", "reenrolled", f"reenrolled_from:{OLD}", f"reenrolled_seq:{old.seq}",
        }  # fmt: skip
    assert await asyncio.to_thread(rows, platform.db, OLD) == []


def test_reenrolling_under_a_running_agent_is_refused(platform: Platform, tmp_path: Path) -> None:
    edge, state = tmp_path / "edge", tmp_path / "edge-state"
    enroll(platform.bundle, edge, state)
    add_readings(edge, VALUES, start=utc(2026, 3, 3, 8, 0))
    new_bundle = create_agent(platform, NEW, tmp_path / "new.json")
    before = {p: p.read_bytes() for p in edge.rglob("*") if p.is_file()}
    s, ident = settings_of(edge), identity_of(edge)
    held = SqliteOutbox.open(
        s.outbox_path, key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid,
        clock=SystemClock(), max_readings=10**6,
    )  # fmt: skip
    try:
        args = ["enroll", "--bundle", str(new_bundle), "--dir", str(edge), "--state-dir", str(state), "--force"]
        result = edge_cli(*args, "--time-zone", "UTC", code=1)
    finally:
        held.close()
    assert "in use" in result.stderr
    assert {p: p.read_bytes() for p in edge.rglob("*") if p.is_file()} == before
    assert retired_dirs(state) == []
    assert len(readable_old_readings(edge, state)) == 5
