"""The uplink's rules, with a recording publisher at the MQTT seam and a real outbox.

Registration before anything else; batches bounded by count and age; a bounded window of
unreceipted envelopes; only a verified receipt deletes; a reconnect or a missing receipt re-sends.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from edge_agent.errors import BrokerUnreachable
from edge_agent.identity import AgentIdentity
from edge_agent.outbox import AsyncOutbox, SqliteOutbox
from edge_agent.settings import PairedDevice
from edge_agent.state import AgentState
from edge_agent.uplink import Uplink, UplinkOptions
from ingest.opener import EnvelopeOpener
from rpm_core.clock import SystemClock
from rpm_core.downlink import Receipt, sign_receipt
from rpm_core.enrollment import ServerKeyInfo
from rpm_core.envelope import ReadingBatch
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.reading import Reading
from rpm_core.topics import Kind, Topic

ORG, AGENT = org_id("clinic-1"), agent_id("agt-up-1")
SERVER = ServerKey.generate()
OPENER = EnvelopeOpener({SERVER.kid: SERVER})  # the server's side, to read what the uplink sealed
DEVICE = PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate")


@dataclass
class Recorder:
    """The Publisher seam: what the uplink would have put on the broker."""

    sent: list[tuple[Topic, bytes, int]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, *, generation: int) -> None:
        self.sent.append((Topic.parse(topic), payload, generation))

    def kinds(self) -> list[Kind]:
        return [t.kind for t, _, _ in self.sent]

    def batches(self, keys: AgentKeys) -> list[ReadingBatch]:
        return [OPENER.open_batch(p, topic=t, agent=keys.public()) for t, p, _ in self.sent if t.kind is Kind.READINGS]


@dataclass
class Rig:
    uplink: Uplink
    outbox: AsyncOutbox
    recorder: Recorder
    keys: AgentKeys
    task: asyncio.Task[None]

    async def add(self, n: int) -> None:
        for i in range(n):
            reading = Reading(
                agent_id=AGENT, device_id=DEVICE.address, seq=0, metric="heart_rate", value=60 + i % 40,
                measured_at=datetime.now(UTC),
            )  # fmt: skip
            await self.outbox.append([reading])
        self.uplink.readings_added()

    def receipt(self, through: int, key: ServerKey = SERVER) -> None:
        r = Receipt(ORG, AGENT, through, datetime.now(UTC))
        self.uplink.on_message(str(r.topic), sign_receipt(r, key))


async def settle(condition, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling the uplink's effects
            await asyncio.sleep(0.01)


@pytest.fixture
def outbox_file(tmp_path: Path) -> tuple[Path, bytes, AgentKeys]:
    keys, key = AgentKeys.generate(), secrets.token_bytes(32)
    SqliteOutbox.create(tmp_path / "o.db", key=key, agent=AGENT, kid=keys.public().kex_kid, clock=SystemClock())
    return tmp_path / "o.db", key, keys


@pytest_asyncio.fixture
async def rig(outbox_file: tuple[Path, bytes, AgentKeys], request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    path, key, keys = outbox_file
    overrides = getattr(request, "param", {})
    outbox = await AsyncOutbox.open(
        path, key=key, agent=AGENT, kid=keys.public().kex_kid, clock=SystemClock(), max_readings=10_000
    )
    identity = AgentIdentity(
        org=ORG, agent=AGENT, keys=keys, outbox_key=key, mqtt_username=AGENT, mqtt_password="pw",
        enrollment_token="token-1", bundle_expires_at=datetime(2030, 1, 1, tzinfo=UTC), ca_pem="CA",
        server_keys=(ServerKeyInfo.of(SERVER.public()),),
    )  # fmt: skip
    values = {"batch_max_readings": 20, "batch_max_age_s": 0.3, "max_inflight_envelopes": 2, **overrides}
    options = UplinkOptions(
        broker_host="127.0.0.1", broker_port=8883, broker_server_name="localhost", agent_version="test", **values
    )
    state = AgentState([DEVICE], clock=SystemClock(), clock_skew_threshold_s=120)
    uplink = Uplink(identity=identity, options=options, outbox=outbox, state=state, clock=SystemClock())
    recorder = Recorder()
    uplink.publisher = recorder
    task = asyncio.create_task(uplink.run())
    try:
        yield Rig(uplink, outbox, recorder, keys, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


@pytest.mark.asyncio
async def test_registration_comes_first_and_readings_wait_for_acceptance(rig: Rig) -> None:
    await rig.add(3)
    rig.uplink.on_connected(1)
    await settle(lambda: rig.recorder.sent)
    await asyncio.sleep(0.5)  # well past the batch age: still nothing but the registration
    assert rig.recorder.kinds() == [Kind.STATUS]
    topic, payload, generation = rig.recorder.sent[0]
    registration = OPENER.open_registration(payload, topic=topic)
    assert (registration.token, registration.keys, generation) == ("token-1", rig.keys.public(), 1)
    rig.receipt(0)  # the server's first receipt: accepted
    await settle(lambda: Kind.READINGS in rig.recorder.kinds())
    assert rig.recorder.kinds()[:2] == [Kind.STATUS, Kind.STATUS]  # registration, then online status
    topic, payload, _ = rig.recorder.sent[1]
    status = OPENER.open_status(payload, topic=topic, agent=rig.keys.public())
    assert (status.online, status.outbox_depth, status.agent_version) == (True, 3, "test")
    assert [r.seq for b in rig.recorder.batches(rig.keys) for r in b.readings] == [1, 2, 3]
    assert (await rig.outbox.stats()).registered_at is not None


@pytest.mark.asyncio
async def test_window_batches_and_receipts(rig: Rig) -> None:
    rig.uplink.on_connected(1)
    rig.receipt(0)
    await settle(lambda: rig.uplink.registered)
    await rig.add(65)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 2)
    await asyncio.sleep(0.5)
    batches = rig.recorder.batches(rig.keys)
    assert [len(b.readings) for b in batches] == [20, 20]  # two envelopes in flight, no more
    assert (await rig.outbox.stats()).depth == 65  # sent is not delivered
    rig.receipt(20)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 3)
    assert (await rig.outbox.stats()).depth == 45
    rig.receipt(60)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 4)  # the last 5, once old enough
    seqs = [[r.seq for r in b.readings] for b in rig.recorder.batches(rig.keys)]
    assert seqs == [list(range(1, 21)), list(range(21, 41)), list(range(41, 61)), list(range(61, 66))]
    rig.receipt(65)
    await settle(lambda: rig.uplink.receipted_through == 65)
    stats = await rig.outbox.stats()
    assert (stats.depth, stats.last_receipt) == (0, 65)


@pytest.mark.asyncio
async def test_reconnect_sends_the_unreceipted_again_and_forged_receipts_delete_nothing(rig: Rig) -> None:
    rig.uplink.on_connected(1)
    rig.receipt(0)
    await rig.add(30)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 2)
    rig.receipt(30, key=ServerKey.generate())  # signed by a key the agent does not trust
    await settle(lambda: rig.uplink._state.counters["downlink_rejected"] == 1)
    assert (await rig.outbox.stats()).depth == 30
    rig.receipt(10)
    await settle(lambda: rig.uplink.receipted_through == 10)
    rig.uplink.on_disconnected(BrokerUnreachable("test"))
    rig.recorder.sent.clear()
    rig.uplink.on_connected(2)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 1)
    await asyncio.sleep(0.4)
    resent = [r.seq for b in rig.recorder.batches(rig.keys) for r in b.readings]
    assert resent == list(range(11, 31))
    assert {g for _, _, g in rig.recorder.sent} == {2}


@pytest.mark.parametrize("rig", [{"receipt_timeout_s": 0.5}], indirect=True)
@pytest.mark.asyncio
async def test_missing_receipt_means_sending_again(rig: Rig) -> None:
    rig.uplink.on_connected(1)
    rig.receipt(0)
    await rig.add(20)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 2, within=5)
    first, second = ([r.seq for r in b.readings] for b in rig.recorder.batches(rig.keys))
    assert first == second == list(range(1, 21))
    assert rig.uplink.resends >= 1


@pytest.mark.asyncio
async def test_a_change_right_after_a_status_is_reported_after_the_debounce(rig: Rig) -> None:
    rig.uplink.on_connected(1)
    await settle(lambda: rig.recorder.sent)  # the registration
    rig.receipt(0)
    await settle(lambda: rig.recorder.kinds().count(Kind.STATUS) == 2)  # then the online status
    rig.uplink._state.update_device(DEVICE.address, connected=True)  # within the debounce second
    await settle(lambda: rig.recorder.kinds().count(Kind.STATUS) == 3, within=3)
    topic, payload, _ = rig.recorder.sent[-1]
    status = OPENER.open_status(payload, topic=topic, agent=rig.keys.public())
    assert status.devices[0].connected


@pytest.mark.parametrize("rig", [{"batch_max_age_s": 0.0}], indirect=True)
@pytest.mark.asyncio
async def test_overflow_gaps_travel_in_envelopes_and_raise_the_alarm(rig: Rig) -> None:
    await rig.add(5)
    await rig.outbox.acknowledge(0, datetime.now(UTC))
    store = rig.outbox._store
    await rig.outbox._run(lambda: store.evict(3, reason="outbox_overflow"))
    rig.uplink.on_connected(1)
    await settle(lambda: rig.recorder.sent)
    rig.receipt(0)
    await settle(lambda: rig.recorder.batches(rig.keys))
    [batch] = rig.recorder.batches(rig.keys)
    assert [r.seq for r in batch.readings] == [4, 5]
    assert [(g.first, g.last) for g in batch.gaps] == [(1, 3)]
    topic, payload, _ = next(s for s in rig.recorder.sent if s[0].kind is Kind.STATUS and s is not rig.recorder.sent[0])
    status = OPENER.open_status(payload, topic=topic, agent=rig.keys.public())
    assert "outbox_overflow" in status.alarms
    rig.receipt(5)
    await settle(lambda: rig.uplink.receipted_through == 5)
    assert await rig.outbox.gaps() == ()
