"""``ingest.opener``: the one way the server opens what agents send (round trip, tampering, keys,
topics, rotation, bodies, garbage), with its caches warm as a worker's are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.opener import EnvelopeOpener
from rpm_core.enrollment import (
    BrokerEndpoint,
    EnrollmentBundle,
    ServerKeyInfo,
    new_token,
    seal_registration,
    token_digest,
)
from rpm_core.envelope import MAX_ENVELOPE_BYTES, ReadingBatch, encode_batch, seal_batch, seal_envelope
from rpm_core.errors import (
    BindingMismatch,
    DecryptionFailed,
    EnvelopeError,
    MalformedEnvelope,
    SignatureInvalid,
    UnknownKey,
    UnsupportedVersion,
)
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.metrics import CATALOGUE
from rpm_core.reading import Reading, SeqRange
from rpm_core.status import AgentStatus, DeviceStatus, seal_status
from rpm_core.topics import Topic
from tests.rpm_core.envelope_fixtures import AGENT, ORG, T, batch

AGENT_KEYS = AgentKeys.generate()
SERVER = ServerKey.generate()
KEYRING = {SERVER.kid: SERVER}
# One opener for the module, as a worker has one: every test after the first runs with its caches
# (shared secrets, agent keys, AADs, identifier memos) already holding this agent.
OPENER = EnvelopeOpener(KEYRING)


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
    assert OPENER.open_batch(data, topic=topic, agent=AGENT_KEYS.public()) == b


def test_flipping_any_single_byte_is_rejected_with_a_typed_error() -> None:
    topic, data = sealed(batch(2))
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[i] ^= bit
            with pytest.raises(EnvelopeError):
                OPENER.open_batch(bytes(tampered), topic=topic, agent=AGENT_KEYS.public())


def test_another_agents_keys_are_rejected() -> None:
    topic, data = sealed()
    other = AgentKeys.generate()
    with pytest.raises(UnknownKey):
        OPENER.open_batch(data, topic=topic, agent=other.public())


def test_signature_by_another_agent_with_the_right_kex_key_is_rejected() -> None:
    # The attacker knows the victim's X25519 key but not its Ed25519 key.
    mixed = AgentKeys(AgentKeys.generate().sign, AGENT_KEYS.kex)
    topic, data = seal_batch(batch(), agent=mixed, server=SERVER.public())
    with pytest.raises(UnknownKey):
        OPENER.open_batch(data, topic=topic, agent=AGENT_KEYS.public())


def test_another_topic_as_associated_data_fails_to_decrypt() -> None:
    _, data = sealed()
    for other in (
        Topic.readings(ORG, agent_id("agt-0002")),
        Topic.status(ORG, AGENT),
        Topic.readings(org_id("x"), AGENT),
    ):
        with pytest.raises(DecryptionFailed):
            OPENER.open_batch(data, topic=other, agent=AGENT_KEYS.public())


def test_body_claiming_another_agent_is_a_binding_mismatch() -> None:
    # Properly sealed for topic A, but the body says agent B.
    other = batch(agent="agt-0002")
    topic = Topic.readings(ORG, AGENT)
    data = seal_envelope(encode_batch(other), topic=topic, agent=AGENT_KEYS, server=SERVER.public())
    with pytest.raises(BindingMismatch) as err:
        OPENER.open_batch(data, topic=topic, agent=AGENT_KEYS.public())
    assert err.value.field == "agent"


def test_rotated_server_keys_both_open_until_the_old_one_is_dropped() -> None:
    new = ServerKey.generate()
    old_topic, old_data = sealed()
    _, new_data = seal_batch(batch(), agent=AGENT_KEYS, server=new.public())
    ring = EnvelopeOpener({SERVER.kid: SERVER, new.kid: new})
    assert ring.open_batch(old_data, topic=old_topic, agent=AGENT_KEYS.public()).readings
    assert ring.open_batch(new_data, topic=old_topic, agent=AGENT_KEYS.public()).readings
    with pytest.raises(UnknownKey) as err:
        EnvelopeOpener({new.kid: new}).open_batch(old_data, topic=old_topic, agent=AGENT_KEYS.public())
    assert err.value.kid == SERVER.kid


def test_implausible_reading_inside_a_valid_envelope_is_rejected() -> None:
    body = cbor2.loads(encode_batch(batch(1)))
    body["r"][0][3] = 400.0  # heart rate 400/min
    topic = Topic.readings(ORG, AGENT)
    data = seal_envelope(cbor2.dumps(body), topic=topic, agent=AGENT_KEYS, server=SERVER.public())
    with pytest.raises(MalformedEnvelope) as err:
        OPENER.open_batch(data, topic=topic, agent=AGENT_KEYS.public())
    assert "400" not in str(err.value)


def test_future_body_version_is_rejected() -> None:
    body = cbor2.loads(encode_batch(batch(1)))
    body["v"] = 2
    topic = Topic.readings(ORG, AGENT)
    data = seal_envelope(cbor2.dumps(body), topic=topic, agent=AGENT_KEYS, server=SERVER.public())
    with pytest.raises(UnsupportedVersion):
        OPENER.open_batch(data, topic=topic, agent=AGENT_KEYS.public())


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
        OPENER.open(garbage, topic=Topic.readings(ORG, AGENT), agent=AGENT_KEYS.public())


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_random_bytes_only_ever_raise_envelope_errors(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        OPENER.open(data, topic=Topic.readings(ORG, AGENT), agent=AGENT_KEYS.public())


# -- status and registration (the other two things an agent seals) ----------------------------------


def test_status_round_trip() -> None:
    st = AgentStatus(
        org=ORG,
        agent=AGENT,
        online=True,
        sent_at=T,
        agent_version="0.1.0",
        outbox_depth=3,
        devices=(DeviceStatus(device_id="F0:12", profile="blood_pressure", battery_pct=7, last_seen=T),),
        alarms=frozenset({"clock_skew"}),
    )
    topic, data = seal_status(st, agent=AGENT_KEYS, server=SERVER.public())
    assert topic == Topic.status(ORG, AGENT)
    assert OPENER.open_status(data, topic=topic, agent=AGENT_KEYS.public()) == st


def bundle(token: str, server: ServerKey = SERVER) -> EnrollmentBundle:
    return EnrollmentBundle(
        org=ORG,
        agent_id=AGENT,
        broker=BrokerEndpoint(host="127.0.0.1", port=8883, server_name="broker.vigil", ca_pem="-----BEGIN..."),
        mqtt_username=AGENT,
        mqtt_password="pw-secret",
        enrollment_token=token,
        server_keys=(ServerKeyInfo.of(server.public()),),
        expires_at=T + timedelta(days=7),
    )


def test_registration_proves_key_possession_and_carries_the_token() -> None:
    token = new_token()
    topic, data = seal_registration(bundle(token), AGENT_KEYS, agent_version="0.1.0")
    reg = OPENER.open_registration(data, topic=topic)
    assert reg.keys == AGENT_KEYS.public()
    assert reg.token_matches(token_digest(token))
    assert not reg.token_matches(token_digest(new_token()))
    assert token.encode() not in data  # the broker never sees the token
    with pytest.raises(EnvelopeError):
        OPENER.open_registration(data, topic=Topic.status(ORG, agent_id("agt-0002")))


# -- the keyring's own state: per instance, bounded, only registered agents ---------------------------


def _sizes(opener: EnvelopeOpener) -> tuple[int, int, int]:
    return len(opener._secrets), len(opener._agent_keys), len(opener._aads)


def test_each_opener_keeps_its_own_caches() -> None:
    server = ServerKey.generate()
    first, second = EnvelopeOpener({server.kid: server}), EnvelopeOpener({server.kid: server})
    topic, data = seal_batch(batch(1), agent=AGENT_KEYS, server=server.public())
    assert first.open_batch(data, topic=topic, agent=AGENT_KEYS.public()).readings
    assert _sizes(first) == (1, 1, 1)
    assert _sizes(second) == (0, 0, 0)  # nothing process-wide: the second learnt nothing
    assert second.open_batch(data, topic=topic, agent=AGENT_KEYS.public()).readings


def test_caches_never_exceed_their_bound_and_still_open_everything() -> None:
    server = ServerKey.generate()
    opener = EnvelopeOpener({server.kid: server}, cache_max=3)
    for i in range(10):
        name, keys = agent_id(f"agt-{i:04d}"), AgentKeys.generate()
        topic, data = seal_batch(batch(1, agent=name), agent=keys, server=server.public())
        for _ in range(2):  # the second time from the caches (or after they started afresh)
            assert opener.open_batch(data, topic=topic, agent=keys.public()).agent == name
        assert max(_sizes(opener)) <= 3


def test_registrations_are_not_remembered() -> None:
    # Anyone can seal a registration with fresh keys; a flood of them must not fill the caches
    # that registered agents' envelopes are opened with.
    server = ServerKey.generate()
    opener = EnvelopeOpener({server.kid: server})
    for _ in range(5):
        topic, data = seal_registration(bundle(new_token(), server), AgentKeys.generate(), agent_version="0.1.0")
        opener.open_registration(data, topic=topic)
    assert _sizes(opener)[:2] == (0, 0)


_L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 group


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: s[:63], id="63-byte signature"),
        pytest.param(lambda s: s + b"\x00", id="65-byte signature"),
        pytest.param(lambda s: b"", id="empty signature"),
        pytest.param(lambda s: bytes([s[0] ^ 1]) + s[1:], id="R flipped"),
        pytest.param(lambda s: s[:32] + bytes(32), id="S zero"),
        # S + L: the same signature with a non-canonical S (libsodium and OpenSSL both refuse it).
        pytest.param(lambda s: s[:32] + (int.from_bytes(s[32:], "little") + _L).to_bytes(32, "little"), id="S + L"),
    ],
)
@pytest.mark.parametrize("registered", [True, False])
def test_a_forged_inner_signature_is_signature_invalid(forge: object, registered: bool) -> None:
    """The inner COSE_Sign1 decrypts fine but its signature is wrong in shape or value: refused with
    the typed error, whichever path (a registered agent's, a registration's) verifies it."""
    topic, data = sealed()
    aad = OPENER._aad(topic)
    signed, _ = OPENER._decrypt(data, aad, sender_kex=AGENT_KEYS.public().kex)
    msg = cbor2.loads(signed)
    protected, unprotected, payload, signature = msg.value
    assert callable(forge)
    bad = cbor2.dumps(cbor2.CBORTag(msg.tag, [protected, unprotected, payload, forge(signature)]))
    with pytest.raises(SignatureInvalid):
        OPENER._verify(bad, aad, AGENT_KEYS.public(), registered=registered)
    assert OPENER._verify(signed, aad, AGENT_KEYS.public(), registered=registered) == payload
