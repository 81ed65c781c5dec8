from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpm_core.envelope import (
    MAX_ENVELOPE_BYTES,
    ReadingBatch,
    encode_batch,
    open_batch,
    open_envelope,
    seal_batch,
    seal_envelope,
)
from rpm_core.errors import (
    BindingMismatch,
    DecryptionFailed,
    EnvelopeError,
    MalformedEnvelope,
    UnknownKey,
    UnsupportedVersion,
)
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.metrics import CATALOGUE
from rpm_core.reading import Reading, SeqRange
from rpm_core.topics import Topic
from tests.rpm_core.envelope_fixtures import AGENT, ORG, T, batch

AGENT_KEYS = AgentKeys.generate()
SERVER = ServerKey.generate()
KEYRING = {SERVER.kid: SERVER}


def sealed(b: ReadingBatch | None = None) -> tuple[Topic, bytes]:
    return seal_batch(b or batch(), agent=AGENT_KEYS, server=SERVER.public())


@st.composite
def readings_batches(draw: st.DrawFn) -> ReadingBatch:
    names = sorted(CATALOGUE)
    n = draw(st.integers(0, 25))
    first = draw(st.integers(0, 2**62))
    readings = []
    for i in range(n):
        m = CATALOGUE[draw(st.sampled_from(names))]
        readings.append(
            Reading(
                agent_id=AGENT,
                device_id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9:_.-]{0,20}", fullmatch=True)),
                seq=first + i,
                metric=m.name,
                value=draw(st.floats(m.low, m.high, allow_nan=False, allow_infinity=False)),
                measured_at=draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))),
                device_time=draw(st.none() | st.just("2026-03-01T09:29:58")),
                flags=frozenset(draw(st.lists(st.from_regex(r"[a-z0-9_:.-]{1,20}", fullmatch=True), max_size=4))),
            )
        )
    gaps = tuple(
        SeqRange(first=a, last=a + d)
        for a, d in draw(st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 99)), max_size=3))
    )
    sent = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
    return ReadingBatch(ORG, AGENT, sent, tuple(readings), gaps)


@given(readings_batches())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(b: ReadingBatch) -> None:
    topic, data = seal_batch(b, agent=AGENT_KEYS, server=SERVER.public())
    assert topic == Topic.readings(ORG, AGENT)
    assert open_batch(data, topic=topic, server_keys=KEYRING, agent=AGENT_KEYS.public()) == b


def test_broker_sees_no_plaintext() -> None:
    _, data = sealed()
    for secret in (b"heart_rate", b"F0:12:34:56:78:9A", b"contact", AGENT.encode()):
        assert secret not in data


def test_every_message_uses_fresh_randomness() -> None:
    (_, a), (_, b) = sealed(), sealed()
    assert a != b


def test_flipping_any_single_byte_is_rejected_with_a_typed_error() -> None:
    topic, data = sealed(batch(2))
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[i] ^= bit
            with pytest.raises(EnvelopeError):
                open_batch(bytes(tampered), topic=topic, server_keys=KEYRING, agent=AGENT_KEYS.public())


def test_another_agents_keys_are_rejected() -> None:
    topic, data = sealed()
    other = AgentKeys.generate()
    with pytest.raises(UnknownKey):
        open_batch(data, topic=topic, server_keys=KEYRING, agent=other.public())


def test_signature_by_another_agent_with_the_right_kex_key_is_rejected() -> None:
    # The attacker knows the victim's X25519 key but not its Ed25519 key.
    mixed = AgentKeys(AgentKeys.generate().sign, AGENT_KEYS.kex)
    topic, data = seal_batch(batch(), agent=mixed, server=SERVER.public())
    with pytest.raises(UnknownKey):
        open_batch(data, topic=topic, server_keys=KEYRING, agent=AGENT_KEYS.public())


def test_another_topic_as_associated_data_fails_to_decrypt() -> None:
    _, data = sealed()
    for other in (
        Topic.readings(ORG, agent_id("agt-0002")),
        Topic.status(ORG, AGENT),
        Topic.readings(org_id("x"), AGENT),
    ):
        with pytest.raises(DecryptionFailed):
            open_batch(data, topic=other, server_keys=KEYRING, agent=AGENT_KEYS.public())


def test_body_claiming_another_agent_is_a_binding_mismatch() -> None:
    # Properly sealed for topic A, but the body says agent B.
    other = batch(agent="agt-0002")
    topic = Topic.readings(ORG, AGENT)
    data = seal_envelope(encode_batch(other), topic=topic, agent=AGENT_KEYS, server=SERVER.public())
    with pytest.raises(BindingMismatch) as err:
        open_batch(data, topic=topic, server_keys=KEYRING, agent=AGENT_KEYS.public())
    assert err.value.field == "agent"


def test_rotated_server_keys_both_open_until_the_old_one_is_dropped() -> None:
    new = ServerKey.generate()
    old_topic, old_data = sealed()
    _, new_data = seal_batch(batch(), agent=AGENT_KEYS, server=new.public())
    ring = {SERVER.kid: SERVER, new.kid: new}
    assert open_batch(old_data, topic=old_topic, server_keys=ring, agent=AGENT_KEYS.public()).readings
    assert open_batch(new_data, topic=old_topic, server_keys=ring, agent=AGENT_KEYS.public()).readings
    with pytest.raises(UnknownKey) as err:
        open_batch(old_data, topic=old_topic, server_keys={new.kid: new}, agent=AGENT_KEYS.public())
    assert err.value.kid == SERVER.kid


def test_implausible_reading_inside_a_valid_envelope_is_rejected() -> None:
    body = cbor2.loads(encode_batch(batch(1)))
    body["r"][0][3] = 400.0  # heart rate 400/min
    topic = Topic.readings(ORG, AGENT)
    data = seal_envelope(cbor2.dumps(body), topic=topic, agent=AGENT_KEYS, server=SERVER.public())
    with pytest.raises(MalformedEnvelope) as err:
        open_batch(data, topic=topic, server_keys=KEYRING, agent=AGENT_KEYS.public())
    assert "400" not in str(err.value)


def test_future_body_version_is_rejected() -> None:
    body = cbor2.loads(encode_batch(batch(1)))
    body["v"] = 2
    topic = Topic.readings(ORG, AGENT)
    data = seal_envelope(cbor2.dumps(body), topic=topic, agent=AGENT_KEYS, server=SERVER.public())
    with pytest.raises(UnsupportedVersion):
        open_batch(data, topic=topic, server_keys=KEYRING, agent=AGENT_KEYS.public())


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00",
        b"\xff" * 10,
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps(cbor2.CBORTag(96, [b"", {}, b"", []])),
        b"\x81" * 100_000 + b"\x00",  # deeply nested arrays
        b"\x00" * (MAX_ENVELOPE_BYTES + 1),
    ],
)
def test_garbage_is_malformed_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(garbage, topic=Topic.readings(ORG, AGENT), server_keys=KEYRING, agent=AGENT_KEYS.public())


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_random_bytes_only_ever_raise_envelope_errors(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(data, topic=Topic.readings(ORG, AGENT), server_keys=KEYRING, agent=AGENT_KEYS.public())


def test_batch_rejects_readings_of_another_agent() -> None:
    r = batch(1, agent="agt-0002").readings
    with pytest.raises(ValueError):
        ReadingBatch(ORG, AGENT, T + timedelta(seconds=1), r)
