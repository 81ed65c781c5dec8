"""Receipts, agent status and enrollment bundles; opening a status or a registration is the server's
(tests/ingest/test_opener.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rpm_core.downlink import Receipt, sign_receipt, verify_receipt
from rpm_core.enrollment import (
    BrokerEndpoint,
    EnrollmentBundle,
    ServerKeyInfo,
    new_token,
)
from rpm_core.errors import ConfigError, EnvelopeError, SignatureInvalid, UnknownKey
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.status import AgentStatus
from rpm_core.topics import Topic

ORG, AGENT = org_id("clinic-1"), agent_id("agt-0001")
NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
SERVER = ServerKey.generate()
AGENT_KEYS = AgentKeys.generate()


def test_receipt_round_trip_and_forgery() -> None:
    r = Receipt(ORG, AGENT, 1234, NOW)
    data = sign_receipt(r, SERVER)
    assert verify_receipt(data, topic=r.topic, trusted=[SERVER.public()]) == r
    # Another server key (e.g. a broker operator forging receipts) is not trusted.
    with pytest.raises(UnknownKey):
        verify_receipt(sign_receipt(r, ServerKey.generate()), topic=r.topic, trusted=[SERVER.public()])
    # A receipt for agent A replayed on agent B's topic does not verify.
    other = Topic.receipts(ORG, agent_id("agt-0002"))
    with pytest.raises(SignatureInvalid):
        verify_receipt(data, topic=other, trusted=[SERVER.public()])
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x04
        with pytest.raises(EnvelopeError):
            verify_receipt(bytes(tampered), topic=r.topic, trusted=[SERVER.public()])


@pytest.mark.parametrize(
    "hostile",
    [
        bytes.fromhex("c482") + bytes.fromhex("01") + bytes.fromhex("6161"),  # decimal fraction, text mantissa
        bytes.fromhex("d81e82") + bytes.fromhex("0100"),  # rational with a zero denominator
        bytes.fromhex("d82361") + b"(",  # a regular expression that does not compile
    ],
)
def test_hostile_cbor_on_the_receipts_topic_is_malformed_never_another_error(hostile: bytes) -> None:
    # The agent parses whatever arrives on its downlink: cbor2's semantic tag decoders raise
    # decimal.InvalidOperation, ZeroDivisionError, re.error ... which must all end as one EnvelopeError.
    with pytest.raises(EnvelopeError):
        verify_receipt(hostile, topic=Topic.receipts(ORG, AGENT), trusted=[SERVER.public()])


def test_status_rejects_unknown_alarms() -> None:
    with pytest.raises(ValueError):
        AgentStatus(org=ORG, agent=AGENT, online=True, sent_at=NOW, alarms=frozenset({"on_fire"}))


def bundle(token: str) -> EnrollmentBundle:
    return EnrollmentBundle(
        org=ORG,
        agent_id=AGENT,
        broker=BrokerEndpoint(host="127.0.0.1", port=8883, server_name="broker.vigil", ca_pem="-----BEGIN..."),
        mqtt_username=AGENT,
        mqtt_password="pw-secret",
        enrollment_token=token,
        server_keys=(ServerKeyInfo.of(SERVER.public()),),
        expires_at=NOW + timedelta(days=7),
    )


def test_bundle_json_round_trip_hides_secrets_in_repr() -> None:
    b = bundle(new_token())
    assert EnrollmentBundle.from_json(b.to_json()) == b
    assert "pw-secret" not in repr(b)
    assert b.current_server_key() == SERVER.public()
    with pytest.raises(ConfigError):
        EnrollmentBundle.from_json('{"v": 1}')
