"""Hostile and broken input: catalogue 17, 18, 19, 20 and the enrollment checks."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import cbor2
import psycopg
import pytest

from rpm_core.enrollment import seal_registration
from rpm_core.envelope import ReadingBatch, seal_batch
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.topics import Topic
from store.agents import revoke_agent
from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import readings

NOT_AUTHORIZED = 0x87


def dead(db: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT reason, agent_id FROM dead_letters ORDER BY id").fetchall()


def test_agent_on_another_agents_topic_is_refused_by_the_broker(db: str, start_ingest, agents) -> None:
    # Catalogue 17: the ACL refuses the PUBLISH (0x87); nothing reaches ingest, no row, no dead letter.
    start_ingest()
    a, b = agents("agt-a"), agents("agt-b")
    _, data = a.sealed(readings("agt-a", 1, 5))
    assert a.publish_raw(Topic.readings(b.org, b.agent), data) == NOT_AUTHORIZED
    assert a.publish_raw(Topic.status(b.org, b.agent), data) == NOT_AUTHORIZED
    a.send(readings("agt-a", 1, 5))
    a.wait_receipt(5)
    assert scalar(db, "SELECT count(*) FROM readings WHERE agent_id = 'agt-b'") == 0
    assert dead(db) == []


def test_replayed_on_another_topic_is_dead_lettered(db: str, start_ingest, agents) -> None:
    # Catalogue 18: B (compromised) republishes A's captured envelope on its own topic.
    start_ingest()
    a, b = agents("agt-a"), agents("agt-b")
    _, data = a.sealed(readings("agt-a", 1, 5))
    b.publish_raw(Topic.readings(b.org, b.agent), data)
    wait_until(lambda: dead(db), 10, "dead letter")
    assert dead(db)[0] in (("unknown_key", "agt-b"), ("decryption_failed", "agt-b"))
    assert scalar(db, "SELECT count(*) FROM readings") == 0


def test_every_single_byte_flip_is_dead_lettered(db: str, start_ingest, agents) -> None:
    # Catalogue 19: authentication fails for every flipped byte, nothing crashes, the stream goes on.
    # Every flip is stored as a dead letter here: the agent's dead-letter rate is not what is tested.
    svc = start_ingest(batch_max_messages=200, dead_letter_burst=10_000)
    a = agents("agt-a")
    topic, data = a.sealed(readings("agt-a", 1, 20))
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        a.publish_raw(topic, bytes(flipped), wait=False)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == len(data), 120, "all flips dead-lettered")
    assert scalar(db, "SELECT count(*) FROM readings") == 0
    reasons = {r for r, _ in dead(db)}
    assert reasons <= {"malformed", "decryption_failed", "unknown_key", "unsupported_algorithm", "unsupported_version"}
    a.publish_raw(topic, data)  # the original still goes through
    a.wait_receipt(20)
    assert svc.failure is None


def test_unknown_algorithm_rotated_out_server_key_and_revoked_agent(
    db: str, start_ingest, agents, server_key: ServerKey
) -> None:
    # Catalogue 20.
    start_ingest()
    a = agents("agt-a")
    topic, data = a.sealed(readings("agt-a", 1, 5))
    msg = cbor2.loads(data)
    msg.value[0] = cbor2.dumps({1: 3, -65537: 1})  # A256GCM instead of ChaCha20/Poly1305
    a.publish_raw(topic, cbor2.dumps(msg))
    retired = ServerKey.generate()  # an envelope sealed to a key the server no longer holds
    batch = ReadingBatch(a.org, a.agent, datetime.now(UTC), tuple(readings("agt-a", 6, 5)))
    a.publish_raw(topic, seal_batch(batch, agent=a.keys, server=retired.public())[1])
    stranger = ReadingBatch(a.org, a.agent, datetime.now(UTC), tuple(readings("agt-a", 11, 5)))
    a.publish_raw(topic, seal_batch(stranger, agent=AgentKeys.generate(), server=server_key.public())[1])
    wait_until(lambda: len(dead(db)) == 3, 10, "three dead letters")
    assert [r for r, _ in dead(db)] == ["unsupported_algorithm", "unknown_key", "unknown_key"]
    with psycopg.connect(db) as conn:
        revoke_agent(conn, "agt-a", now=datetime.now(UTC))  # broker not reloaded yet: ingest must refuse
    a.send(readings("agt-a", 16, 5))
    wait_until(lambda: len(dead(db)) == 4, 10, "revoked dead letter")
    assert dead(db)[-1] == ("revoked", "agt-a")
    assert scalar(db, "SELECT count(*) FROM readings") == 0


def test_registration_needs_the_right_unexpired_token(db: str, start_ingest, agents) -> None:
    start_ingest()
    a = agents("agt-a", register=False)
    a.token = "not-the-token"
    a.register()
    wait_until(lambda: dead(db), 10, "dead letter")
    assert dead(db) == [("bad_token", "agt-a")]
    b = agents("agt-b", register=False)
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE agents SET enrollment_expires_at = now() - interval '1 s' WHERE agent_id = 'agt-b'")
    b.register()
    wait_until(lambda: len(dead(db)) == 2, 10, "dead letter")
    assert dead(db)[-1] == ("enrollment_expired", "agt-b")
    # Readings of a pending agent are refused: it has no registered keys.
    b.send(readings("agt-b", 1, 3))
    wait_until(lambda: len(dead(db)) == 3, 10, "dead letter")
    assert dead(db)[-1] == ("unknown_key", "agt-b")
    assert scalar(db, "SELECT count(*) FROM agents WHERE status = 'pending'") == 2


def _publish_forged(a, first_seq: int, count: int, changes: dict[int, object]) -> None:
    """Publish readings whose first row has ``changes`` (field index -> value) inside a correctly
    signed and sealed body: what no valid ``Reading`` can carry, but a buggy or hostile agent can."""
    from rpm_core import envelope

    topic = Topic.readings(a.org, a.agent)
    batch = ReadingBatch(a.org, a.agent, datetime.now(UTC), tuple(readings(a.agent, first_seq, count)))
    encoded = cbor2.loads(envelope.encode_batch(batch))
    for index, value in changes.items():
        encoded["r"][0][index] = value
    sealed = envelope.seal_envelope(cbor2.dumps(encoded), topic=topic, agent=a.keys, server=a.server.public())
    a.publish_raw(topic, sealed)


def test_signed_but_implausible_readings_are_dead_lettered_and_resolved(db: str, start_ingest, agents) -> None:
    # The agent signed it, so it will never become valid: its sequence numbers count for the receipt.
    start_ingest()
    a = agents("agt-a")
    a.send(readings("agt-a", 1, 5))
    _publish_forged(a, 6, 5, {2: "spo2", 3: 120.0})  # SpO2 120 %
    a.send(readings("agt-a", 11, 5))
    a.wait_receipt(15)
    assert dead(db) == [("malformed", "agt-a")]
    assert scalar(db, "SELECT count(*) FROM readings") == 10


@pytest.mark.parametrize(
    ("index", "forged"),
    [(3, 10**400), (4, 2**62 - 1)],  # a value beyond any float; a measured time past year 9999
    ids=["huge-integer-value", "time-past-9999"],
)
def test_signed_rows_with_out_of_range_numbers_are_dead_letters(
    db: str, start_ingest, agents, index: int, forged: int
) -> None:
    # Out-of-range numbers used to raise OverflowError inside the worker; now they are malformed.
    svc = start_ingest()
    a = agents("agt-a")
    _publish_forged(a, 1, 3, {index: forged})
    a.send(readings("agt-a", 4, 3))
    a.wait_receipt(6)
    assert dead(db) == [("malformed", "agt-a")]
    assert scalar(db, "SELECT count(*) FROM readings") == 3
    assert svc.failure is None


def test_hostile_agents_cannot_fill_the_workers_key_caches(db: str, start_ingest, agents) -> None:
    # The worker's opener remembers the shared secrets and signing keys of registered agents only.
    # A pending agent sending registrations with ever new keys (and a wrong token), and an active
    # one sending readings sealed with keys that are not its own, get every message refused and
    # counted, and leave nothing in those caches; the active agent's own readings are still stored.
    svc = start_ingest(dead_letter_burst=10_000)
    a, p = agents("agt-a"), agents("agt-p", register=False)
    a.send(readings("agt-a", 1, 3))
    a.wait_receipt(3)
    opener = svc._opener
    assert (len(opener._secrets), len(opener._agent_keys)) == (1, 1)  # agt-a's own
    wrong = dataclasses.replace(p.bundle(), enrollment_token="not-the-token")
    for i in range(20):
        stranger = AgentKeys.generate()
        p.publish_raw(*seal_registration(wrong, stranger, agent_version="x"), wait=False)
        batch = ReadingBatch(a.org, a.agent, datetime.now(UTC), tuple(readings("agt-a", 100 + i, 1)))
        a.publish_raw(*seal_batch(batch, agent=stranger, server=a.server.public()), wait=False)
    wait_until(lambda: len(dead(db)) == 40, 30, "every hostile message dead-lettered")
    a.send(readings("agt-a", 4, 3))
    a.wait_receipt(6)
    assert sorted(set(dead(db))) == [("bad_token", "agt-p"), ("unknown_key", "agt-a")]
    metric = svc.metrics.registry.get_sample_value
    assert metric("vigil_ingest_dead_letters_total", {"reason": "bad_token"}) == 20
    assert metric("vigil_ingest_dead_letters_total", {"reason": "unknown_key"}) == 20
    assert (len(opener._secrets), len(opener._agent_keys)) == (1, 1)
    assert scalar(db, "SELECT count(*) FROM readings") == 6
