"""Retired identities: what ``enroll --force`` keeps, an interrupted retirement, adoption exactly once.

Delivery as the old identity through the real broker and ingest is in
tests/security/test_reenroll_keeps_outbox.py; here the pieces around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.enroll import enroll
from edge_agent.errors import OutboxInUse
from edge_agent.identity import AgentIdentity
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from edge_agent.outbox.store import Cursor
from edge_agent.retired import (
    ADOPTED_CURSOR,
    RetiredIdentity,
    _exclusive,
    adopt_retired,
    list_retired,
    provenance_flags,
    retire_identity,
)
from edge_agent.settings import load_edge_settings
from rpm_core.clock import ManualClock
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import ServerKey
from rpm_core.reading import Reading

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SERVER = ServerKey.generate()


def bundle_file(path: Path, agent: str) -> Path:
    bundle = EnrollmentBundle(
        org=org_id("clinic-1"),
        agent_id=agent_id(agent),
        broker=BrokerEndpoint(host="10.0.0.5", port=8883, server_name="mqtt.example", ca_pem="CA PEM"),
        mqtt_username=agent,
        mqtt_password="pw",  # type: ignore[arg-type]
        enrollment_token=new_token(),  # type: ignore[arg-type]
        server_keys=(ServerKeyInfo.of(SERVER.public()),),
        expires_at=NOW + timedelta(days=7),
    )
    path.write_text(bundle.to_json())
    return path


class Pi:
    """An enrolled agent's directories, enrolled with the real ``enroll``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.edge, self.state, self.clock = tmp, tmp / "etc", tmp / "state", ManualClock(NOW)

    def enroll(self, agent: str, *, force: bool = False) -> Path | None:
        result = enroll(
            bundle_file(self.tmp / f"{agent}.json", agent), directory=self.edge, state_dir=self.state,
            clock=self.clock, time_zone="UTC", owner=None, force=force,
        )  # fmt: skip
        self.clock.advance(1.0)
        return result.retired

    def identity(self) -> AgentIdentity:
        s = load_edge_settings(self.edge / "agent.toml")
        return AgentIdentity.load(self.edge, org=s.org_id, agent=s.agent)

    def outbox(self) -> SqliteOutbox:
        ident = self.identity()
        return SqliteOutbox.open(
            self.state / "outbox.db", key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid,
            clock=self.clock, max_readings=10_000,
        )  # fmt: skip

    def measure(self, n: int, *, flags: frozenset[str] = frozenset()) -> list[Reading]:
        box, ident = self.outbox(), self.identity()
        try:
            readings = [
                Reading(agent_id=ident.agent, device_id="E0:00:00:00:00:07", seq=0, metric="spo2", value=90 + i,
                        measured_at=NOW - timedelta(hours=n - i), flags=flags)
                for i in range(n)
            ]  # fmt: skip
            seqs = box.append(readings)
            return [dataclasses.replace(r, seq=s) for r, s in zip(readings, seqs, strict=True)]
        finally:
            box.close()


def test_retirement_keeps_the_outbox_key_and_identity_together(tmp_path: Path) -> None:
    pi = Pi(tmp_path)
    pi.enroll("agt-old-1")
    measured = pi.measure(3)
    retired = pi.enroll("agt-new-1", force=True)
    assert retired is not None
    assert list_retired(pi.state) == [retired]
    record = RetiredIdentity.load(retired)
    assert (record.agent, record.org, record.broker_host, record.replaced_by) == (
        "agt-old-1", "clinic-1", "10.0.0.5", "agt-new-1")  # fmt: skip
    old = AgentIdentity.load(retired, org=record.org, agent=record.agent)
    box = SqliteOutbox.open(
        retired / "outbox.db", key=old.outbox_key, agent=old.agent, kid=old.keys.public().kex_kid,
        clock=pi.clock, max_readings=10_000,
    )  # fmt: skip
    try:
        assert box.fetch(0, 10) == measured
        assert box.enrollment_token() is not None  # never registered: it can still register itself
    finally:
        box.close()
    assert {p.stat().st_mode & 0o777 for p in retired.rglob("*") if p.is_file()} == {0o600}
    assert retired.stat().st_mode & 0o777 == 0o700
    assert inspect_outbox(pi.state / "outbox.db").stats.last_allocated == 0  # the new identity starts at 1


def test_an_interrupted_retirement_is_completed_or_undone(tmp_path: Path) -> None:
    pi = Pi(tmp_path)
    pi.enroll("agt-old-1")
    root = pi.state / "retired"
    moved = root / ".20260301T070000Z-agt-gone.partial"  # the outbox had moved in: complete it
    moved.mkdir(parents=True)
    (moved / "outbox.db").write_bytes(b"an old outbox")
    copied = root / ".20260301T070500Z-agt-half.partial"  # only copies made: drop them
    copied.mkdir()
    (copied / "credentials.json").write_text("{}")
    retire_identity(pi.edge, pi.state, config={}, replaced_by=agent_id("agt-x"), org=org_id("clinic-1"), clock=pi.clock)
    names = sorted(p.name for p in root.iterdir())
    assert "20260301T070000Z-agt-gone" in names
    assert not [n for n in names if n.startswith(".")]


def test_adoption_is_exactly_once_even_after_an_interruption(tmp_path: Path) -> None:
    pi = Pi(tmp_path)
    pi.enroll("agt-old-1")
    measured = pi.measure(5, flags=frozenset({"clock_skew"}))
    retired = pi.enroll("agt-new-1", force=True)
    assert retired is not None
    current = pi.outbox()
    try:
        # An adoption cut short after its first batch committed in the current outbox, before the
        # retired outbox let go of those rows: exactly the state a crash at that point leaves.
        first = [dataclasses.replace(r, agent_id="agt-new-1") for r in measured[:2]]
        current.append(first, cursor=Cursor("agt-old-1", ADOPTED_CURSOR, 2))
        result = adopt_retired(retired, current=current, identity=pi.identity(), clock=pi.clock, batch=2)
        assert (result.agent, result.adopted) == ("agt-old-1", 3)
        back = current.fetch(0, 100)
    finally:
        current.close()
    assert not retired.exists()
    assert [(r.measured_at, r.value) for r in back] == [(r.measured_at, r.value) for r in measured]  # once each
    for r, old in zip(back[2:], measured[2:], strict=True):
        assert r.agent_id == "agt-new-1"
        assert r.flags == {"clock_skew", "reenrolled", "reenrolled_from:agt-old-1", f"reenrolled_seq:{old.seq}"}


def test_adoption_is_refused_while_the_agent_delivers_the_same_directory(tmp_path: Path) -> None:
    pi = Pi(tmp_path)
    pi.enroll("agt-old-1")
    pi.measure(1)
    retired = pi.enroll("agt-new-1", force=True)
    assert retired is not None
    current = pi.outbox()
    try:
        with _exclusive(retired), pytest.raises(OutboxInUse):
            adopt_retired(retired, current=current, identity=pi.identity(), clock=pi.clock)
    finally:
        current.close()
    assert retired.exists()


def test_provenance_flags_fit_the_flag_limit() -> None:
    assert provenance_flags("agt-3f9c2b7d1e6a", 7) == (
        "reenrolled",
        "reenrolled_from:agt-3f9c2b7d1e6a",
        "reenrolled_seq:7",
    )
    long_id = "a" * 40  # a hand-chosen id too long for the 48-character flag: the sequence still says which
    assert provenance_flags(long_id, 7) == ("reenrolled", "reenrolled_seq:7")


@pytest.mark.asyncio
async def test_a_damaged_retired_identity_is_logged_and_the_agent_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pi = Pi(tmp_path)
    await asyncio.to_thread(pi.enroll, "agt-old-1")
    await asyncio.to_thread(pi.measure, 2)
    retired = await asyncio.to_thread(pi.enroll, "agt-new-1", force=True)
    assert retired is not None
    await asyncio.to_thread((retired / "keys" / "sign.pem").unlink)  # the old signing key lost
    settings = await asyncio.to_thread(load_edge_settings, pi.edge / "agent.toml")
    agent = Agent(settings, await asyncio.to_thread(pi.identity), clock=pi.clock, version="test")
    with caplog.at_level(logging.WARNING, logger="edge_agent.agent"):
        await agent._deliver_one(retired)  # returns instead of raising
    assert any("not delivered" in r.getMessage() and "adopt" in r.getMessage() for r in caplog.records)
    assert await asyncio.to_thread(list_retired, pi.state) == [retired]  # kept for `vigil edge outbox adopt`
    record = json.loads(await asyncio.to_thread((retired / "retired.json").read_text))
    assert record["agent"] == "agt-old-1"
