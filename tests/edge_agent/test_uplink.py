"""The uplink's rules, with a recording publisher at the MQTT seam and a real outbox.

Registration before anything else; batches bounded by count and age; a bounded window of
unreceipted envelopes; only a verified receipt deletes; a reconnect or a missing receipt re-sends.

Time is a :class:`ManualClock` shared by the uplink and its outbox: :meth:`Rig.advance` moves it and
wakes the uplink as its timer would. :meth:`Rig.barrier` returns only after the uplink finished a
whole pass of its loop that began after the call, so "nothing more was sent" is asserted after the
uplink had its chance, never after a sleep.
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
from edge_agent.uplink import _STATUS_DEBOUNCE_S, Uplink, UplinkOptions
from ingest.opener import EnvelopeOpener
from rpm_core.clock import ManualClock
from rpm_core.downlink import Receipt, sign_receipt
from rpm_core.enrollment import ServerKeyInfo
from rpm_core.envelope import ReadingBatch
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.reading import Reading
from rpm_core.topics import Kind, Topic

ORG, AGENT = org_id("clinic-1"), agent_id("agt-up-1")
SERVER = ServerKey.generate()
STRANGER = ServerKey.generate()  # a key the agent does not trust
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
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
    clock: ManualClock
    task: asyncio.Task[None]

    def advance(self, seconds: float) -> None:
        """Move time on and wake the uplink, as its timer would have at the deadline."""
        self.clock.advance(seconds)
        self.uplink.readings_added()

    async def barrier(self) -> None:
        """Until the uplink has finished a pass of its loop (inbox, then step) begun after this call.

        Two downlinks signed by a key the agent does not trust, one after the other: each only
        bumps ``downlink_rejected``. The second is queued once the first was counted, by which time
        the pass that took the first has left its inbox; so the second is read by a later pass,
        after that pass's step (sends, resends, statuses) is done.
        """
        rejected = self.uplink._state.counters["downlink_rejected"]
        for n in (1, 2):
            self.receipt(10**6, key=STRANGER)
            await settle(lambda n=n: self.uplink._state.counters["downlink_rejected"] == rejected + n)

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
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def outbox_file(tmp_path: Path, clock: ManualClock) -> tuple[Path, bytes, AgentKeys]:
    keys, key = AgentKeys.generate(), secrets.token_bytes(32)
    SqliteOutbox.create(tmp_path / "o.db", key=key, agent=AGENT, kid=keys.public().kex_kid, clock=clock)
    return tmp_path / "o.db", key, keys


@pytest_asyncio.fixture
async def rig(
    outbox_file: tuple[Path, bytes, AgentKeys], clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    path, key, keys = outbox_file
    overrides = getattr(request, "param", {})
    outbox = await AsyncOutbox.open(
        path, key=key, agent=AGENT, kid=keys.public().kex_kid, clock=clock, max_readings=10_000
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
    state = AgentState([DEVICE], clock=clock, clock_skew_threshold_s=120)
    uplink = Uplink(identity=identity, options=options, outbox=outbox, state=state, clock=clock)
    recorder = Recorder()
    uplink.publisher = recorder
    task = asyncio.create_task(uplink.run())
    try:
        yield Rig(uplink, outbox, recorder, keys, clock, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


@pytest.mark.asyncio
async def test_registration_comes_first_and_readings_wait_for_acceptance(rig: Rig) -> None:
    await rig.add(3)
    rig.uplink.on_connected(1)
    await settle(lambda: rig.recorder.sent)
    rig.advance(0.5)  # well past the batch age (not yet the registration retry)
    await rig.barrier()
    assert rig.recorder.kinds() == [Kind.STATUS]  # still nothing but the registration
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
    rig.advance(0.5)  # past the batch age: only the window holds the rest back
    await rig.barrier()
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
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 1)  # 20 at once
    rig.advance(0.5)  # the other 10 once the batch age has passed
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 2)
    rig.receipt(30, key=STRANGER)  # signed by a key the agent does not trust
    await settle(lambda: rig.uplink._state.counters["downlink_rejected"] == 1)
    assert (await rig.outbox.stats()).depth == 30
    rig.receipt(10)
    await settle(lambda: rig.uplink.receipted_through == 10)
    rig.uplink.on_disconnected(BrokerUnreachable("test"))
    rig.recorder.sent.clear()
    rig.uplink.on_connected(2)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 1)
    rig.advance(0.5)
    await rig.barrier()
    resent = [r.seq for b in rig.recorder.batches(rig.keys) for r in b.readings]
    assert resent == list(range(11, 31))
    assert {g for _, _, g in rig.recorder.sent} == {2}


@pytest.mark.parametrize("rig", [{"receipt_timeout_s": 0.5}], indirect=True)
@pytest.mark.asyncio
async def test_missing_receipt_means_sending_again(rig: Rig) -> None:
    rig.uplink.on_connected(1)
    rig.receipt(0)
    await rig.add(20)
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 1)
    rig.advance(0.5)  # the receipt timeout
    await settle(lambda: len(rig.recorder.batches(rig.keys)) == 2)
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
    await rig.barrier()
    assert rig.recorder.kinds().count(Kind.STATUS) == 2  # held back by the debounce
    rig.advance(_STATUS_DEBOUNCE_S)
    await settle(lambda: rig.recorder.kinds().count(Kind.STATUS) == 3)
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
